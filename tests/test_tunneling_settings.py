"""The ``tunneling`` settings section: defaults, and messages naming field, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iot_remote_access.core.tunnel_rules import TunnelPolicy
from iot_remote_access.settings import FleetSettings, SettingsError


def test_defaults_turn_tunneling_on_with_the_safe_limits() -> None:
    tunneling = FleetSettings.parse(None).tunneling
    assert tunneling.enabled
    assert (tunneling.sweep_interval_minutes, tunneling.audit_retention_days) == (5, 365)
    assert not tunneling.operator_role
    assert tunneling.policy() == TunnelPolicy()  # the broker's own defaults, decided once


def test_camel_case_keys_reach_the_broker_policy() -> None:
    settings = FleetSettings.parse(
        {
            "thingNamePattern": "sensor-[0-9]+",
            "tunneling": {
                "allowedServices": ["SSH", "VNC"],
                "defaultLifetimeMinutes": 15,
                "maxLifetimeMinutes": 120,
                "maxOpenTunnelsPerThing": 2,
                "connectGraceMinutes": 5,
                "thingGroups": ["production"],
            },
        }
    )
    assert settings.tunneling.policy(settings.thing_name_pattern) == TunnelPolicy(
        allowed_services=("SSH", "VNC"),
        default_lifetime_minutes=15,
        max_lifetime_minutes=120,
        max_open_tunnels_per_thing=2,
        connect_grace_minutes=5,
        thing_groups=("production",),
        thing_name_pattern="sensor-[0-9]+",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"maxLifetimeMinutes": 0},
            r"^iot-remote-access\.tunneling\.maxLifetimeMinutes: 0 is outside 1\.\.720; allowed: a whole number of minutes from 1 to 720$",
        ),
        ({"maxLifetimeMinutes": 721}, r"tunneling\.maxLifetimeMinutes: 721 is outside 1\.\.720"),
        (
            {"defaultLifetimeMinutes": "60"},
            r"tunneling\.defaultLifetimeMinutes: '60' is not a whole number; allowed: minutes from 1 to 720",
        ),
        (
            {"defaultLifetimeMinutes": 120, "maxLifetimeMinutes": 60},
            r"^iot-remote-access\.tunneling: defaultLifetimeMinutes: 120 is more than maxLifetimeMinutes \(60\); allowed: a default from 1 to 60$",
        ),
        (
            {"connectGraceMinutes": True},
            r"tunneling\.connectGraceMinutes: True is not a whole number",
        ),
        (
            {"allowedServices": []},
            r"tunneling\.allowedServices: \[\] is empty; allowed: one or more service names",
        ),
        (
            {"allowedServices": "SSH"},
            r"tunneling\.allowedServices: 'SSH' is not a list; allowed: a list of service names",
        ),
        (
            {"allowedServices": ["SSH", "S S"]},
            r"tunneling\.allowedServices: 'S S' is not a service name",
        ),
        (
            {"thingGroups": ["prod/eu"]},
            r"tunneling\.thingGroups: 'prod/eu' is not a thing group name; allowed: \[a-zA-Z0-9:_-\]\{1,128\}",
        ),
        (
            {"maxOpenTunnelsPerThing": 0},
            r"tunneling\.maxOpenTunnelsPerThing: 0 is not allowed; allowed: a whole number from 1 to 10",
        ),
        (
            {"sweepIntervalMinutes": 61},
            r"tunneling\.sweepIntervalMinutes: 61 is outside 1\.\.60; allowed: a whole number of minutes from 1 to 60",
        ),
        (
            {"auditRetentionDays": 0},
            r"tunneling\.auditRetentionDays: 0 is not allowed; allowed: a whole number of days from 1 to 3653",
        ),
        (
            {"maxLifetime": 60},
            r"tunneling\.maxLifetime: unknown setting; allowed: enabled, allowedServices, defaultLifetimeMinutes",
        ),
    ],
)
def test_bad_values_name_the_field_value_and_what_is_allowed(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse({"tunneling": raw})


@pytest.mark.parametrize(
    "first", ["iot_remote_access.settings", "iot_remote_access.settings.tunneling"]
)
def test_settings_load_whichever_module_is_imported_first(first: str) -> None:
    code = (
        f"import {first}\n"
        "from iot_remote_access.settings import FleetSettings\n"
        "s = FleetSettings.parse({'tunneling': {'maxLifetimeMinutes': 90}})\n"
        "print(type(s.tunneling).__name__, s.tunneling.max_lifetime_minutes)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "TunnelingSettings 90"
