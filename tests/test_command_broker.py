"""The command broker Lambda: moto for things, a STUBBED iot-data (see tests/support/iot_data_stub.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandSpec,
    arguments_digest,
    parse_command,
)
from iot_remote_access.lambdas.command_broker import handler as broker
from tests.support.iot_data_stub import StubbedIotData
from tests.support.tunneling_stub import (
    ACCOUNT,
    OPERATOR_ARN,
    REGION,
    LambdaContext,
    captured_powertools_log,
    json_event,
    log_records,
    url_event,
)

THING = "temp-1"
OPERATORS = f"arn:aws:iam::{ACCOUNT}:role/iot-operators"
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="diagnostics",
            purpose="maintenance",
            senders=(OPERATORS,),
            arguments={
                "type": "object",
                "properties": {
                    "level": {"type": "string", "enum": ["basic", "full"], "maxLength": 5}
                },
                "required": ["level"],
                "additionalProperties": False,
            },
            timeout_seconds=20,
            things="temp-[0-9]+",
        ),
        CommandSpec(
            name="dump-occupancy",
            purpose="occupancy-analytics",
            senders=(f"arn:aws:iam::{ACCOUNT}:role/analytics",),
        ),
    )
)


@dataclass
class Harness:
    iot_data: StubbedIotData
    log: Any

    def call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        result = broker.handler(event, LambdaContext())
        assert result["headers"]["Content-Type"] == "application/json"
        return result["statusCode"], json.loads(result["body"])

    def audits(self) -> list[dict[str, Any]]:
        return [r["audit"] for r in log_records(self.log) if "audit" in r]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing(thingName=THING)
        iot_data = StubbedIotData()
        monkeypatch.setattr(broker, "_clients", broker.Clients(iot=iot, iot_data=iot_data.client))
        monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
        for variable in (
            broker.COMMANDS_TOPIC_VARIABLE,
            broker.RESPONSES_TOPIC_VARIABLE,
            broker.THING_NAME_PATTERN_VARIABLE,
        ):
            monkeypatch.delenv(variable, raising=False)
        with captured_powertools_log(broker.logger) as log:
            yield Harness(iot_data, log)


def cmd_event(payload: Any, **kwargs: Any) -> dict[str, Any]:
    return json_event(payload, **{"path": "/commands", **kwargs})


def raw_event(body: str | bytes, **kwargs: Any) -> dict[str, Any]:
    return url_event(body, **{"path": "/commands", **kwargs})


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "thing": THING,
        "name": "diagnostics",
        "arguments": {"level": "full"},
        "reason": "INC-42 sensor drifts",
        "purpose": "maintenance",
        **fields,
    }


def test_publishes_to_the_exact_topic_with_correlation_data_and_audits(harness: Harness) -> None:
    harness.iot_data.expect_publish()
    status, body = harness.call(cmd_event(_body()))
    assert status == 202, body
    (sent,) = harness.iot_data.published
    assert sent["topic"] == "cmd/temp-1/commands"
    assert sent["responseTopic"] == "cmd/temp-1/responses"
    assert base64.b64decode(sent["correlationData"]) == body["id"].encode()
    assert (sent["qos"], sent["messageExpiry"]) == (1, 20)
    # What the device receives passes the device's own checks.
    command = parse_command(sent["payload"], CATALOGUE, thing=THING, now=datetime.now(UTC))
    assert (command.id, command.arguments) == (body["id"], {"level": "full"})
    assert body["responseTopic"] == "cmd/temp-1/responses"
    (audit,) = harness.audits()
    assert audit["decision"] == "allowed" and audit["requester"] == OPERATOR_ARN
    assert audit["commandId"] == body["id"] and audit["purpose"] == "maintenance"
    assert audit["argumentsDigest"] == arguments_digest({"level": "full"})
    assert "full" not in json.dumps(audit)  # argument values never reach the log


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        (cmd_event(_body(name="reboot")), 404, "name"),
        (cmd_event(_body(arguments={"level": "all"})), 400, "arguments.level"),
        (cmd_event(_body(arguments={"level": "full", "cmd": "rm -rf /"})), 400, "arguments.cmd"),
        (cmd_event(_body(purpose="occupancy-analytics")), 403, "purpose"),
        (
            cmd_event(_body(name="dump-occupancy", purpose="occupancy-analytics", arguments={})),
            403,
            "name",
        ),
        (cmd_event(_body(thing="temp-9")), 404, "thing"),  # matches the rule, not registered
        (cmd_event(_body(thing="door-1")), 403, "thing"),
        (cmd_event(_body(thing="cmd/#")), 400, "thing"),
        (cmd_event(_body(reason="")), 400, "reason"),
        (cmd_event(_body(), user_arn=None), 403, "requester"),
        (
            cmd_event(_body(), user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/analytics/bob"),
            403,
            "name",
        ),
        (raw_event('{"thing": "temp-1", "thing": "temp-2"}'), 400, "body"),
        (raw_event("[" * 3000 + "]" * 3000), 400, "body"),  # too deep, yet small
        (raw_event("{" + " " * 9000 + "}"), 413, "body"),
        (raw_event("not json"), 400, "body"),
        (raw_event(b"\xff\xfe", base64_body=True), 400, "body"),
        (cmd_event(_body(), path="/tunnels"), 404, "route"),
        (cmd_event(_body(), method="PUT", path="/commands"), 405, "route"),
    ],
)
def test_bad_requests_get_4xx_json_naming_the_field_and_nothing_is_published(
    harness: Harness, event: dict[str, Any], status: int, field: str
) -> None:
    got, body = harness.call(event)
    assert (got, body["field"]) == (status, field), body
    assert body["message"].startswith(f"{field}: ")
    assert len(body["message"]) < 400
    assert harness.iot_data.published == []
    (audit,) = harness.audits()
    assert (audit["decision"], audit["status"], audit["field"]) == ("refused", status, field)


def test_an_aws_failure_is_a_5xx_and_says_the_command_was_not_sent(harness: Harness) -> None:
    harness.iot_data.expect_error("ThrottlingException", 429)
    status, body = harness.call(cmd_event(_body()))
    assert (status, body["field"]) == (503, "aws")
    assert "was not sent" in body["message"]


def test_custom_topics_and_thing_pattern_come_from_the_environment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(broker.COMMANDS_TOPIC_VARIABLE, "fleet/{thing}/down")
    monkeypatch.setenv(broker.RESPONSES_TOPIC_VARIABLE, "fleet/{thing}/answers")
    monkeypatch.setenv(broker.THING_NAME_PATTERN_VARIABLE, "temp-[0-9]{3}")
    status, body = harness.call(cmd_event(_body()))
    assert (status, body["field"]) == (400, "thing")  # temp-1 breaks the fleet's pattern
    boto3.client("iot", region_name=REGION).create_thing(thingName="temp-123")
    harness.iot_data.expect_publish()
    status, body = harness.call(cmd_event(_body(thing="temp-123")))
    assert status == 202, body
    assert harness.iot_data.published[0]["topic"] == "fleet/temp-123/down"
    assert harness.iot_data.published[0]["responseTopic"] == "fleet/temp-123/answers"
