"""Listing execution records, the timed-out sweep and the audit records in the access ledger
(moto DynamoDB with the construct's indexes; iot-data is the STUBBED client of
tests/support/iot_data_stub.py)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandSpec,
    ResponseMessage,
    correlation_data,
)
from iot_remote_access.core.ledger import parse_record
from iot_remote_access.lambdas import command_audit
from iot_remote_access.lambdas.command_broker import handler as broker
from iot_remote_access.lambdas.command_responses import handler as responses
from iot_remote_access.lambdas.command_sweep import handler as sweep
from iot_remote_access.lambdas.ledger.store import LedgerStore
from tests.support.command_tables import create_executions_table
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

OPERATORS = f"arn:aws:iam::{ACCOUNT}:role/iot-operators"
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/analytics/eve"
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(name="diagnostics", purpose="maintenance", senders=(OPERATORS,)),
        CommandSpec(name="quick", purpose="maintenance", senders=(OPERATORS,), timeout_seconds=1),
    )
)
LEDGER_TABLE = "ledger-table"


@dataclass
class Harness:
    table: Any
    iot_data: StubbedIotData
    dynamodb: Any
    log: Any

    def send(self, thing: str = "temp-1", name: str = "diagnostics") -> str:
        self.iot_data.expect_publish()
        event = json_event(
            {"thing": thing, "name": name, "reason": "INC-9", "purpose": "maintenance"},
            path="/commands",
        )
        result = broker.handler(event, LambdaContext())
        assert result["statusCode"] == 202, result["body"]
        return str(json.loads(result["body"])["id"])

    def answer(self, thing: str, command_id: str, status: str = "succeeded") -> dict[str, Any]:
        response = ResponseMessage(command_id, thing, status, {})
        event = {
            "topic": f"cmd/{thing}/responses",
            "payload": base64.b64encode(response.payload()).decode(),
            "correlation": base64.b64encode(correlation_data(command_id)).decode(),
        }
        responder = responses.Responder(CATALOGUE, "cmd/{thing}/responses", self.table)
        return responder.handle(event, now=datetime.now(UTC))

    def status(self, command_id: str) -> str:
        return str(self.table.get_item(Key={"id": command_id})["Item"]["status"])

    def ledger(self) -> list[dict[str, Any]]:
        store = LedgerStore(self.dynamodb, LEDGER_TABLE)
        return [dict(parse_record(line).data) for line in store.lines()]


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        for thing in ("temp-1", "temp-2"):
            iot.create_thing(thingName=thing)
        table = create_executions_table(boto3.resource("dynamodb", region_name=REGION))
        iot_data = StubbedIotData()
        monkeypatch.setattr(
            broker, "_clients", broker.Clients(iot=iot, iot_data=iot_data.client, executions=table)
        )
        monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
        monkeypatch.delenv(command_audit.LEDGER_TABLE_VARIABLE, raising=False)
        monkeypatch.setattr(command_audit, "_writer", None)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        with (
            captured_powertools_log(broker.logger) as log,
            captured_powertools_log(sweep.logger),
        ):
            yield Harness(table, iot_data, dynamodb, log)


def _list(
    user_arn: str = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice", **query: str
) -> tuple[int, dict[str, Any]]:
    event = url_event(None, method="GET", path="/commands", user_arn=user_arn)
    event["rawQueryString"] = urllib.parse.urlencode(query)
    if query:
        event["queryStringParameters"] = query
    result = broker.handler(event, LambdaContext())
    return result["statusCode"], json.loads(result["body"])


def test_list_newest_first_filtered_by_thing_and_status_and_only_what_you_may_read(
    harness: Harness,
) -> None:
    first = harness.send("temp-1")
    second = harness.send("temp-2")
    harness.answer("temp-2", second, "failed")
    status, body = _list()
    assert status == 200 and body["truncated"] is False
    assert {item["id"] for item in body["items"]} == {first, second}
    assert all("argumentsDigest" not in item and "ttl" not in item for item in body["items"])
    assert [i["id"] for i in _list(thing="temp-1")[1]["items"]] == [first]
    assert [i["id"] for i in _list(status="failed")[1]["items"]] == [second]
    assert [i["id"] for i in _list(status="pending", thing="temp-2")[1]["items"]] == []
    assert len(_list(limit="1")[1]["items"]) == 1
    # Someone who may send none of these commands sees none of them.
    assert _list(user_arn=STRANGER) == (200, {"items": [], "truncated": False, "scanned": 0})


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"thing": "temp/1"}, "thing"),
        ({"thing": "x" * 200}, "thing"),
        ({"order": "asc"}, "order"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    harness: Harness, query: dict[str, str], field: str
) -> None:
    status, body = _list(**query)
    assert (status, body["field"]) == (400, field), body
    assert len(body["message"]) < 300


def test_the_sweep_times_out_expired_pending_records_only_and_audits_each(
    harness: Harness,
) -> None:
    quiet = harness.send("temp-1", "quick")  # 1-second timeout, nobody answers
    answered = harness.send("temp-2", "quick")
    harness.answer("temp-2", answered)
    running = harness.send("temp-1")  # 30 s: not yet expired
    later = datetime.now(UTC) + timedelta(seconds=5)
    with captured_powertools_log(sweep.logger) as log:
        counts = sweep.Sweeper(harness.table).sweep(now=later)
    assert counts == {"timedOut": 1, "raced": 0, "unrecorded": 0}
    assert [harness.status(i) for i in (quiet, answered, running)] == [
        "timed-out",
        "succeeded",
        "pending",
    ]
    (audit,) = [r["audit"] for r in log_records(log) if "audit" in r]
    assert (audit["event"], audit["commandId"], audit["thing"]) == (
        "command.timeout",
        quiet,
        "temp-1",
    )
    # A second run finds nothing more; a response after the timeout is refused as late.
    assert sweep.Sweeper(harness.table).sweep(now=later)["timedOut"] == 0
    assert harness.answer("temp-1", quiet) == {"refused": "late"}
    assert harness.status(quiet) == "timed-out"


def test_the_sweep_never_overwrites_a_record_completed_after_its_query(harness: Harness) -> None:
    command_id = harness.send("temp-1", "quick")
    harness.table.update_item(  # completed between the index read and the write
        Key={"id": command_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "succeeded"},
    )
    stale = {"id": command_id, "status": "pending"}
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert sweep.Sweeper(harness.table)._time_out(stale, later) is False
    assert harness.status(command_id) == "succeeded"


def _with_ledger(monkeypatch: pytest.MonkeyPatch, harness: Harness) -> None:
    harness.dynamodb.create_table(
        TableName=LEDGER_TABLE,
        KeySchema=[
            {"AttributeName": "ledger", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "ledger", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv(command_audit.LEDGER_TABLE_VARIABLE, LEDGER_TABLE)


def test_send_refusal_response_and_timeout_are_appended_to_the_ledger(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_ledger(monkeypatch, harness)
    answered = harness.send("temp-1")
    harness.answer("temp-1", answered)
    refused = broker.handler(
        json_event(
            {"thing": "temp-1", "name": "reboot", "reason": "x", "purpose": "maintenance"},
            path="/commands",
        ),
        LambdaContext(),
    )
    assert refused["statusCode"] == 404
    quiet = harness.send("temp-2", "quick")
    sweep.Sweeper(harness.table).sweep(now=datetime.now(UTC) + timedelta(seconds=5))
    chain = [(r["event"], r["decision"], r.get("commandId")) for r in harness.ledger()]
    assert chain == [
        ("command.send", "allowed", answered),
        ("command.response", "recorded", answered),
        ("command.send", "refused", None),
        ("command.send", "allowed", quiet),
        ("command.timeout", "timed-out", quiet),
    ]


def test_a_send_the_ledger_cannot_record_is_not_published(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(command_audit.LEDGER_TABLE_VARIABLE, "no-such-table")  # unavailable
    event = json_event(
        {"thing": "temp-1", "name": "diagnostics", "reason": "INC-9", "purpose": "maintenance"},
        path="/commands",
    )
    result = broker.handler(event, LambdaContext())
    assert (result["statusCode"], json.loads(result["body"])["field"]) == (503, "ledger")
    assert harness.iot_data.published == []
    (item,) = harness.table.scan()["Items"]
    assert (item["status"], item["error"]) == ("failed", "not published")


def test_with_the_ledger_down_the_sweep_times_out_everything_then_fails_the_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = harness.send("temp-1", "quick"), harness.send("temp-2", "quick")
    monkeypatch.setenv(command_audit.LEDGER_TABLE_VARIABLE, "no-such-table")  # unavailable
    with captured_powertools_log(sweep.logger) as log, pytest.raises(sweep.SweepIncomplete):
        sweep.Sweeper(harness.table).sweep(now=datetime.now(UTC) + timedelta(seconds=5))
    assert [harness.status(i) for i in (first, second)] == ["timed-out", "timed-out"]
    records = log_records(log)
    assert len([r for r in records if "audit" in r]) == 2  # both logged
    # The ledger was tried once, then taken as down for the run.
    assert len([r for r in records if r.get("message") == "ledger append failed"]) == 1
