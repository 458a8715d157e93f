"""Settings of Secure Tunneling (``tunneling`` in ``cdk.json``): the broker's limits,
the sweeper's schedule and the audit trail's retention.

The rules are the broker's own (``core/tunnel_rules.py``), so a value accepted
here is one the deployed broker accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from pydantic import field_validator, model_validator

from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.tunnel_rules import (
    DEFAULT_CONNECT_GRACE_MINUTES,
    DEFAULT_LIFETIME_MINUTES,
    DEFAULT_MAX_OPEN_TUNNELS_PER_THING,
    DEFAULT_SERVICES,
    MAX_LIFETIME_MINUTES,
    TunnelPolicy,
    setting_minutes,
    validate_max_open,
    validate_service,
    validate_thing_group,
)
from iot_remote_access.settings.base import SettingsSection, core_problem

DEFAULT_SWEEP_INTERVAL_MINUTES = 5
MAX_SWEEP_INTERVAL_MINUTES = 60
DEFAULT_AUDIT_RETENTION_DAYS = 365
#: Ten years: a bound against typos (S3 itself allows far more).
MAX_AUDIT_RETENTION_DAYS = 3653


class TunnelingSettings(SettingsSection):
    """The ``SecureTunneling`` and ``AuditTrail`` constructs of the reference stack.

    Default: on; SSH only; 60-minute tunnels, at most 720 (AWS's maximum); one open
    tunnel per thing; any thing (no thing-group restriction); tunnels whose operator
    has not connected within 15 minutes are closed by a sweep every 5 minutes; audit
    logs kept 365 days; no operator role (attach the operator policy yourself).
    """

    enabled: bool = True
    allowed_services: tuple[str, ...] = DEFAULT_SERVICES
    default_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES
    max_lifetime_minutes: int = MAX_LIFETIME_MINUTES
    max_open_tunnels_per_thing: int = DEFAULT_MAX_OPEN_TUNNELS_PER_THING
    connect_grace_minutes: int = DEFAULT_CONNECT_GRACE_MINUTES
    thing_groups: tuple[str, ...] = ()
    sweep_interval_minutes: int = DEFAULT_SWEEP_INTERVAL_MINUTES
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    #: Create an IAM role operators assume (trusting this account) with the operator policy.
    operator_role: bool = False

    @field_validator("allowed_services", mode="before")
    @classmethod
    def _services(cls, value: object) -> object:
        names = _names(value, "service names, e.g. ['SSH']", validate_service)
        if not names:
            raise ValueError("[] is empty; allowed: one or more service names, e.g. ['SSH']")
        return names

    @field_validator("thing_groups", mode="before")
    @classmethod
    def _groups(cls, value: object) -> object:
        return _names(value, "thing group names", validate_thing_group)

    @field_validator("max_lifetime_minutes", "connect_grace_minutes", mode="before")
    @classmethod
    def _minutes(cls, value: object) -> object:
        return core_problem(lambda: setting_minutes("", value))

    @field_validator("default_lifetime_minutes", mode="before")
    @classmethod
    def _default_minutes(cls, value: object) -> object:
        # Checked against maxLifetimeMinutes once both are known (below).
        return core_problem(lambda: setting_minutes("", value))

    @field_validator("max_open_tunnels_per_thing", mode="before")
    @classmethod
    def _max_open(cls, value: object) -> object:
        return core_problem(lambda: validate_max_open(value))

    @field_validator("sweep_interval_minutes", mode="before")
    @classmethod
    def _sweep_interval(cls, value: object) -> object:
        return core_problem(lambda: setting_minutes("", value, maximum=MAX_SWEEP_INTERVAL_MINUTES))

    @field_validator("audit_retention_days", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (1 <= value <= MAX_AUDIT_RETENTION_DAYS)
        ):
            raise ValueError(
                f"{excerpt(value)} is not allowed; allowed: a whole number of days from 1 to "
                f"{MAX_AUDIT_RETENTION_DAYS}"
            )
        return value

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_lifetime_minutes > self.max_lifetime_minutes:
            raise ValueError(
                f"defaultLifetimeMinutes: {self.default_lifetime_minutes} is more than "
                f"maxLifetimeMinutes ({self.max_lifetime_minutes}); allowed: a default from 1 "
                f"to {self.max_lifetime_minutes}"
            )
        return self

    def policy(self, thing_name_pattern: str | None = None) -> TunnelPolicy:
        """The limits the broker and the sweeper enforce."""
        extra = {"thing_name_pattern": thing_name_pattern} if thing_name_pattern else {}
        return TunnelPolicy(
            allowed_services=self.allowed_services,
            default_lifetime_minutes=self.default_lifetime_minutes,
            max_lifetime_minutes=self.max_lifetime_minutes,
            max_open_tunnels_per_thing=self.max_open_tunnels_per_thing,
            connect_grace_minutes=self.connect_grace_minutes,
            thing_groups=self.thing_groups,
            **extra,
        )


def _names(value: object, what: str, check: Callable[[object], object]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{excerpt(value)} is not a list; allowed: a list of {what}")
    for item in value:
        core_problem(lambda item=item: check(item))  # type: ignore[misc]
    return tuple(value)
