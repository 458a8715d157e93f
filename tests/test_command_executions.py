"""Execution records: the broker writes them pending, responses complete them (moto DynamoDB;
iot-data is the STUBBED client of tests/support/iot_data_stub.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.core.command_executions import effective_status
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandSpec,
    ResponseMessage,
    correlation_data,
)
from iot_remote_access.lambdas.command_broker import handler as broker
from iot_remote_access.lambdas.command_responses import handler as responses
from tests.support.iot_data_stub import StubbedIotData
from tests.support.tunneling_stub import (
    ACCOUNT,
    REGION,
    LambdaContext,
    captured_powertools_log,
    json_event,
    log_records,
    url_event,
)

CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="diagnostics",
            purpose="maintenance",
            senders=(f"arn:aws:iam::{ACCOUNT}:role/iot-operators",),
            result={
                "type": "object",
                "properties": {"uptime": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
            timeout_seconds=30,
        ),
    )
)


@dataclass
class Harness:
    table: Any
    iot_data: StubbedIotData
    log: Any

    def send(self, thing: str = "temp-1") -> str:
        self.iot_data.expect_publish()
        event = json_event(
            {"thing": thing, "name": "diagnostics", "reason": "INC-3", "purpose": "maintenance"},
            path="/commands",
        )
        result = broker.handler(event, LambdaContext())
        assert result["statusCode"] == 202, result["body"]
        return str(json.loads(result["body"])["id"])

    def item(self, command_id: str) -> dict[str, Any]:
        return dict(self.table.get_item(Key={"id": command_id})["Item"])

    def answer(
        self, topic: str, response: ResponseMessage, *, now: datetime | None = None
    ) -> dict[str, Any]:
        event = {
            "topic": topic,
            "payload": base64.b64encode(response.payload()).decode(),
            "correlation": base64.b64encode(correlation_data(response.id)).decode(),
        }
        responder = responses.Responder(CATALOGUE, "cmd/{thing}/responses", self.table)
        return responder.handle(event, now=now or datetime.now(UTC))

    def audits(self, event: str) -> list[dict[str, Any]]:
        return [
            r["audit"] for r in log_records(self.log) if r.get("audit", {}).get("event") == event
        ]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        for thing in ("temp-1", "temp-2"):
            iot.create_thing(thingName=thing)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        table = dynamodb.create_table(
            TableName="executions",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        iot_data = StubbedIotData()
        monkeypatch.setattr(
            broker, "_clients", broker.Clients(iot=iot, iot_data=iot_data.client, executions=table)
        )
        monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
        with captured_powertools_log(responses.logger) as log:
            yield Harness(table, iot_data, log)


def test_a_response_from_the_thing_completes_its_pending_record(harness: Harness) -> None:
    command_id = harness.send()
    item = harness.item(command_id)
    assert (item["status"], item["thing"], item["command"]) == ("pending", "temp-1", "diagnostics")
    assert item["requester"].endswith(":assumed-role/iot-operators/alice")
    assert (item["reason"], item["purpose"]) == ("INC-3", "maintenance")
    assert len(item["argumentsDigest"]) == 64 and "arguments" not in item
    ok = ResponseMessage(command_id, "temp-1", "succeeded", {"uptime": 7})
    assert harness.answer("cmd/temp-1/responses", ok) == {
        "recorded": command_id,
        "status": "succeeded",
    }
    assert harness.item(command_id)["status"] == "succeeded"
    # A second answer (a replay, or a late duplicate) changes nothing.
    failed = ResponseMessage(command_id, "temp-1", "failed", {}, "boom")
    assert harness.answer("cmd/temp-1/responses", failed) == {"refused": "already-completed"}
    assert harness.item(command_id)["status"] == "succeeded"


def test_another_thing_answering_the_id_changes_nothing(harness: Harness) -> None:
    command_id = harness.send("temp-1")
    forged = ResponseMessage(command_id, "temp-2", "succeeded", {"uptime": 1})
    assert harness.answer("cmd/temp-2/responses", forged) == {"refused": "wrong-thing"}
    # Claiming to be temp-1 in the payload while publishing on temp-2's topic: refused too.
    claimed = ResponseMessage(command_id, "temp-1", "succeeded", {"uptime": 1})
    assert harness.answer("cmd/temp-2/responses", claimed) == {"refused": "thing"}
    assert harness.item(command_id)["status"] == "pending"
    (first, second) = harness.audits("command.response")
    assert (first["decision"], first["thing"], first["commandId"]) == (
        "refused",
        "temp-2",
        command_id,
    )
    assert second["field"] == "thing"


def test_a_late_response_is_refused_and_the_record_reads_timed_out(harness: Harness) -> None:
    command_id = harness.send()
    later = datetime.now(UTC) + timedelta(seconds=31)
    late = ResponseMessage(command_id, "temp-1", "succeeded", {"uptime": 1})
    assert harness.answer("cmd/temp-1/responses", late, now=later) == {"refused": "late"}
    item = harness.item(command_id)
    assert item["status"] == "pending"
    assert effective_status(item, now=later) == "timed-out"
    assert effective_status(item, now=datetime.now(UTC)) == "pending"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"topic": "cmd/temp-1/commands", "payload": ""}, "topic"),
        ({"topic": "cmd/temp-1/responses", "payload": "***"}, "payload"),
        (
            {"topic": "cmd/temp-1/responses", "payload": base64.b64encode(b"[1,2]").decode()},
            "response",
        ),
        ({"topic": "cmd/temp-1/responses", "payload": "A" * 30000}, "payload"),
    ],
)
def test_malformed_responses_are_refused_naming_the_field(
    harness: Harness, event: dict[str, Any], field: str
) -> None:
    responder = responses.Responder(CATALOGUE, "cmd/{thing}/responses", harness.table)
    assert responder.handle(event, now=datetime.now(UTC)) == {"refused": field}


def test_unknown_ids_and_results_failing_the_schema_change_nothing(harness: Harness) -> None:
    unknown = ResponseMessage("0" * 8 + "-0000-4000-8000-" + "0" * 12, "temp-1", "failed")
    assert harness.answer("cmd/temp-1/responses", unknown) == {"refused": "unknown-id"}
    command_id = harness.send()
    bad = ResponseMessage(command_id, "temp-1", "succeeded", {"uptime": -5})
    assert harness.answer("cmd/temp-1/responses", bad) == {"refused": "result"}
    assert harness.item(command_id)["status"] == "pending"


def test_a_command_aws_would_not_take_is_recorded_failed(harness: Harness) -> None:
    harness.iot_data.expect_error("ThrottlingException", 429)
    event = json_event(
        {"thing": "temp-1", "name": "diagnostics", "reason": "INC-3", "purpose": "maintenance"},
        path="/commands",
    )
    result = broker.handler(event, LambdaContext())
    assert result["statusCode"] == 503
    (item,) = harness.table.scan()["Items"]
    assert (item["status"], item["error"]) == ("failed", "not published")


def _send_event(user_arn: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"thing": "temp-1", "name": "diagnostics", "reason": "INC-3", "purpose": "maintenance"}
    who = {"user_arn": user_arn} if user_arn else {}
    return json_event({**body, **fields}, path="/commands", **who)


def test_a_retried_client_token_returns_the_same_command_without_resending(
    harness: Harness,
) -> None:
    harness.iot_data.expect_publish()
    first = broker.handler(_send_event(clientToken="retry-1"), LambdaContext())
    again = broker.handler(_send_event(clientToken="retry-1"), LambdaContext())
    assert (first["statusCode"], again["statusCode"]) == (202, 200)
    first_body, again_body = json.loads(first["body"]), json.loads(again["body"])
    assert again_body["id"] == first_body["id"] and again_body["status"] == "pending"
    assert len(harness.iot_data.published) == 1  # published once
    # Another requester's identical token names another command.
    other = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/bob"
    harness.iot_data.expect_publish()
    third = broker.handler(_send_event(clientToken="retry-1", user_arn=other), LambdaContext())
    assert third["statusCode"] == 202 and json.loads(third["body"])["id"] != first_body["id"]


def test_a_client_token_reused_for_another_command_is_refused(harness: Harness) -> None:
    harness.iot_data.expect_publish()
    assert broker.handler(_send_event(clientToken="t-1"), LambdaContext())["statusCode"] == 202
    reused = broker.handler(_send_event(clientToken="t-1", thing="temp-2"), LambdaContext())
    body = json.loads(reused["body"])
    assert (reused["statusCode"], body["field"]) == (409, "clientToken")
    assert len(harness.iot_data.published) == 1
    (item,) = harness.table.scan()["Items"]
    assert (item["thing"], item["status"]) == ("temp-1", "pending")  # the first is untouched
    bad = broker.handler(_send_event(clientToken="has space"), LambdaContext())
    assert (bad["statusCode"], json.loads(bad["body"])["field"]) == (400, "clientToken")


def _get(command_id: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    event = url_event(None, method="GET", path=f"/commands/{command_id}", **kwargs)
    result = broker.handler(event, LambdaContext())
    return result["statusCode"], json.loads(result["body"])


def test_get_shows_the_record_to_callers_allowed_to_send_its_command(harness: Harness) -> None:
    command_id = harness.send()
    status, body = _get(command_id)
    assert (status, body["status"], body["thing"], body["command"]) == (
        200,
        "pending",
        "temp-1",
        "diagnostics",
    )
    harness.answer("cmd/temp-1/responses", ResponseMessage(command_id, "temp-1", "failed", {}, "x"))
    status, body = _get(command_id)
    assert (status, body["status"], body["error"]) == (200, "failed", "x")
    # A caller who may not send the command learns nothing, not even that it exists.
    stranger = f"arn:aws:sts::{ACCOUNT}:assumed-role/analytics/eve"
    assert _get(command_id, user_arn=stranger)[0] == 404
    assert _get("0" * 8 + "-0000-4000-8000-" + "0" * 12)[0] == 404
    status, body = _get("..%2F..%2Fetc")
    assert (status, body["field"]) == (400, "id")
