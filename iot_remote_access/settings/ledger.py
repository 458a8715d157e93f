"""Settings of the access ledger (``ledger`` in ``cdk.json``): the ``AccessLedger`` construct."""

from __future__ import annotations

from pydantic import field_validator

from iot_remote_access.core.ledger import (
    DEFAULT_ANCHOR_MINUTES,
    DEFAULT_LEDGER_ID,
    DEFAULT_RETENTION_DAYS,
    anchor_interval_problem,
    ledger_id_problem,
    retention_problem,
)
from iot_remote_access.settings.base import SettingsSection


class LedgerSettings(SettingsSection):
    """The tamper-evident ledger of remote-access decisions.

    Default: on; records and anchors kept 400 days (at least 366: one year of logs,
    DPDP Rules 2025 rule 6(1)(e)); an anchor written to S3 Object Lock every 60 minutes;
    ledger id ``access``. The retention of written anchors cannot be shortened later
    (Object Lock compliance mode).
    """

    enabled: bool = True
    retention_days: int = DEFAULT_RETENTION_DAYS
    anchor_interval_minutes: int = DEFAULT_ANCHOR_MINUTES
    ledger_id: str = DEFAULT_LEDGER_ID

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
