"""Settings of the access ledger (``ledger`` in ``cdk.json``): the ``AccessLedger`` construct."""

from __future__ import annotations

import re

from pydantic import field_validator

from iot_remote_access.core.ledger import (
    DEFAULT_ANCHOR_MINUTES,
    DEFAULT_LEDGER_ID,
    DEFAULT_RETENTION_DAYS,
    anchor_interval_problem,
    ledger_id_problem,
    retention_problem,
    shown,
)
from iot_remote_access.settings.base import SettingsSection


class AzureAnchorSettings(SettingsSection):
    """Anchors on Azure (``ledger.azure``): a storage account with a container whose
    time-based immutability policy is locked for ``retentionDays``. Deployed by
    ``iot-remote-access azure deploy`` into the azure section's resource group and location.
    """

    #: 3-24 lowercase letters and digits, globally unique.
    storage_account: str
    container: str = "ledger-anchors"
    sku: str = "Standard_ZRS"

    @field_validator("storage_account", mode="before")
    @classmethod
    def _account(cls, value: object) -> object:
        ok = isinstance(value, str) and re.fullmatch(r"[a-z0-9]{3,24}", value)
        problem = None if ok else f"{shown(value)} is not allowed; allowed: 3-24 of a-z and 0-9"
        return _checked(value, problem)


class GcsAnchorSettings(SettingsSection):
    """Anchors on Google Cloud (``ledger.gcp``): a bucket whose retention policy is locked
    for ``retentionDays`` (``pubsub.anchor_bucket``)."""

    bucket: str
    #: A multi-region (``EU``) or a region (``europe-west1``).
    location: str = "EU"


class LedgerSettings(SettingsSection):
    """The tamper-evident ledger of remote-access decisions.

    Deployed only when the settings have a ``ledger`` section (Object Lock retention
    cannot be undone, so it is never added by surprise); ``enabled: false`` turns a
    present section off. Default: records and anchors kept 400 days (at least 366: one year of logs,
    DPDP Rules 2025 rule 6(1)(e)); an anchor written to S3 Object Lock every 60 minutes;
    ledger id ``access``. The retention of written anchors cannot be shortened later
    (Object Lock compliance mode).
    """

    enabled: bool = True
    retention_days: int = DEFAULT_RETENTION_DAYS
    anchor_interval_minutes: int = DEFAULT_ANCHOR_MINUTES
    ledger_id: str = DEFAULT_LEDGER_ID
    #: Anchors on Azure too (immutable blob storage), and the chain of the Azure writer
    #: (``evidence record azure-alerts``). Default: none.
    azure: AzureAnchorSettings | None = None
    #: Anchors on Google Cloud too (a locked-retention bucket, rendered by ``gcp plan|deploy``),
    #: and the chain of the Teleport session writer (``evidence record gcp-sessions``).
    gcp: GcsAnchorSettings | None = None

    @field_validator("retention_days", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        return _checked(value, retention_problem(value))

    @field_validator("anchor_interval_minutes", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        return _checked(value, anchor_interval_problem(value))

    @field_validator("ledger_id", mode="before")
    @classmethod
    def _ledger_id(cls, value: object) -> object:
        return _checked(value, ledger_id_problem(value))


def _checked(value: object, problem: str | None) -> object:
    # Checked before pydantic's coercion: "400" or 400.0 days is a mistake to report.
    if problem is not None:
        raise ValueError(problem)
    return value
