"""Settings of the tunnel alarms (``tunnelAlarms`` in ``cdk.json``)."""

from __future__ import annotations

from pydantic import field_validator

from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.tunnel_metrics import (
    DEFAULT_MAX_OPEN_HOURS,
    DEFAULT_MAX_OPENS_PER_THING_PER_DAY,
    DEFAULT_RENEWAL_WINDOW_MINUTES,
    max_open_hours_problem,
    max_opens_problem,
    renewal_window_problem,
)
from iot_remote_access.settings.base import SettingsSection, email_address


class TunnelAlarmsSettings(SettingsSection):
    """Tunnel metrics, alarms and dashboard (the ``TunnelAlarms`` construct).

    Default: on; alarm when one thing opens more than 3 tunnels in a UTC day,
    on any renewal within 15 minutes of the previous tunnel's end, and on any
    tunnel open longer than 2 hours; no e-mail subscriptions.
    """

    enabled: bool = True
    max_opens_per_thing_per_day: int = DEFAULT_MAX_OPENS_PER_THING_PER_DAY
    renewal_window_minutes: int = DEFAULT_RENEWAL_WINDOW_MINUTES
    max_open_hours: float = DEFAULT_MAX_OPEN_HOURS
    email_addresses: tuple[str, ...] = ()

    @field_validator("max_opens_per_thing_per_day", mode="before")
    @classmethod
    def _max_opens(cls, value: object) -> object:
        return _checked(value, max_opens_problem(value))

    @field_validator("renewal_window_minutes", mode="before")
    @classmethod
    def _renewal_window(cls, value: object) -> object:
        return _checked(value, renewal_window_problem(value))

    @field_validator("max_open_hours", mode="before")
    @classmethod
    def _max_open_hours(cls, value: object) -> object:
        return _checked(value, max_open_hours_problem(value))

    @field_validator("email_addresses", mode="before")
    @classmethod
    def _emails(cls, value: object) -> object:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{excerpt(value)} is not a list; allowed: a list of e-mail addresses")
        return tuple(email_address(address) for address in value)


def _checked(value: object, problem: str | None) -> object:
    # Checked before pydantic's coercion: "3" or 3.0 for a count is a mistake to report.
    if problem is not None:
        raise ValueError(problem)
    return value
