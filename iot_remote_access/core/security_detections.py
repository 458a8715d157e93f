"""Security detections built from AWS IoT's own records (standard library only).

AWS IoT Device Defender Detect is closed to new customers after 2026-08-31, so the
library detects misbehaving devices from what AWS IoT publishes anyway:

- IoT v2 log entries (log group ``AWSIotLogsV2``): a ``Publish-In`` or
  ``Subscribe`` with ``status: Failure`` and ``reason: AUTHORIZATION_FAILURE`` is a
  device reaching for a topic its policy does not give it;
- lifecycle events: ``$aws/events/presence/connected/{clientId}`` carries the
  client's ``ipAddress`` (checked against an allowlist of networks) and
  ``$aws/events/subscriptions/subscribed/{clientId}`` the ``topics`` it subscribed
  to (checked against :class:`~iot_remote_access.core.topics.DeviceAccess`, the
  same model the device policy is rendered from);
- CloudWatch alarm state changes, for the rate detections that CloudWatch itself
  computes (publish-rate anomaly, top publisher, connection churn).

Every detection becomes a :class:`Finding`, sent to EventBridge as one documented
event schema (``source: iot-remote-access.security``) so any SIEM can subscribe.
The Lambda handlers only decode their trigger and call these functions.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from iot_remote_access.core.topics import (
    DEFAULT_COMMAND_RESPONSES_TOPIC,
    THING_PLACEHOLDER,
    Access,
    CustomTopic,
    DeviceAccess,
    ShadowOperation,
    Shadows,
    TopicModel,
    TopicModelError,
    validate_thing_name,
)

#: EventBridge ``source`` of every security event this library emits.
EVENT_SOURCE = "iot-remote-access.security"
#: EventBridge ``detail-type`` of every security event.
EVENT_DETAIL_TYPE = "IoT Security Finding"
#: Version of the ``detail`` schema (docs/security-monitoring.md); bumped on a breaking change.
SCHEMA_VERSION = "1"
#: CloudWatch namespace of every security metric.
METRIC_NAMESPACE = "IotRemoteAccess/Security"
#: The per-device dimension. Devices connect with client id = thing name (the
#: device policy enforces it), so the client id names the thing.
THING_DIMENSION = "ThingName"
#: Environment variable holding :class:`DetectionConfig` as JSON.
CONFIG_ENVIRONMENT_VARIABLE = "DETECTION_CONFIG"

# Longer strings from a device (client ids, topics) are cut in findings: they
# are evidence, not payload, and an event must stay far below EventBridge's 256 KB.
_MAX_EVIDENCE_CHARS = 256
_MAX_TOPICS_PER_FINDING = 50


class Detection(StrEnum):
    """What a finding is about; the value is the ``detection`` field of the event."""

    AUTHORIZATION_FAILURE = "authorization-failure"
    UNEXPECTED_SUBSCRIPTION = "unexpected-subscription"
    CONNECTION_OUTSIDE_ALLOWLIST = "connection-outside-allowlist"
    PUBLISH_RATE_ANOMALY = "publish-rate-anomaly"
    PUBLISH_RATE_TOP_DEVICE = "publish-rate-top-device"
    CONNECTION_CHURN = "connection-churn"


class Severity(StrEnum):
    """HIGH findings also go to the incident topic (the NIS2 early-warning clock)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True)
class DetectionSpec:
    """The fixed facts about one detection: severity and the metric it counts in."""

    severity: Severity
    metric_name: str
    title: str


#: One place for every detection's severity and metric (docs table, alarms, handlers).
DETECTIONS: Mapping[Detection, DetectionSpec] = {
    Detection.AUTHORIZATION_FAILURE: DetectionSpec(
        Severity.MEDIUM,
        "AuthorizationFailures",
        "a device published or subscribed outside its own topics (refused by its policy)",
    ),
    Detection.UNEXPECTED_SUBSCRIPTION: DetectionSpec(
        Severity.HIGH,
        "UnexpectedSubscriptions",
        "a device holds a subscription outside its topic model (a policy allowed it)",
    ),
    Detection.CONNECTION_OUTSIDE_ALLOWLIST: DetectionSpec(
        Severity.HIGH,
        "ConnectionsOutsideAllowlist",
        "a device connected from an address outside the allowed networks",
    ),
    Detection.PUBLISH_RATE_ANOMALY: DetectionSpec(
        Severity.MEDIUM, "TelemetryMessages", "the fleet's telemetry rate left its learned band"
    ),
    Detection.PUBLISH_RATE_TOP_DEVICE: DetectionSpec(
        Severity.MEDIUM, "TelemetryMessages", "one device publishes telemetry faster than allowed"
    ),
    Detection.CONNECTION_CHURN: DetectionSpec(
        Severity.LOW,
        "Connections",
        "one device reconnects far more often than normal (reconnect storm)",
    ),
}

MALFORMED_METRIC = "MalformedRecords"


class MalformedEvent(ValueError):
    """An input record that is not of the documented shape; names the field and value."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field_name = field_name
        self.problem = problem


@dataclass(frozen=True)
class Finding:
    """One security finding; :meth:`detail` is the documented EventBridge ``detail``."""

    detection: Detection
    observed_at: str
    summary: str
    thing_name: str | None = None
    client_id: str | None = None
    record_source: str = "iot-lifecycle-event"
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: How much the finding adds to its metric (e.g. the number of unexpected topics).
    count: int = 1

    @property
    def severity(self) -> Severity:
        return DETECTIONS[self.detection].severity

    @property
    def metric_name(self) -> str:
        return DETECTIONS[self.detection].metric_name

    def detail(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "detection": self.detection.value,
            "severity": self.severity.value,
            "thingName": self.thing_name,
            "clientId": self.client_id,
            "observedAt": self.observed_at,
            "summary": self.summary,
            "recordSource": self.record_source,
            "evidence": dict(self.evidence),
        }

    def put_events_entry(self, event_bus_name: str) -> dict[str, Any]:
        """One ``Entries`` item for EventBridge PutEvents."""
        return {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps(self.detail(), separators=(",", ":"), sort_keys=True),
            "EventBusName": event_bus_name,
        }


# -- configuration ------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: object, *, field_name: str = "allowedSourceCidrs") -> Network:
    """A CIDR range such as ``203.0.113.0/24``; raise ValueError naming the value."""
    if not isinstance(value, str):
        raise ValueError(
            f"{field_name}: {value!r} is not a string; allowed: a CIDR range "
            "such as '203.0.113.0/24' or '2001:db8::/32'"
        )
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(
            f"{field_name}: {_shorten(value)!r} is not a CIDR range ({error}); allowed: a "
            "network address with prefix length such as '203.0.113.0/24' or '2001:db8::/32'"
        ) from None


def compile_client_pattern(
    value: str, *, field_name: str = "exemptClientIdPattern"
) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(
            f"{field_name}: {_shorten(value)!r} is not a regular expression ({error})"
        ) from None


@dataclass(frozen=True)
class DetectionConfig:
    """What the lifecycle detections check against.

    :param access: the device topic model; the same :class:`DeviceAccess` the
        device policy is rendered from.
    :param allowed_networks: networks devices may connect from. Empty: the
        connection-source detection is off.
    :param exempt_client_ids: client ids (full match) the lifecycle detections
        skip, for back-end clients that are not devices. Default: none.
    """

    access: DeviceAccess = field(default_factory=DeviceAccess)
    allowed_networks: tuple[Network, ...] = ()
    exempt_client_ids: re.Pattern[str] | None = None

    def is_exempt(self, client_id: str) -> bool:
        return self.exempt_client_ids is not None and bool(
            self.exempt_client_ids.fullmatch(client_id)
        )

    def to_json(self) -> str:
        t = self.access.topics
        return json.dumps(
            {
                "topics": {
                    "telemetry": t.telemetry,
                    "commands": t.commands,
                    "rotationCsr": t.rotation_csr,
                    "rotationCertificate": t.rotation_certificate,
                    "rotationConfirm": t.rotation_confirm,
                    "responses": t.responses,
                },
                "tunneling": self.access.tunneling,
                "rotation": self.access.rotation,
                "jobs": self.access.jobs,
                "jobIds": list(self.access.job_ids),
                "anyJobId": self.access.any_job_id,
                "commandResponses": self.access.command_responses,
                "shadows": {
                    "classic": self.access.shadows.classic,
                    "named": list(self.access.shadows.named),
                    "operations": [str(o) for o in self.access.shadows.operations],
                },
                "custom": [[c.name, c.template, str(c.access)] for c in self.access.custom],
                "allowedSourceCidrs": [str(n) for n in self.allowed_networks],
                "exemptClientIdPattern": (
                    self.exempt_client_ids.pattern if self.exempt_client_ids else None
                ),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = CONFIG_ENVIRONMENT_VARIABLE) -> DetectionConfig:
        """The inverse of :meth:`to_json`; raise ValueError naming ``source`` and the field."""
        try:
            raw = json.loads(text)
            topics = raw["topics"]
            access = DeviceAccess(
                topics=TopicModel(
                    telemetry=topics["telemetry"],
                    commands=topics["commands"],
                    rotation_csr=topics["rotationCsr"],
                    rotation_certificate=topics["rotationCertificate"],
                    rotation_confirm=topics["rotationConfirm"],
                    responses=topics.get("responses", DEFAULT_COMMAND_RESPONSES_TOPIC),
                ),
                tunneling=_bool(raw["tunneling"], "tunneling"),
                rotation=_bool(raw["rotation"], "rotation"),
                jobs=_bool(raw["jobs"], "jobs"),
                job_ids=tuple(raw["jobIds"]),
                # Topic model v2 (absent from configs written before it: defaults).
                any_job_id=_bool(raw.get("anyJobId", False), "anyJobId"),
                command_responses=_bool(raw.get("commandResponses", False), "commandResponses"),
                shadows=_shadows(raw.get("shadows")),
                custom=tuple(
                    CustomTopic(name, template, Access(access))
                    for name, template, access in raw.get("custom", [])
                ),
            )
            networks = tuple(parse_network(v) for v in raw["allowedSourceCidrs"])
            pattern = raw["exemptClientIdPattern"]
            exempt = compile_client_pattern(pattern) if pattern is not None else None
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: missing or mistyped setting {error}") from None
        except (ValueError, TopicModelError) as error:
            raise ValueError(f"{source}: {error}") from None
        return cls(access=access, allowed_networks=networks, exempt_client_ids=exempt)


def _shadows(raw: object) -> Shadows:
    if raw is None:
        return Shadows()
    if not isinstance(raw, Mapping):
        raise ValueError(f"shadows: {_preview(raw)} is not an object")
    return Shadows(
        classic=_bool(raw["classic"], "shadows.classic"),
        named=tuple(raw["named"]),
        operations=tuple(ShadowOperation(o) for o in raw["operations"]),
    )


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: {value!r} is not true or false")
    return value


# -- lifecycle events -----------------------------------------------------------


@dataclass(frozen=True)
class LifecycleEvent:
    """The fields of an AWS IoT lifecycle event the detections use."""

    client_id: str
    event_type: str
    observed_at: str
    session_identifier: str | None
    principal_identifier: str | None
    ip_address: str | None = None
    topics: tuple[str, ...] = ()


def parse_lifecycle_event(event: object) -> LifecycleEvent:
    """Validate a lifecycle event (the payload an IoT rule ``SELECT *`` passes on).

    Raises :class:`MalformedEvent` naming the field when a field the detections
    need is missing or of the wrong type.
    """
    if not isinstance(event, Mapping):
        raise MalformedEvent("event", f"is {type(event).__name__}, not a JSON object")
    client_id = _required_str(event, "clientId")
    event_type = _required_str(event, "eventType")
    observed_at = _epoch_millis_to_iso(event.get("timestamp"))
    session = _optional_str(event, "sessionIdentifier")
    principal = _optional_str(event, "principalIdentifier")
    if event_type == "connected":
        ip_address = _required_str(event, "ipAddress")
        return LifecycleEvent(
            client_id, event_type, observed_at, session, principal, ip_address=ip_address
        )
    if event_type in ("subscribed", "unsubscribed"):
        topics = event.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise MalformedEvent("topics", f"{_preview(topics)} is not a list of topic strings")
        return LifecycleEvent(
            client_id, event_type, observed_at, session, principal, topics=tuple(topics)
        )
    return LifecycleEvent(client_id, event_type, observed_at, session, principal)


def evaluate_lifecycle_event(event: object, config: DetectionConfig) -> list[Finding]:
    """Findings for one lifecycle event: connection source and subscriptions."""
    parsed = parse_lifecycle_event(event)
    if config.is_exempt(parsed.client_id):
        return []
    if parsed.event_type == "connected":
        return check_connection_source(parsed, config)
    if parsed.event_type == "subscribed":
        return check_subscriptions(parsed, config)
    return []


def check_connection_source(event: LifecycleEvent, config: DetectionConfig) -> list[Finding]:
    """A finding when the client's address is in none of the allowed networks."""
    if not config.allowed_networks or event.ip_address is None:
        return []
    try:
        address = ipaddress.ip_address(event.ip_address)
    except ValueError:
        raise MalformedEvent(
            "ipAddress", f"{_shorten(event.ip_address)!r} is not an IPv4 or IPv6 address"
        ) from None
    if any(address in network for network in config.allowed_networks):
        return []
    thing = _thing_or_none(event.client_id)
    return [
        Finding(
            detection=Detection.CONNECTION_OUTSIDE_ALLOWLIST,
            observed_at=event.observed_at,
            thing_name=thing,
            client_id=_shorten(event.client_id),
            summary=f"{_shorten(event.client_id)} connected from {address}, "
            "outside the allowed networks",
            evidence={
                "ipAddress": str(address),
                "allowedSourceCidrs": [str(n) for n in config.allowed_networks],
                "sessionIdentifier": event.session_identifier,
                "principalIdentifier": event.principal_identifier,
            },
        )
    ]


def check_subscriptions(event: LifecycleEvent, config: DetectionConfig) -> list[Finding]:
    """A finding listing every topic filter the device may not subscribe to.

    The check is :meth:`DeviceAccess.allows` with the client id as thing name:
    exact topics only, so a wildcard filter (``cmd/+/commands``) is never allowed,
    and a client id that is not a valid thing name is allowed nothing.
    """
    thing = _thing_or_none(event.client_id)
    unexpected = [
        topic
        for topic in event.topics
        if thing is None or not config.access.allows(Access.SUBSCRIBE, thing, topic)
    ]
    if not unexpected:
        return []
    shown = [_shorten(t) for t in unexpected[:_MAX_TOPICS_PER_FINDING]]
    return [
        Finding(
            detection=Detection.UNEXPECTED_SUBSCRIPTION,
            observed_at=event.observed_at,
            thing_name=thing,
            client_id=_shorten(event.client_id),
            summary=f"{_shorten(event.client_id)} subscribed to {len(unexpected)} topic "
            f"filter(s) outside its topic model: {', '.join(shown[:3])}",
            evidence={
                "topics": shown,
                "unexpectedCount": len(unexpected),
                "sessionIdentifier": event.session_identifier,
                "principalIdentifier": event.principal_identifier,
            },
            count=len(unexpected),
        )
    ]


# -- telemetry counting ------------------------------------------------------------


def telemetry_rule_sql(template: str) -> str:
    """IoT rule SQL emitting one ``{"thingName": ...}`` record per telemetry message.

    The topic filter is the template with ``+`` for the thing level, and the
    thing name is that level (``topic(n)``). The payload is not selected: the
    count needs none of it, and telemetry stays out of the security logs.
    """
    levels = template.split("/")
    if THING_PLACEHOLDER not in levels:
        raise ValueError(
            f"telemetry: {_shorten(template)!r} has no {THING_PLACEHOLDER} level; "
            "allowed: a topic template such as 'dt/{thing}/telemetry'"
        )
    if "'" in template or "\\" in template:
        raise ValueError(
            f"telemetry: {_shorten(template)!r} contains a quote or backslash, "
            "which IoT SQL cannot take in a FROM clause; allowed: topic levels "
            "without ' and \\"
        )
    position = levels.index(THING_PLACEHOLDER) + 1
    topic_filter = "/".join("+" if level == THING_PLACEHOLDER else level for level in levels)
    # Not injectable: the template was checked above and topic templates are validated.
    return f"SELECT topic({position}) AS thingName FROM '{topic_filter}'"  # noqa: S608


# -- IoT v2 log entries -----------------------------------------------------------

#: The IoT log events that carry a device's own publish/subscribe attempts.
AUTHORIZATION_EVENT_TYPES = ("Publish-In", "Subscribe")
AUTHORIZATION_FAILURE_REASON = "AUTHORIZATION_FAILURE"

#: CloudWatch Logs filter pattern selecting exactly what :func:`evaluate_iot_log_message`
#: turns into findings; the subscription filter uses it so the function sees little else.
AUTHORIZATION_FAILURE_FILTER_PATTERN = (
    '{ $.status = "Failure" && $.reason = "AUTHORIZATION_FAILURE" && '
    '($.eventType = "Publish-In" || $.eventType = "Subscribe") }'
)


def evaluate_iot_log_message(message: str) -> Finding | None:
    """A finding for an IoT v2 log entry that records a refused publish or subscribe.

    Returns None for any other well-formed entry. Raises :class:`MalformedEvent`
    when the entry is not a JSON object or lacks the fields to name the device.
    """
    try:
        entry = json.loads(message)
    except (TypeError, ValueError):
        raise MalformedEvent("message", f"{_preview(message)} is not JSON") from None
    if not isinstance(entry, Mapping):
        raise MalformedEvent("message", f"{_preview(entry)} is not a JSON object")
    event_type = entry.get("eventType")
    if (
        event_type not in AUTHORIZATION_EVENT_TYPES
        or entry.get("status") != "Failure"
        or entry.get("reason") != AUTHORIZATION_FAILURE_REASON
    ):
        return None
    client_id = _required_str(entry, "clientId")
    topic = _optional_str(entry, "topicName")
    action = "publish" if event_type == "Publish-In" else "subscribe"
    thing = _thing_or_none(client_id)
    return Finding(
        detection=Detection.AUTHORIZATION_FAILURE,
        observed_at=_log_timestamp_to_iso(entry.get("timestamp")),
        thing_name=thing,
        client_id=_shorten(client_id),
        record_source="iot-log",
        summary=f"{_shorten(client_id)} was refused {action} on "
        f"{_shorten(topic) if topic is not None else 'an unnamed topic'}",
        evidence={
            "action": action,
            "topic": _shorten(topic) if topic is not None else None,
            "sourceIp": _optional_str(entry, "sourceIp"),
            "protocol": _optional_str(entry, "protocol"),
            "traceId": _optional_str(entry, "traceId"),
            "principalId": _optional_str(entry, "principalId"),
        },
    )


# -- CloudWatch alarm state changes ---------------------------------------------------


@dataclass(frozen=True)
class Contributor:
    """One device from a Contributor Insights report, with its value in the window."""

    thing_name: str
    value: float


def parse_insight_report(response: Mapping[str, Any]) -> list[Contributor]:
    """Contributors of a ``GetInsightRuleReport`` response, largest first."""
    contributors = []
    for item in response.get("Contributors") or []:
        keys = item.get("Keys") if isinstance(item, Mapping) else None
        value = item.get("ApproximateAggregateValue") if isinstance(item, Mapping) else None
        if not (isinstance(keys, list) and keys and isinstance(keys[0], str)):
            continue
        if not isinstance(value, int | float):
            continue
        contributors.append(Contributor(_shorten(keys[0]), float(value)))
    return sorted(contributors, key=lambda c: c.value, reverse=True)


@dataclass(frozen=True)
class AlarmStateChange:
    """The fields of an EventBridge ``CloudWatch Alarm State Change`` event we use."""

    alarm_arn: str
    alarm_name: str
    state: str
    reason: str
    observed_at: str


def parse_alarm_state_change(event: object) -> AlarmStateChange:
    if not isinstance(event, Mapping):
        raise MalformedEvent("event", f"is {type(event).__name__}, not a JSON object")
    resources = event.get("resources")
    if not (isinstance(resources, list) and resources and isinstance(resources[0], str)):
        raise MalformedEvent("resources", f"{_preview(resources)} names no alarm ARN")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("detail", f"{_preview(detail)} is not a JSON object")
    state = detail.get("state")
    if not isinstance(state, Mapping):
        raise MalformedEvent("detail.state", f"{_preview(state)} is not a JSON object")
    value = state.get("value")
    if not isinstance(value, str):
        raise MalformedEvent("detail.state.value", f"{_preview(value)} is not a string")
    name = detail.get("alarmName")
    reason = state.get("reason")
    time = event.get("time")
    return AlarmStateChange(
        alarm_arn=resources[0],
        alarm_name=name if isinstance(name, str) else resources[0].rsplit(":", 1)[-1],
        state=value,
        reason=reason if isinstance(reason, str) else "",
        observed_at=time if isinstance(time, str) else _now_iso(),
    )


def alarm_finding(
    change: AlarmStateChange, detection: Detection, contributors: Sequence[Contributor] = ()
) -> Finding | None:
    """A finding for an alarm that went into ALARM; None for any other state.

    For the per-device detections the top contributor (from Contributor
    Insights) is named as the thing.
    """
    if change.state != "ALARM":
        return None
    top = contributors[0] if contributors else None
    who = f"; top device {top.thing_name} ({top.value:g})" if top else ""
    return Finding(
        detection=detection,
        observed_at=change.observed_at,
        thing_name=_thing_or_none(top.thing_name) if top else None,
        client_id=top.thing_name if top else None,
        record_source="cloudwatch-alarm",
        summary=f"alarm {change.alarm_name}: {DETECTIONS[detection].title}{who}",
        evidence={
            "alarmArn": change.alarm_arn,
            "alarmName": change.alarm_name,
            "reason": change.reason[:1024],
            "topContributors": [
                {"thingName": c.thing_name, "value": c.value} for c in contributors[:10]
            ],
        },
    )


#: Environment variable of the alarm handler: alarm ARN -> detection (+ insight rule).
ALARM_ROUTES_ENVIRONMENT_VARIABLE = "ALARM_ROUTES"


@dataclass(frozen=True)
class AlarmRoute:
    """Which detection an alarm stands for, and the Contributor Insights rule naming devices."""

    detection: Detection
    insight_rule: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"detection": self.detection.value, "insightRule": self.insight_rule}


def parse_alarm_routes(
    text: str, *, source: str = ALARM_ROUTES_ENVIRONMENT_VARIABLE
) -> dict[str, AlarmRoute]:
    """alarm ARN -> :class:`AlarmRoute`, from the JSON the construct writes."""
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{source}: not JSON ({error})") from None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: {_preview(raw)} is not an object of alarm ARNs")
    routes = {}
    for arn, route in raw.items():
        if not isinstance(route, Mapping):
            raise ValueError(f"{source}.{arn}: {_preview(route)} is not an object")
        try:
            detection = Detection(str(route.get("detection")))
        except ValueError:
            allowed = ", ".join(d.value for d in Detection)
            raise ValueError(
                f"{source}.{arn}.detection: {_preview(route.get('detection'))} is not a "
                f"detection; allowed: {allowed}"
            ) from None
        rule = route.get("insightRule")
        if rule is not None and not isinstance(rule, str):
            raise ValueError(f"{source}.{arn}.insightRule: {_preview(rule)} is not a string")
        routes[arn] = AlarmRoute(detection, rule)
    return routes


#: EventBridge PutEvents takes at most 10 entries per call.
PUT_EVENTS_BATCH = 10


def publish_findings(
    findings: Sequence[Finding],
    put_events: Callable[..., Mapping[str, Any]],
    event_bus_name: str,
) -> None:
    """Send findings to EventBridge in batches; raise naming the failed entries' error codes.

    ``put_events`` is ``boto3.client("events").put_events``. Raising lets Lambda
    retry the invocation: a finding is delivered at least once, never silently lost.
    """
    for start in range(0, len(findings), PUT_EVENTS_BATCH):
        batch = findings[start : start + PUT_EVENTS_BATCH]
        response = put_events(Entries=[f.put_events_entry(event_bus_name) for f in batch])
        failed = response.get("FailedEntryCount") or 0
        if failed:
            codes = sorted(
                {
                    str(entry.get("ErrorCode"))
                    for entry in response.get("Entries") or []
                    if isinstance(entry, Mapping) and entry.get("ErrorCode")
                }
            )
            raise RuntimeError(
                f"EventBridge refused {failed} of {len(batch)} security events "
                f"(error codes: {', '.join(codes) or 'none given'})"
            )


# -- helpers -----------------------------------------------------------------------------


def findings_by_metric(findings: Iterable[Finding]) -> dict[tuple[str, str | None], int]:
    """(metric name, thing or None for the fleet) -> count, for metric emission."""
    totals: dict[tuple[str, str | None], int] = {}
    for finding in findings:
        keys: list[tuple[str, str | None]] = [(finding.metric_name, None)]
        if finding.thing_name is not None:
            keys.append((finding.metric_name, finding.thing_name))
        for key in keys:
            totals[key] = totals.get(key, 0) + finding.count
    return totals


def _thing_or_none(client_id: str) -> str | None:
    try:
        return validate_thing_name(client_id)
    except TopicModelError:
        return None


def _required_str(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(name, f"{_preview(value)} is missing or not a non-empty string")
    return value


def _optional_str(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    return _shorten(value) if isinstance(value, str) else None


def _epoch_millis_to_iso(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedEvent("timestamp", f"{_preview(value)} is not milliseconds since the epoch")
    try:
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvent("timestamp", f"{_preview(value)} is out of range") from None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_timestamp_to_iso(value: object) -> str:
    """IoT v2 logs write ``2017-08-10 15:37:26.841`` (UTC); fall back to now if absent."""
    if isinstance(value, str):
        try:
            moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _now_iso()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shorten(value: str, limit: int = _MAX_EVIDENCE_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _preview(value: object) -> str:
    return _shorten(repr(value), 80)
