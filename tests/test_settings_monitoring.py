"""The ``monitoring`` settings section: defaults and messages naming field, value and rule."""

from __future__ import annotations

import pytest

from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.settings.monitoring import MonitoringSettings


def test_defaults_are_on_and_safe() -> None:
    monitoring = FleetSettings.parse(None).monitoring
    assert monitoring == MonitoringSettings()
    assert monitoring.enabled and monitoring.siem_export and monitoring.configure_iot_logging
    assert monitoring.iot_log_level == "ERROR"
    assert monitoring.allowed_source_cidrs == ()


def test_camel_case_keys_and_normalised_cidrs() -> None:
    monitoring = FleetSettings.parse(
        {
            "monitoring": {
                "allowedSourceCidrs": ["198.51.100.0/24", "2001:DB8::/32", "198.51.100.0/24"],
                "maxTelemetryPerDevicePerMinute": 120,
                "maxConnectsPerDevicePer5Minutes": 3,
                "exemptClientIdPattern": "backend-.*",
                "incidentEmails": ["soc@example.com"],
            }
        }
    ).monitoring
    assert monitoring.allowed_source_cidrs == ("198.51.100.0/24", "2001:db8::/32")
    assert monitoring.max_telemetry_per_device_per_minute == 120
    assert monitoring.incident_emails == ("soc@example.com",)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"iotLogLevel": "DISABLED"},
            r"^iot-remote-access\.monitoring\.iotLogLevel: 'DISABLED' is not a logging level that "
            r"records authorization failures; allowed: ERROR, WARN, INFO, DEBUG$",
        ),
        (
            {"logRetentionDays": 10},
            r"^iot-remote-access\.monitoring\.logRetentionDays: 10 is not a CloudWatch Logs "
            r"retention; allowed: 1, 3, 5",
        ),
        (
            {"allowedSourceCidrs": ["10.0.0.1/8"]},
            r"^iot-remote-access\.monitoring\.allowedSourceCidrs: '10\.0\.0\.1/8' is not a CIDR "
            r"range \(10\.0\.0\.1/8 has host bits set\); allowed: a network address",
        ),
        ({"allowedSourceCidrs": ["office"]}, r"allowedSourceCidrs: 'office' is not a CIDR range"),
        (
            {"exemptClientIdPattern": "("},
            r"^iot-remote-access\.monitoring\.exemptClientIdPattern: '\(' is not a regular expression",
        ),
        ({"exemptClientIdPattern": ""}, r"exemptClientIdPattern: '' is empty"),
        (
            {"maxTelemetryPerDevicePerMinute": 0},
            r"maxTelemetryPerDevicePerMinute: 0 is below 1; allowed: a whole number of 1 or more",
        ),
        ({"authorizationFailureThreshold": -1}, r"authorizationFailureThreshold: -1 is below 1"),
        ({"publishRateAnomalyBand": 50}, r"publishRateAnomalyBand: 50\.0 is outside 0\.5\.\.10"),
        ({"siemRetentionDays": 0}, r"siemRetentionDays: 0 is below 1"),
        ({"alarmEmails": ["ops"]}, r"alarmEmails: 'ops' is not an e-mail address"),
        (
            {"siemExprot": False},
            r"^iot-remote-access\.monitoring\.siemExprot: unknown setting; allowed: enabled, "
            r"iotLogLevel, ",
        ),
        ({"enabled": "maybe"}, r"monitoring\.enabled: 'maybe' is a string; allowed: true or false"),
    ],
)
def test_bad_monitoring_settings_name_field_value_and_rule(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse({"monitoring": raw})


def test_section_module_imports_on_its_own() -> None:
    """settings_monitoring must not need settings imported first (no import cycle)."""
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import iot_remote_access.settings.monitoring as m; "
            "import iot_remote_access.settings as s; "
            "assert s.FleetSettings().monitoring == m.MonitoringSettings()",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
