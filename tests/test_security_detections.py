"""Each security detection's logic on records of AWS's documented shapes (no AWS needed)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.core.security_detections import (
    DETECTIONS,
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    AlarmRoute,
    Contributor,
    Detection,
    DetectionConfig,
    Finding,
    MalformedEvent,
    Severity,
    alarm_finding,
    evaluate_iot_log_message,
    evaluate_lifecycle_event,
    findings_by_metric,
    parse_alarm_routes,
    parse_alarm_state_change,
    parse_insight_report,
    publish_findings,
    telemetry_rule_sql,
)
from iot_remote_access.core.topics import DeviceAccess, TopicModel
from tests.support import security_fixtures as fx

ALLOWLIST = DetectionConfig(
    allowed_networks=(
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
)

# -- connections from outside the allowed networks ------------------------------------


def test_connection_from_outside_the_allowlist_is_a_high_finding() -> None:
    (finding,) = evaluate_lifecycle_event(fx.CONNECTED, ALLOWLIST)
    assert finding.detection is Detection.CONNECTION_OUTSIDE_ALLOWLIST
    assert finding.severity is Severity.HIGH
    assert finding.thing_name == "186b5"
    assert finding.observed_at == "2019-11-06T01:03:50.757Z"
    assert finding.evidence["ipAddress"] == "192.0.2.0"
    assert finding.evidence["allowedSourceCidrs"] == ["198.51.100.0/24", "2001:db8::/32"]


@pytest.mark.parametrize("address", ["198.51.100.77", "2001:db8::1"])
def test_connection_from_an_allowed_network_is_fine(address: str) -> None:
    assert evaluate_lifecycle_event({**fx.CONNECTED, "ipAddress": address}, ALLOWLIST) == []


def test_ipv6_outside_the_allowlist_is_found() -> None:
    (finding,) = evaluate_lifecycle_event({**fx.CONNECTED, "ipAddress": "2001:db9::1"}, ALLOWLIST)
    assert finding.evidence["ipAddress"] == "2001:db9::1"


def test_without_an_allowlist_the_connection_check_is_off() -> None:
    assert evaluate_lifecycle_event(fx.CONNECTED, DetectionConfig()) == []


def test_exempt_clients_are_skipped() -> None:
    config = DetectionConfig(
        allowed_networks=ALLOWLIST.allowed_networks, exempt_client_ids=re.compile("backend-.*")
    )
    assert evaluate_lifecycle_event({**fx.CONNECTED, "clientId": "backend-7"}, config) == []
    assert len(evaluate_lifecycle_event(fx.CONNECTED, config)) == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {k: v for k, v in fx.CONNECTED.items() if k != "ipAddress"},
            r"^ipAddress: None is missing or not a non-empty string",
        ),
        (
            {**fx.CONNECTED, "ipAddress": "not-an-ip"},
            r"^ipAddress: 'not-an-ip' is not an IPv4 or IPv6 address",
        ),
        ({k: v for k, v in fx.CONNECTED.items() if k != "clientId"}, r"^clientId: None is missing"),
        (
            {**fx.CONNECTED, "timestamp": "yesterday"},
            r"^timestamp: 'yesterday' is not milliseconds since the epoch",
        ),
        ({**fx.CONNECTED, "timestamp": True}, r"^timestamp: True is not milliseconds"),
        ({**fx.CONNECTED, "eventType": 3}, r"^eventType: 3 is missing or not a non-empty string"),
        (["not", "an", "object"], r"^event: is list, not a JSON object"),
    ],
)
def test_malformed_or_partial_connect_events_name_the_field(event: Any, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        evaluate_lifecycle_event(event, ALLOWLIST)


def test_disconnected_and_connect_failed_events_raise_no_finding() -> None:
    assert evaluate_lifecycle_event(fx.DISCONNECTED, ALLOWLIST) == []
    assert evaluate_lifecycle_event(fx.CONNECT_FAILED, ALLOWLIST) == []


# -- unexpected subscriptions -------------------------------------------------------------


def test_documented_subscribe_event_outside_the_topic_model_is_found() -> None:
    (finding,) = evaluate_lifecycle_event(fx.SUBSCRIBED, DetectionConfig())
    assert finding.detection is Detection.UNEXPECTED_SUBSCRIPTION
    assert finding.severity is Severity.HIGH
    assert finding.thing_name == "186b5"
    assert finding.evidence["topics"] == ["foo/bar", "device/data", "dog/cat"]
    assert finding.count == 3


def test_own_commands_topic_is_expected() -> None:
    event = {**fx.SUBSCRIBED, "topics": ["cmd/186b5/commands"]}
    assert evaluate_lifecycle_event(event, DetectionConfig()) == []


@pytest.mark.parametrize(
    "topic",
    [
        "cmd/other-device/commands",  # another device's topic
        "cmd/+/commands",  # a wildcard filter, even if it covers the device's own topic
        "cmd/#",
        "dt/186b5/telemetry",  # publish-only topic
        "$aws/things/186b5/tunnels/notify",  # tunneling is off in this model
        "CMD/186b5/commands",  # topics are case-sensitive
    ],
)
def test_topics_outside_the_model_are_unexpected(topic: str) -> None:
    event = {**fx.SUBSCRIBED, "topics": ["cmd/186b5/commands", topic]}
    (finding,) = evaluate_lifecycle_event(event, DetectionConfig())
    assert finding.evidence["topics"] == [topic]
    assert finding.count == 1


def test_switched_on_capabilities_are_expected() -> None:
    access = DeviceAccess(
        topics=TopicModel(commands="fleet/{thing}/down"),
        tunneling=True,
        rotation=True,
        jobs=True,
        job_ids=("fw-1",),
    )
    topics = [
        "fleet/186b5/down",
        "$aws/things/186b5/tunnels/notify",
        "rot/186b5/certificate",
        "$aws/things/186b5/jobs/notify-next",
        "$aws/things/186b5/jobs/fw-1/update/accepted",
    ]
    event = {**fx.SUBSCRIBED, "topics": topics}
    assert evaluate_lifecycle_event(event, DetectionConfig(access=access)) == []


def test_client_id_that_is_no_thing_name_may_subscribe_to_nothing() -> None:
    event = {**fx.SUBSCRIBED, "clientId": "gateway.example.com", "topics": ["cmd/x/commands"]}
    (finding,) = evaluate_lifecycle_event(event, DetectionConfig())
    assert finding.thing_name is None
    assert finding.client_id == "gateway.example.com"


def test_unsubscribe_events_raise_no_finding() -> None:
    event = {**fx.SUBSCRIBED, "eventType": "unsubscribed"}
    assert evaluate_lifecycle_event(event, DetectionConfig()) == []


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        (None, r"^topics: None is not a list"),
        ("foo/bar", r"^topics: 'foo/bar' is not a list"),
        (["ok", 7], r"^topics: \['ok', 7\] is not a list of topic strings"),
    ],
)
def test_malformed_subscribe_events_name_the_field(topics: Any, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        evaluate_lifecycle_event({**fx.SUBSCRIBED, "topics": topics}, DetectionConfig())


def test_huge_topic_lists_are_cut_in_the_evidence() -> None:
    event = {**fx.SUBSCRIBED, "topics": [f"x/{i}/{'y' * 400}" for i in range(500)]}
    (finding,) = evaluate_lifecycle_event(event, DetectionConfig())
    assert finding.count == 500
    assert len(finding.evidence["topics"]) == 50
    assert all(len(t) <= 256 for t in finding.evidence["topics"])
    assert len(json.dumps(finding.detail())) < 20_000


# -- authorization failures from the IoT log ---------------------------------------------------


def test_refused_publish_is_an_authorization_failure() -> None:
    finding = evaluate_iot_log_message(json.dumps(fx.PUBLISH_IN_REFUSED))
    assert finding is not None
    assert finding.detection is Detection.AUTHORIZATION_FAILURE
    assert finding.severity is Severity.MEDIUM
    assert finding.thing_name == "sensor-1"
    assert finding.record_source == "iot-log"
    assert finding.observed_at == "2017-08-10T15:39:30.961Z"
    assert finding.evidence == {
        "action": "publish",
        "topic": "cmd/other-device/commands",
        "sourceIp": "205.251.233.181",
        "protocol": "MQTT",
        "traceId": "672ec480-31ce-fd8b-b5fb-22e3ac420699",
        "principalId": fx.PUBLISH_IN_REFUSED["principalId"],
    }


def test_refused_subscribe_is_an_authorization_failure() -> None:
    finding = evaluate_iot_log_message(json.dumps(fx.SUBSCRIBE_REFUSED))
    assert finding is not None
    assert finding.evidence["action"] == "subscribe"
    assert finding.evidence["topic"] == "$aws/things/MyThing/shadow/#"


@pytest.mark.parametrize(
    "entry",
    [
        fx.PUBLISH_IN_SUCCESS,
        fx.SUBSCRIBE_SUCCESS,
        {**fx.PUBLISH_IN_REFUSED, "reason": "THROTTLED"},
        {**fx.PUBLISH_IN_REFUSED, "eventType": "Publish-Out"},
        {**fx.PUBLISH_IN_REFUSED, "eventType": "Connect"},
    ],
)
def test_other_log_entries_are_not_findings(entry: dict[str, Any]) -> None:
    assert evaluate_iot_log_message(json.dumps(entry)) is None


def test_partial_refusal_without_topic_or_timestamp_is_still_reported() -> None:
    entry = {
        k: v
        for k, v in fx.PUBLISH_IN_REFUSED.items()
        if k not in ("topicName", "timestamp", "sourceIp")
    }
    finding = evaluate_iot_log_message(json.dumps(entry))
    assert finding is not None
    assert finding.evidence["topic"] is None
    assert finding.evidence["sourceIp"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", finding.observed_at)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("Publish-In Failure", r"^message: 'Publish-In Failure' is not JSON"),
        ("[1, 2]", r"^message: \[1, 2\] is not a JSON object"),
        (
            json.dumps({k: v for k, v in fx.PUBLISH_IN_REFUSED.items() if k != "clientId"}),
            r"^clientId: None is missing",
        ),
    ],
)
def test_malformed_log_entries_name_the_problem(message: str, error: str) -> None:
    with pytest.raises(MalformedEvent, match=error):
        evaluate_iot_log_message(message)


# -- rate alarms (alarm state changes) ---------------------------------------------------------

ALARM_ARN = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Ref-TopDevicePublishRateAlarm"


def test_top_device_alarm_names_the_top_contributor() -> None:
    change = parse_alarm_state_change(fx.alarm_state_change(ALARM_ARN))
    contributors = parse_insight_report(fx.INSIGHT_RULE_REPORT)
    assert contributors == [Contributor("sensor-9", 900.0), Contributor("sensor-7", 410.0)]
    finding = alarm_finding(change, Detection.PUBLISH_RATE_TOP_DEVICE, contributors)
    assert finding is not None
    assert finding.thing_name == "sensor-9"
    assert finding.record_source == "cloudwatch-alarm"
    assert finding.observed_at == "2019-10-02T17:04:40Z"
    assert finding.evidence["topContributors"][0] == {"thingName": "sensor-9", "value": 900.0}
    assert "Threshold Crossed" in finding.evidence["reason"]


def test_fleet_anomaly_alarm_names_no_device() -> None:
    change = parse_alarm_state_change(fx.alarm_state_change(ALARM_ARN))
    finding = alarm_finding(change, Detection.PUBLISH_RATE_ANOMALY)
    assert finding is not None and finding.thing_name is None


def test_alarm_returning_to_ok_is_not_a_finding() -> None:
    change = parse_alarm_state_change(fx.alarm_state_change(ALARM_ARN, state="OK"))
    assert alarm_finding(change, Detection.CONNECTION_CHURN) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("resources"), r"^resources: None names no alarm ARN"),
        (lambda e: e.update(detail="x"), r"^detail: 'x' is not a JSON object"),
        (lambda e: e["detail"].pop("state"), r"^detail\.state: None is not a JSON object"),
        (
            lambda e: e["detail"]["state"].update(value=1),
            r"^detail\.state\.value: 1 is not a string",
        ),
    ],
)
def test_malformed_alarm_events_name_the_field(mutate: Any, message: str) -> None:
    event = fx.alarm_state_change(ALARM_ARN)
    mutate(event)
    with pytest.raises(MalformedEvent, match=message):
        parse_alarm_state_change(event)


def test_partial_insight_reports_skip_unusable_contributors() -> None:
    report = {
        "Contributors": [
            {"Keys": [], "ApproximateAggregateValue": 5},
            {"Keys": ["a"], "ApproximateAggregateValue": "many"},
            "junk",
            {"Keys": ["b"], "ApproximateAggregateValue": 3},
        ]
    }
    assert parse_insight_report(report) == [Contributor("b", 3.0)]
    assert parse_insight_report({}) == []


def test_alarm_routes_round_trip_and_errors() -> None:
    text = json.dumps(
        {
            ALARM_ARN: AlarmRoute(Detection.CONNECTION_CHURN, "rule-1").to_dict(),
            "arn:2": {"detection": "publish-rate-anomaly"},
        }
    )
    assert parse_alarm_routes(text) == {
        ALARM_ARN: AlarmRoute(Detection.CONNECTION_CHURN, "rule-1"),
        "arn:2": AlarmRoute(Detection.PUBLISH_RATE_ANOMALY, None),
    }
    with pytest.raises(
        ValueError,
        match=r"ALARM_ROUTES\.arn:x\.detection: 'nope' is not a "
        r"detection; allowed: authorization-failure, ",
    ):
        parse_alarm_routes(json.dumps({"arn:x": {"detection": "nope"}}))
    with pytest.raises(ValueError, match=r"^ALARM_ROUTES: not JSON"):
        parse_alarm_routes("{")


# -- configuration, schema, metrics, publishing ---------------------------------------------------


def test_detection_config_round_trips_through_its_environment_variable() -> None:
    config = DetectionConfig(
        access=DeviceAccess(
            topics=TopicModel(telemetry="fleet/{thing}/up"),
            tunneling=True,
            jobs=True,
            job_ids=("fw-1",),
        ),
        allowed_networks=ALLOWLIST.allowed_networks,
        exempt_client_ids=re.compile("svc-.*"),
    )
    again = DetectionConfig.from_json(config.to_json())
    assert again.access == config.access
    assert again.allowed_networks == config.allowed_networks
    assert again.exempt_client_ids is not None and again.exempt_client_ids.pattern == "svc-.*"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("topics"), r"^DETECTION_CONFIG: missing or mistyped setting 'topics'"),
        (
            lambda c: c.update(allowedSourceCidrs=["10.0.0.1/8"]),
            r"^DETECTION_CONFIG: allowedSourceCidrs: '10\.0\.0\.1/8' is not a CIDR range",
        ),
        (
            lambda c: c["topics"].update(telemetry="dt/+/x"),
            r"^DETECTION_CONFIG: telemetry: 'dt/\+/x'",
        ),
        (lambda c: c.update(tunneling="yes"), r"^DETECTION_CONFIG: tunneling: 'yes' is not true"),
    ],
)
def test_broken_detection_config_is_refused_naming_the_field(mutate: Any, message: str) -> None:
    raw = json.loads(DetectionConfig().to_json())
    mutate(raw)
    with pytest.raises(ValueError, match=message):
        DetectionConfig.from_json(json.dumps(raw))


def test_event_detail_has_exactly_the_documented_schema() -> None:
    (finding,) = evaluate_lifecycle_event(fx.SUBSCRIBED, DetectionConfig())
    detail = finding.detail()
    assert set(detail) == {
        "schemaVersion",
        "detection",
        "severity",
        "thingName",
        "clientId",
        "observedAt",
        "summary",
        "recordSource",
        "evidence",
    }
    assert detail["schemaVersion"] == "1"
    entry = finding.put_events_entry("default")
    assert entry["Source"] == EVENT_SOURCE == "iot-remote-access.security"
    assert entry["DetailType"] == EVENT_DETAIL_TYPE
    assert json.loads(entry["Detail"]) == detail


def test_every_detection_has_a_severity_and_metric() -> None:
    assert set(DETECTIONS) == set(Detection)
    assert {d for d, s in DETECTIONS.items() if s.severity is Severity.HIGH} == {
        Detection.UNEXPECTED_SUBSCRIPTION,
        Detection.CONNECTION_OUTSIDE_ALLOWLIST,
    }


def test_metric_counts_per_fleet_and_per_thing() -> None:
    refused = evaluate_iot_log_message(json.dumps(fx.PUBLISH_IN_REFUSED))
    assert refused is not None
    (subscribed,) = evaluate_lifecycle_event(fx.SUBSCRIBED, DetectionConfig())
    (not_a_thing,) = evaluate_lifecycle_event(
        {**fx.SUBSCRIBED, "clientId": "a.b", "topics": ["x"]}, DetectionConfig()
    )
    assert findings_by_metric([refused, refused, subscribed, not_a_thing]) == {
        ("AuthorizationFailures", None): 2,
        ("AuthorizationFailures", "sensor-1"): 2,
        ("UnexpectedSubscriptions", None): 4,
        ("UnexpectedSubscriptions", "186b5"): 3,
    }


@pytest.mark.parametrize(
    ("template", "sql"),
    [
        ("dt/{thing}/telemetry", "SELECT topic(2) AS thingName FROM 'dt/+/telemetry'"),
        ("{thing}/up", "SELECT topic(1) AS thingName FROM '+/up'"),
        ("a/b/c/{thing}", "SELECT topic(4) AS thingName FROM 'a/b/c/+'"),
    ],
)
def test_telemetry_rule_counts_the_thing_level_without_the_payload(template: str, sql: str) -> None:
    assert telemetry_rule_sql(template) == sql


def test_telemetry_rule_refuses_quotes() -> None:
    with pytest.raises(ValueError, match=r"telemetry: \"dt/\{thing\}/it's\" contains a quote"):
        telemetry_rule_sql("dt/{thing}/it's")


def test_findings_reach_an_eventbridge_subscriber_in_batches_of_ten() -> None:
    """moto's EventBridge routes the events to an SQS queue, as a SIEM rule would."""
    finding = Finding(
        Detection.AUTHORIZATION_FAILURE,
        "2026-01-01T00:00:00.000Z",
        "s",
        thing_name="t",
        record_source="iot-log",
    )
    with mock_aws():
        events, sqs = boto3.client("events"), boto3.client("sqs")
        queue = sqs.create_queue(QueueName="siem")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(Name="siem", EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
        events.put_targets(Rule="siem", Targets=[{"Id": "siem", "Arn": queue_arn}])
        calls: list[int] = []

        def put_events(**kwargs: Any) -> Any:
            calls.append(len(kwargs["Entries"]))
            return events.put_events(**kwargs)

        publish_findings([finding] * 23, put_events, "default")
        received = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            received += batch
            for message in batch:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert calls == [10, 10, 3]
    assert len(received) == 23
    event = json.loads(received[0]["Body"])
    assert event["detail-type"] == EVENT_DETAIL_TYPE
    assert event["detail"]["detection"] == "authorization-failure"


def test_refused_events_raise_so_lambda_retries() -> None:
    finding = Finding(Detection.CONNECTION_CHURN, "2026-01-01T00:00:00.000Z", "s")

    def put_events(**kwargs: Any) -> Any:  # stands in for a throttled PutEvents response
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}]}

    with pytest.raises(
        RuntimeError,
        match=r"refused 1 of 1 security events \(error codes: "
        r"ThrottlingException\)",
    ):
        publish_findings([finding], put_events, "default")
