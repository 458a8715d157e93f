"""The three tunnel alarms on GCP: Teleport audit events -> log-based metrics -> alert policies.

Teleport's auth service mirrors every audit event to stdout as one JSON object
(``gcp.auditLogMirrorOnStdout`` in the chart); GKE's logging agent turns each line
into a Cloud Logging entry whose ``jsonPayload`` holds the event's fields
(``event``, ``sid``, ``server_hostname``, ``user``, ``time``...). From those
entries, log-based counter metrics count session starts and ends per device
(``server_hostname`` = the device's Teleport node name = its thing name), and
Cloud Monitoring alert policies (PromQL conditions) raise the same three
signals as the AWS ``TunnelAlarms``:

* more than ``maxOpensPerThingPerDay`` sessions on one device in 24 hours;
* a session started within ``renewalWindowMinutes`` after the device's previous
  session ended (a renewal loop: the lifetime limit worked around);
* a session still open ``maxOpenHours`` after it started.

Differences from AWS, by construction of log-based metrics (said in docs/gcp-access.md):
the day is a rolling 24 hours (AWS counts per UTC day); the renewal window is
checked at the alert evaluation step (:data:`STEP_MINUTES`), so a gap up to one
step longer than the window may still alert, never a longer one.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Underscores only: the PromQL name of a log-based metric is its id with ``.``/``/`` mapped.
METRIC_PREFIX = "iot_remote_access_teleport"
SESSION_START_METRIC = f"{METRIC_PREFIX}_session_start"
SESSION_END_METRIC = f"{METRIC_PREFIX}_session_end"
#: Session starts, ends and refusals, and access requests/reviews: the audit (SIEM) stream.
AUDIT_EVENTS = (
    "session.start",
    "session.end",
    "session.rejected",
    "access_request.create",
    "access_request.review",
    "access_request.update",
    "access_request.expire",
)
DEVICE_LABEL = "device"
SESSION_LABEL = "sid"
#: The PromQL evaluation step and the finest time resolution of the renewal check.
STEP_MINUTES = 1


def container_filter(project: str, namespace: str, release: str) -> str:
    """Log entries of the Teleport auth pods' containers (where the audit events go)."""
    return (
        'resource.type="k8s_container" '
        f'AND resource.labels.project_id="{project}" '
        f'AND resource.labels.namespace_name="{namespace}" '
        f'AND labels."k8s-pod/app_kubernetes_io/instance"="{release}" '
        'AND labels."k8s-pod/app_kubernetes_io/component"="auth"'
    )


def event_filter(project: str, namespace: str, release: str, event: str) -> str:
    return f'{container_filter(project, namespace, release)} AND jsonPayload.event="{event}"'


def audit_stream_filter(project: str, namespace: str, release: str) -> str:
    """Every session and access-request event: what the SIEM sink exports."""
    events = " OR ".join(f'jsonPayload.event="{name}"' for name in AUDIT_EVENTS)
    return f"{container_filter(project, namespace, release)} AND ({events})"


def promql_metric(metric_id: str) -> str:
    """A user-defined log-based metric's name in Cloud Monitoring's PromQL."""
    return "logging_googleapis_com:user_" + metric_id


@dataclass(frozen=True)
class AlertRule:
    """One alert condition, rendered to PromQL from the tunnelAlarms thresholds."""

    name: str
    display_name: str
    query: str
    documentation: str


def opens_per_day_rule(max_opens: int) -> AlertRule:
    start = promql_metric(SESSION_START_METRIC)
    return AlertRule(
        name="opens-per-device-per-day",
        display_name=f"Teleport: more than {max_opens} sessions on one device in 24 h",
        query=f"sum by ({DEVICE_LABEL}) (increase({start}[1d])) > {max_opens}",
        documentation=(
            f"A device had more than {max_opens} Teleport sessions in the last 24 hours "
            "(tunnelAlarms.maxOpensPerThingPerDay). Check the access requests' reasons."
        ),
    )


def renewal_rule(window_minutes: int) -> AlertRule:
    """A start in the last step, and an end of the same device within window + step before now."""
    start = promql_metric(SESSION_START_METRIC)
    end = promql_metric(SESSION_END_METRIC)
    reach = window_minutes + STEP_MINUTES
    return AlertRule(
        name="renewal-loop",
        display_name=f"Teleport: new session within {window_minutes} min of the previous end",
        query=(
            f"(sum by ({DEVICE_LABEL}) (increase({start}[{STEP_MINUTES}m])) > 0) "
            f"and on ({DEVICE_LABEL}) "
            f"(sum by ({DEVICE_LABEL}) (increase({end}[{reach}m])) > 0)"
        ),
        documentation=(
            f"A device got a new session within {window_minutes} minutes after its previous "
            "session ended (tunnelAlarms.renewalWindowMinutes): the lifetime limit may be "
            "worked around by renewing."
        ),
    )


def open_too_long_rule(max_open_hours: float) -> AlertRule:
    """A session that started ``max_open_hours`` ago (one step wide) and has not ended since."""
    start = promql_metric(SESSION_START_METRIC)
    end = promql_metric(SESSION_END_METRIC)
    minutes = round(max_open_hours * 60)
    return AlertRule(
        name="session-open-too-long",
        display_name=f"Teleport: session open longer than {max_open_hours:g} h",
        query=(
            f"(sum by ({DEVICE_LABEL}, {SESSION_LABEL}) "
            f"(increase({start}[{STEP_MINUTES}m] offset {minutes}m)) > 0) "
            f"unless on ({SESSION_LABEL}) "
            f"(sum by ({SESSION_LABEL}) (increase({end}[{minutes + STEP_MINUTES}m])) > 0)"
        ),
        documentation=(
            f"A Teleport session is still open {max_open_hours:g} hours after it started "
            "(tunnelAlarms.maxOpenHours). Sessions end when the request's certificate expires "
            "(disconnect_expired_cert): an alert here means that limit did not hold."
        ),
    )


def alert_rules(max_opens: int, window_minutes: int, max_open_hours: float) -> list[AlertRule]:
    return [
        opens_per_day_rule(max_opens),
        renewal_rule(window_minutes),
        open_too_long_rule(max_open_hours),
    ]
