"""The two Lambda handlers end to end: AWS-shaped triggers in, EMF metrics and EventBridge events out.

EventBridge is moto's (a rule on ``source: iot-remote-access.security`` routes the
events to an SQS queue, as a SIEM subscription would). moto has no
GetInsightRuleReport, so a botocore Stubber with the API's response shape
stands in for it; a Stubber also plays a throttled PutEvents.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from iot_remote_access.core.security_detections import (
    EVENT_SOURCE,
    AlarmRoute,
    Detection,
    DetectionConfig,
    parse_network,
)
from iot_remote_access.core.topics import DeviceAccess
from tests.support import security_fixtures as fx

TOP_DEVICE_ALARM = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Ref-TopDevicePublishRate"
ANOMALY_ALARM = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Ref-PublishRateAnomaly"


@dataclass
class FakeLambdaContext:
    """Stand-in for the Lambda runtime's context object (Powertools reads these fields)."""

    function_name: str = "security-detections"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:security-detections"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"


@dataclass
class Siem:
    """An SQS queue behind an EventBridge rule on this library's event source."""

    sqs: Any
    url: str

    def events(self) -> list[dict[str, Any]]:
        received = []
        while batch := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in batch:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return received


@pytest.fixture
def siem() -> Iterator[Siem]:
    with mock_aws():
        sqs, events = boto3.client("sqs"), boto3.client("events")
        url = sqs.create_queue(QueueName="siem")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="siem", EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
        events.put_targets(Rule="siem", Targets=[{"Id": "siem", "Arn": arn}])
        yield Siem(sqs, url)


def _load(module: str, monkeypatch: pytest.MonkeyPatch, **environment: str) -> ModuleType:
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "iot-remote-access-test")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(importlib.import_module(module))


@pytest.fixture
def detector(siem: Siem, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    config = DetectionConfig(
        access=DeviceAccess(tunneling=True), allowed_networks=(parse_network("198.51.100.0/24"),)
    )
    return _load(
        "iot_remote_access.lambdas.security_detections.handler",
        monkeypatch,
        DETECTION_CONFIG=config.to_json(),
    )


@pytest.fixture
def alarm_events(siem: Siem, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    routes = {
        TOP_DEVICE_ALARM: AlarmRoute(Detection.PUBLISH_RATE_TOP_DEVICE, "Ref-TopPublishers"),
        ANOMALY_ALARM: AlarmRoute(Detection.PUBLISH_RATE_ANOMALY),
    }
    return _load(
        "iot_remote_access.lambdas.security_alarm_events.handler",
        monkeypatch,
        ALARM_ROUTES=json.dumps({k: v.to_dict() for k, v in routes.items()}),
    )


def _emf(output: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format documents among the function's output lines."""
    documents = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [d for d in documents if "_aws" in d]


def _metric(emf: list[dict[str, Any]], name: str, dimensions: list[str]) -> float:
    for document in emf:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            names = [m["Name"] for m in directive["Metrics"]]
            if name in names and directive["Dimensions"] == [dimensions]:
                assert directive["Namespace"] == "IotRemoteAccess/Security"
                return float(sum(document[name]))
    raise AssertionError(f"no EMF metric {name} with dimensions {dimensions}: {emf}")


# -- detector: lifecycle events -------------------------------------------------------------------


def test_unexpected_subscription_becomes_metric_and_security_event(
    detector: ModuleType, siem: Siem, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {
        **fx.SUBSCRIBED,
        "topics": [
            "cmd/186b5/commands",
            "$aws/things/186b5/tunnels/notify",
            "cmd/+/commands",
            "dt/other/telemetry",
        ],
    }
    result = detector.handler(event, FakeLambdaContext())
    assert result == {"statusCode": 200, "body": json.dumps({"findings": 1, "malformed": 0})}
    (received,) = siem.events()
    assert received["source"] == "iot-remote-access.security"
    assert received["detail-type"] == "IoT Security Finding"
    detail = received["detail"]
    assert detail["detection"] == "unexpected-subscription" and detail["severity"] == "high"
    assert detail["thingName"] == "186b5"
    assert detail["evidence"]["topics"] == ["cmd/+/commands", "dt/other/telemetry"]
    emf = _emf(capsys.readouterr().out)
    assert _metric(emf, "UnexpectedSubscriptions", []) == 2
    assert _metric(emf, "UnexpectedSubscriptions", ["ThingName"]) == 2
    assert all("service" not in d for d in emf)  # the alarms match dimensionless metrics


def test_connection_from_outside_the_allowlist(detector: ModuleType, siem: Siem) -> None:
    assert json.loads(detector.handler(fx.CONNECTED, FakeLambdaContext())["body"])["findings"] == 1
    (received,) = siem.events()
    assert received["detail"]["detection"] == "connection-outside-allowlist"
    assert received["detail"]["evidence"]["ipAddress"] == "192.0.2.0"
    inside = {**fx.CONNECTED, "ipAddress": "198.51.100.9"}
    assert json.loads(detector.handler(inside, FakeLambdaContext())["body"])["findings"] == 0
    assert siem.events() == []


def test_malformed_lifecycle_event_is_answered_400_naming_the_field(
    detector: ModuleType, siem: Siem, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {k: v for k, v in fx.SUBSCRIBED.items() if k != "topics"}
    result = detector.handler(event, FakeLambdaContext())
    assert result["statusCode"] == 400
    assert json.loads(result["body"]) == {"error": "topics: None is not a list of topic strings"}
    assert siem.events() == []
    assert _metric(_emf(capsys.readouterr().out), "MalformedRecords", []) == 1


# -- detector: IoT log subscription ------------------------------------------------------------------


def test_refused_publish_from_the_iot_log(
    detector: ModuleType, siem: Siem, capsys: pytest.CaptureFixture[str]
) -> None:
    event = fx.cloudwatch_logs_subscription_event(
        [
            json.dumps(fx.PUBLISH_IN_REFUSED),
            json.dumps(fx.PUBLISH_IN_SUCCESS),
            "not json at all",
            json.dumps(fx.SUBSCRIBE_REFUSED),
        ]
    )
    result = detector.handler(event, FakeLambdaContext())
    assert json.loads(result["body"]) == {"findings": 2, "malformed": 1}
    received = siem.events()
    assert sorted(e["detail"]["evidence"]["action"] for e in received) == ["publish", "subscribe"]
    assert {e["detail"]["recordSource"] for e in received} == {"iot-log"}
    emf = _emf(capsys.readouterr().out)
    assert _metric(emf, "AuthorizationFailures", []) == 2
    assert _metric(emf, "AuthorizationFailures", ["ThingName"]) == 2
    assert _metric(emf, "MalformedRecords", []) == 1


def test_control_messages_are_ignored(detector: ModuleType, siem: Siem) -> None:
    event = fx.cloudwatch_logs_subscription_event(
        ["CWL CONTROL MESSAGE: Checking health of destination Lambda."],
        message_type="CONTROL_MESSAGE",
    )
    assert json.loads(detector.handler(event, FakeLambdaContext())["body"]) == {
        "findings": 0,
        "malformed": 0,
    }
    assert siem.events() == []


def test_refused_put_events_fails_the_invocation_for_a_retry(detector: ModuleType) -> None:
    """A Stubber plays EventBridge answering PutEvents with a throttled entry."""
    with Stubber(detector.events) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}],
            },
            {"Entries": ANY},
        )
        with pytest.raises(RuntimeError, match=r"EventBridge refused 1 of 1 security events"):
            detector.handler(fx.SUBSCRIBED, FakeLambdaContext())


# -- alarm events -----------------------------------------------------------------------------------


def test_top_device_alarm_names_the_device_from_contributor_insights(
    alarm_events: ModuleType, siem: Siem
) -> None:
    """A Stubber plays GetInsightRuleReport (not in moto), with the API's response shape."""
    with Stubber(alarm_events.cloudwatch) as stub:
        stub.add_response(
            "get_insight_rule_report",
            fx.INSIGHT_RULE_REPORT,
            {
                "RuleName": "Ref-TopPublishers",
                "StartTime": ANY,
                "EndTime": ANY,
                "Period": 300,
                "MaxContributorCount": 10,
                "OrderBy": "Sum",
            },
        )
        result = alarm_events.handler(fx.alarm_state_change(TOP_DEVICE_ALARM), FakeLambdaContext())
        stub.assert_no_pending_responses()
    assert json.loads(result["body"]) == {"findings": 1}
    (received,) = siem.events()
    detail = received["detail"]
    assert detail["detection"] == "publish-rate-top-device" and detail["severity"] == "medium"
    assert detail["thingName"] == "sensor-9"
    assert detail["recordSource"] == "cloudwatch-alarm"
    assert [c["thingName"] for c in detail["evidence"]["topContributors"]] == [
        "sensor-9",
        "sensor-7",
    ]


def test_fleet_anomaly_alarm_needs_no_report(alarm_events: ModuleType, siem: Siem) -> None:
    with Stubber(alarm_events.cloudwatch):  # any CloudWatch call would fail here
        result = alarm_events.handler(fx.alarm_state_change(ANOMALY_ALARM), FakeLambdaContext())
    assert json.loads(result["body"]) == {"findings": 1}
    (received,) = siem.events()
    assert received["detail"]["detection"] == "publish-rate-anomaly"
    assert received["detail"]["thingName"] is None


def test_alarm_back_to_ok_is_no_event(alarm_events: ModuleType, siem: Siem) -> None:
    result = alarm_events.handler(
        fx.alarm_state_change(ANOMALY_ALARM, state="OK"), FakeLambdaContext()
    )
    assert json.loads(result["body"]) == {"findings": 0}
    assert siem.events() == []


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            fx.alarm_state_change("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Other"),
            "resources: 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Other' is not one of the "
            "security alarms",
        ),
        ({"detail-type": "CloudWatch Alarm State Change"}, "resources: None names no alarm ARN"),
    ],
)
def test_unknown_or_malformed_alarm_events_are_answered_400(
    alarm_events: ModuleType, siem: Siem, event: dict[str, Any], error: str
) -> None:
    result = alarm_events.handler(event, FakeLambdaContext())
    assert result["statusCode"] == 400
    assert json.loads(result["body"]) == {"error": error}
    assert siem.events() == []
