"""MonitoringSettings: FleetSettings' ``monitoring`` section (security monitoring, SIEM export).

Keys are camelCase in ``cdk.json`` under ``iot-remote-access.monitoring``.
"""

from __future__ import annotations

from pydantic import field_validator

from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.security_detections import compile_client_pattern, parse_network
from iot_remote_access.settings.base import SettingsSection, email_address

#: The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
#: Levels that still record authorization failures (they are logged at ERROR).
IOT_LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")


class MonitoringSettings(SettingsSection):
    """Security monitoring of the fleet and export of the security logs to a SIEM.

    Default: on; AWS IoT logging at ERROR (every refused publish/subscribe is
    logged, nothing else), logs kept one year, no network allowlist (the
    connection-source detection is off until ``allowedSourceCidrs`` is set),
    export to S3 kept 400 days.
    """

    #: Deploy the SecurityMonitoring construct at all.
    enabled: bool = True
    #: AWS IoT v2 logging level for the whole account (ERROR, WARN, INFO, DEBUG).
    iot_log_level: str = "ERROR"
    #: Create ``AWS::IoT::Logging`` and the ``AWSIotLogsV2`` log group. Set false
    #: where the account's IoT logging is already managed elsewhere (both are
    #: one per account and region); the existing log group is then used.
    configure_iot_logging: bool = True
    #: Retention of every log group the monitoring creates, in days.
    log_retention_days: int = 365
    #: Networks devices may connect from (CIDR). Empty: no connection-source check.
    allowed_source_cidrs: tuple[str, ...] = ()
    #: Client ids (regular expression, full match) that are back-end clients, not
    #: devices: the lifecycle detections skip them.
    exempt_client_id_pattern: str | None = None
    #: Refused publishes/subscribes across the fleet, per 5 minutes, that raise the alarm.
    authorization_failure_threshold: int = 1
    #: Telemetry messages one device may publish per minute before the top-device alarm.
    max_telemetry_per_device_per_minute: int = 60
    #: Connects of one device per 5 minutes before the churn alarm.
    max_connects_per_device_per_5_minutes: int = 5
    #: Width of the anomaly band of the fleet telemetry rate, in standard deviations.
    publish_rate_anomaly_band: float = 3.0
    #: Stream the security log groups to S3 through Firehose.
    siem_export: bool = True
    #: Days the exported records are kept in S3.
    siem_retention_days: int = 400
    #: Subscribers of the alarm topic and of the incident topic (each must confirm).
    alarm_emails: tuple[str, ...] = ()
    incident_emails: tuple[str, ...] = ()

    @field_validator("iot_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value not in IOT_LOG_LEVELS:
            raise ValueError(
                f"{excerpt(value)} is not a logging level that records authorization failures; "
                f"allowed: {', '.join(IOT_LOG_LEVELS)}"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"{excerpt(value)} is not a CloudWatch Logs retention; allowed: "
                f"{', '.join(str(d) for d in LOG_RETENTION_DAYS)}"
            )
        return value

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for item in value:
            try:
                networks.append(str(parse_network(item, field_name="")))
            except ValueError as error:
                raise ValueError(str(error).removeprefix(": ")) from None
        return tuple(dict.fromkeys(networks))

    @field_validator("exempt_client_id_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise ValueError("'' is empty; allowed: a regular expression such as 'backend-.*'")
        try:
            compile_client_pattern(value, field_name="")
        except ValueError as error:
            raise ValueError(str(error).removeprefix(": ")) from None
        return value

    @field_validator(
        "authorization_failure_threshold",
        "max_telemetry_per_device_per_minute",
        "max_connects_per_device_per_5_minutes",
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{excerpt(value)} is below 1; allowed: a whole number of 1 or more")
        return value

    @field_validator("publish_rate_anomaly_band")
    @classmethod
    def _band(cls, value: float) -> float:
        if not 0.5 <= value <= 10:
            raise ValueError(
                f"{excerpt(value)} is outside 0.5..10; allowed: standard deviations, e.g. 3"
            )
        return value

    @field_validator("siem_retention_days")
    @classmethod
    def _siem_retention(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{excerpt(value)} is below 1; allowed: days, e.g. 400")
        return value

    @field_validator("alarm_emails", "incident_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(email_address(address) for address in value)
