"""What ``gcp deploy`` wants in Cloud Logging and Cloud Monitoring for ``gcp.accessProxy``.

Built from the settings only, as the SDKs' own request types: log-based metrics
(session starts and ends per device), one alert policy per tunnel alarm (the
``tunnelAlarms`` thresholds), and an optional sink exporting every session and
access-request event to the SIEM destination.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api import label_pb2, metric_pb2
from google.cloud.logging_v2.types import LogMetric, LogSink
from google.cloud.monitoring_v3 import AlertPolicy
from google.protobuf import duration_pb2

from iot_remote_access.core.teleport_audit import (
    DEVICE_LABEL,
    SESSION_END_METRIC,
    SESSION_LABEL,
    SESSION_START_METRIC,
    STEP_MINUTES,
    AlertRule,
    alert_rules,
    audit_stream_filter,
    event_filter,
)
from iot_remote_access.gcp_monitoring.workload_identity import WorkloadIdentityBinding
from iot_remote_access.settings.gcp_access import GcpAccessProxySettings
from iot_remote_access.settings.tunnel_alarms import TunnelAlarmsSettings

#: Marks the alert policies this library manages (alert policies have no user-chosen id).
MANAGED_LABEL = "managed-by"
MANAGED_VALUE = "iot-remote-access"
RULE_LABEL = "rule"
SINK_ID = "iot-remote-access-teleport-audit"
#: An incident closes by itself a week after its condition stops holding.
AUTO_CLOSE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class MonitoringState:
    """The desired metrics, policies, sink and Workload Identity binding of one project."""

    project: str
    metrics: tuple[LogMetric, ...]
    policies: tuple[AlertPolicy, ...]
    sink: LogSink | None
    workload_identity: WorkloadIdentityBinding


def _metric(metric_id: str, description: str, log_filter: str) -> LogMetric:
    labels = [
        label_pb2.LabelDescriptor(key=DEVICE_LABEL, value_type=label_pb2.LabelDescriptor.STRING),
        label_pb2.LabelDescriptor(key=SESSION_LABEL, value_type=label_pb2.LabelDescriptor.STRING),
    ]
    return LogMetric(
        name=metric_id,
        description=description,
        filter=log_filter,
        metric_descriptor=metric_pb2.MetricDescriptor(
            metric_kind=metric_pb2.MetricDescriptor.DELTA,
            value_type=metric_pb2.MetricDescriptor.INT64,
            unit="1",
            labels=labels,
        ),
        label_extractors={
            # The device's Teleport node name is its thing name (docs/gcp-access.md).
            DEVICE_LABEL: "EXTRACT(jsonPayload.server_hostname)",
            SESSION_LABEL: "EXTRACT(jsonPayload.sid)",
        },
    )


def _policy(rule: AlertRule, channels: tuple[str, ...]) -> AlertPolicy:
    return AlertPolicy(
        display_name=f"iot-remote-access {rule.display_name}",
        user_labels={MANAGED_LABEL: MANAGED_VALUE, RULE_LABEL: rule.name},
        combiner=AlertPolicy.ConditionCombinerType.OR,
        enabled=True,
        notification_channels=list(channels),
        documentation=AlertPolicy.Documentation(
            content=rule.documentation, mime_type="text/markdown"
        ),
        alert_strategy=AlertPolicy.AlertStrategy(
            auto_close=duration_pb2.Duration(seconds=AUTO_CLOSE_SECONDS)
        ),
        conditions=[
            AlertPolicy.Condition(
                display_name=rule.display_name,
                condition_prometheus_query_language=AlertPolicy.Condition.PrometheusQueryLanguageCondition(
                    query=rule.query,
                    duration=duration_pb2.Duration(seconds=0),
                    evaluation_interval=duration_pb2.Duration(seconds=STEP_MINUTES * 60),
                ),
            )
        ],
    )


def desired_state(
    project: str, access: GcpAccessProxySettings, alarms: TunnelAlarmsSettings
) -> MonitoringState:
    """The metrics, policies and sink for ``access``; no policies with ``tunnelAlarms`` off."""
    where = (project, access.namespace, access.release_name)
    metrics = (
        _metric(
            SESSION_START_METRIC,
            "Teleport session.start per device (server_hostname) and session (sid)",
            event_filter(*where, "session.start"),
        ),
        _metric(
            SESSION_END_METRIC,
            "Teleport session.end per device (server_hostname) and session (sid)",
            event_filter(*where, "session.end"),
        ),
    )
    rules = (
        alert_rules(
            alarms.max_opens_per_thing_per_day, alarms.renewal_window_minutes, alarms.max_open_hours
        )
        if alarms.enabled
        else []
    )
    policies = tuple(_policy(rule, access.notification_channels) for rule in rules)
    sink = None
    if access.audit_sink_destination is not None:
        sink = LogSink(
            name=SINK_ID,
            destination=access.audit_sink_destination,
            filter=audit_stream_filter(*where),
            description="Teleport session and access-request events for the SIEM",
        )
    binding = WorkloadIdentityBinding(
        service_account=access.service_account,
        project=project,
        namespace=access.namespace,
        # The chart names the auth service account after serviceAccount.name (the release).
        kubernetes_service_account=access.release_name,
    )
    return MonitoringState(
        project=project, metrics=metrics, policies=policies, sink=sink, workload_identity=binding
    )
