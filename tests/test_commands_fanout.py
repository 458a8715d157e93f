"""Fleet fan-out: the rules, the broker's routes, the dispatcher's waves, rate and abort
threshold, and the CLI's progress (moto IoT, DynamoDB and SQS; iot-data is the STUBBED
client of tests/support/iot_data_stub.py; the broker URL is the loopback STAND-IN of
tests/support/command_url_standin.py)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

from iot_remote_access.cli import command as command_cli
from iot_remote_access.core.command_fanout import (
    MIN_COMPLETED_FOR_ABORT,
    parse_fanout_request,
    should_abort,
    target_id,
    wave_plan,
)
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    ResponseMessage,
    correlation_data,
)
from iot_remote_access.lambdas.command_broker import handler as broker
from iot_remote_access.lambdas.command_fanout import handler as dispatcher
from iot_remote_access.lambdas.command_responses import handler as responses
from tests.support.cli_runner import run_cli
from tests.support.command_tables import create_executions_table
from tests.support.command_url_standin import broker_url
from tests.support.iot_data_stub import StubbedIotData
from tests.support.tunneling_stub import ACCOUNT, REGION, LambdaContext, json_event, url_event

OPERATORS = f"arn:aws:iam::{ACCOUNT}:role/iot-operators"
OPERATOR_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice"
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="reload",
            purpose="maintenance",
            senders=(OPERATORS,),
            things="temp-.*",
            arguments={
                "type": "object",
                "properties": {"ratio": {"type": "number", "minimum": 0, "maximum": 1}},
                "additionalProperties": False,
            },
        ),
    )
)
COMMAND = {
    "name": "reload",
    "reason": "CHG-7 config",
    "purpose": "maintenance",
    "arguments": {"ratio": 0.25},  # a float: DynamoDB takes none, the record keeps JSON
}


# -- rules --------------------------------------------------------------------------------


def test_waves_keep_the_rate_and_abort_needs_a_minimum_of_completions() -> None:
    assert wave_plan(1) == (10, 10)  # 10 things every 10 s
    assert wave_plan(10) == (100, 10)
    assert wave_plan(100) == (250, 3)  # one ListThingsInThingGroup page, every 2.5 s -> 3
    assert not should_abort(succeeded=0, failed=MIN_COMPLETED_FOR_ABORT - 1, abort_percent=0)
    assert should_abort(succeeded=8, failed=2, abort_percent=10)
    assert not should_abort(succeeded=9, failed=1, abort_percent=10)  # exactly 10 %: goes on
    assert target_id("f", "temp-1") == target_id("f", "temp-1") != target_id("f", "temp-2")


@pytest.mark.parametrize(
    ("extra", "field", "status"),
    [
        ({}, "things", 400),
        ({"things": ["temp-1"], "thingGroup": "g"}, "things", 400),
        ({"things": []}, "things", 400),
        ({"things": [f"temp-{i}" for i in range(251)]}, "things", 400),
        ({"things": ["temp-1", "temp-1"]}, "things", 400),
        ({"things": ["temp/1"]}, "thing", 400),
        ({"things": ["door-1"]}, "thing", 403),
        ({"thingGroup": "a b"}, "thingGroup", 400),
        ({"thingGroup": "g", "ratePerSecond": 0}, "ratePerSecond", 400),
        ({"thingGroup": "g", "ratePerSecond": 101}, "ratePerSecond", 400),
        ({"thingGroup": "g", "abortPercent": 101}, "abortPercent", 400),
        ({"thingGroup": "g", "abortPercent": True}, "abortPercent", 400),
        ({"thingGroup": "g", "window": 5}, "window", 400),
    ],
)
def test_bad_fanout_requests_name_the_field(extra: dict[str, Any], field: str, status: int) -> None:
    with pytest.raises(CommandRuleError) as caught:
        parse_fanout_request({**COMMAND, **extra}, CATALOGUE, requester=OPERATOR_ARN)
    assert (caught.value.field, caught.value.status) == (field, status)


# -- broker and dispatcher ----------------------------------------------------------------------


@dataclass
class Fleet:
    iot: Any
    table: Any
    sqs: Any
    queue_url: str
    iot_data: StubbedIotData

    def start(self, **targets: Any) -> dict[str, Any]:
        event = json_event({**COMMAND, **targets}, path="/fanouts")
        result = broker.handler(event, LambdaContext())
        assert result["statusCode"] == 202, result["body"]
        return dict(json.loads(result["body"]))

    def record(self, fanout_id: str) -> dict[str, Any]:
        return dict(self.table.get_item(Key={"id": fanout_id})["Item"])

    def wave(self, fanout_id: str, publishes: int) -> str:
        for _ in range(publishes):
            self.iot_data.expect_publish()
        run = dispatcher.Dispatcher(
            CATALOGUE, broker.TopicModel(), "", self.clients(), self.queue_url
        )
        cursor = self.record(fanout_id).get("cursor")
        return run.run(fanout_id, cursor, now=datetime.now(UTC))

    def clients(self) -> broker.Clients:
        return broker.Clients(
            iot=self.iot, iot_data=self.iot_data.client, executions=self.table, sqs=self.sqs
        )

    def answer(self, thing: str, command_id: str, status: str) -> dict[str, Any]:
        payload = ResponseMessage(command_id, thing, status, {}).payload()
        event = {
            "topic": f"cmd/{thing}/responses",
            "payload": base64.b64encode(payload).decode(),
            "correlation": base64.b64encode(correlation_data(command_id)).decode(),
        }
        responder = responses.Responder(CATALOGUE, "cmd/{thing}/responses", self.table)
        return responder.handle(event, now=datetime.now(UTC))

    def delayed(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        return int(attributes["ApproximateNumberOfMessagesDelayed"]) + int(
            attributes["ApproximateNumberOfMessages"]
        )


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        table = create_executions_table(boto3.resource("dynamodb", region_name=REGION))
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="fanout")["QueueUrl"]
        state = Fleet(iot, table, sqs, queue_url, StubbedIotData())
        monkeypatch.setattr(broker, "_clients", state.clients())
        monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
        monkeypatch.setenv(broker.QUEUE_VARIABLE, queue_url)
        yield state


def test_a_listed_fanout_goes_out_in_waves_each_target_its_own_execution(fleet: Fleet) -> None:
    things = [f"temp-{i}" for i in range(12)]
    for thing in things:
        fleet.iot.create_thing(thingName=thing)
    started = fleet.start(things=things, ratePerSecond=1)
    fanout_id = started["id"]
    assert (started["status"], started["total"], fleet.delayed()) == ("running", 12, 1)
    assert fleet.wave(fanout_id, publishes=10) == "next"  # 10 per wave at 1 thing/s
    assert len(fleet.iot_data.published) == 10
    # A redelivered message for the same wave sends nothing again.
    again = dispatcher.Dispatcher(CATALOGUE, broker.TopicModel(), "", fleet.clients(), "")
    assert again.run(fanout_id, None, now=datetime.now(UTC)) == "duplicate"
    assert fleet.wave(fanout_id, publishes=2) == "dispatched"
    record = fleet.record(fanout_id)
    assert (record["status"], record["dispatched"], record["refused"]) == ("dispatched", 12, 0)
    assert all(b'"ratio":0.25' in p["payload"] for p in fleet.iot_data.published)
    topics = sorted(p["topic"] for p in fleet.iot_data.published)
    assert topics == sorted(f"cmd/{thing}/commands" for thing in things)
    for thing in things:
        item = fleet.table.get_item(Key={"id": target_id(fanout_id, thing)})["Item"]
        assert (item["thing"], item["fanout"], item["status"]) == (thing, fanout_id, "pending")
    for thing in things:
        fleet.answer(thing, target_id(fanout_id, thing), "succeeded")
    record = fleet.record(fanout_id)
    assert (record["succeeded"], record["failed"], record["completed"]) == (12, 0, 12)
    status = broker.handler(
        url_event(None, method="GET", path=f"/fanouts/{fanout_id}"), LambdaContext()
    )
    assert json.loads(status["body"])["succeeded"] == 12


def test_a_group_fanout_stops_when_more_than_the_threshold_fails(fleet: Fleet) -> None:
    fleet.iot.create_thing_group(thingGroupName="floor-3")
    for i in range(30):
        fleet.iot.create_thing(thingName=f"temp-{i:02d}")
        fleet.iot.add_thing_to_thing_group(thingGroupName="floor-3", thingName=f"temp-{i:02d}")
    fanout_id = fleet.start(thingGroup="floor-3", ratePerSecond=1, abortPercent=20)["id"]
    assert fleet.wave(fanout_id, publishes=10) == "next"
    first = [p["topic"].split("/")[1] for p in fleet.iot_data.published]
    for index, thing in enumerate(first):  # 3 of 10 fail: 30 % > 20 %
        fleet.answer(thing, target_id(fanout_id, thing), "failed" if index < 3 else "succeeded")
    assert fleet.wave(fanout_id, publishes=0) == "aborted"
    record = fleet.record(fanout_id)
    assert (record["status"], record["dispatched"], record["failed"]) == ("aborted", 10, 3)
    assert "more than 20 %" in record["error"]
    assert len(fleet.iot_data.published) == 10  # nothing after the abort
    assert fleet.wave(fanout_id, publishes=0) == "stopped"


def test_a_fanout_to_a_thing_the_command_is_not_for_is_refused_per_target(fleet: Fleet) -> None:
    fleet.iot.create_thing_group(thingGroupName="mixed")
    for thing in ("temp-1", "door-1"):
        fleet.iot.create_thing(thingName=thing)
        fleet.iot.add_thing_to_thing_group(thingGroupName="mixed", thingName=thing)
    fanout_id = fleet.start(thingGroup="mixed")["id"]
    assert fleet.wave(fanout_id, publishes=1) == "dispatched"
    record = fleet.record(fanout_id)
    assert (record["dispatched"], record["refused"]) == (1, 1)
    assert [p["topic"] for p in fleet.iot_data.published] == ["cmd/temp-1/commands"]


def test_an_unregistered_listed_thing_is_refused_and_not_sent(fleet: Fleet) -> None:
    fleet.iot.create_thing(thingName="temp-1")
    fanout_id = fleet.start(things=["temp-1", "temp-404"])["id"]
    assert fleet.wave(fanout_id, publishes=1) == "dispatched"
    record = fleet.record(fanout_id)
    assert (record["dispatched"], record["refused"]) == (1, 1)
    assert [p["topic"] for p in fleet.iot_data.published] == ["cmd/temp-1/commands"]
    assert fleet.table.get_item(Key={"id": target_id(fanout_id, "temp-404")}).get("Item") is None


def test_the_cli_shows_progress_until_the_fanout_finishes(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = Credentials("ASIAEXAMPLEOPERATOR", "operator-secret", "operator-session")
    things = ["temp-1", "temp-2", "temp-3"]
    for thing in things:
        fleet.iot.create_thing(thingName=thing)
    monkeypatch.setattr(command_cli, "POLL_SECONDS", 0.05)
    stop = threading.Event()

    def devices() -> None:  # STAND-IN for the dispatcher's trigger and the devices' answers
        while not stop.wait(0.05):
            pending = fleet.table.scan()["Items"]
            for item in [i for i in pending if i.get("kind") == "fanout"]:
                if item["status"] == "running":
                    fleet.wave(item["id"], publishes=len(things))
                    for thing in things:
                        fleet.answer(thing, target_id(item["id"], thing), "succeeded")

    with broker_url({operator.access_key: (operator, OPERATOR_ARN)}) as url:
        for name, value in {
            "AWS_ACCESS_KEY_ID": operator.access_key,
            "AWS_SECRET_ACCESS_KEY": operator.secret_key,
            "AWS_SESSION_TOKEN": operator.token,
            "AWS_DEFAULT_REGION": REGION,
            command_cli.ENDPOINT_VARIABLE: url.url,
        }.items():
            monkeypatch.setenv(name, value)
        worker = threading.Thread(target=devices, daemon=True)
        worker.start()
        try:
            result = run_cli(
                "command", "send", "--things", ",".join(things), "--name", "reload",
                "--reason", "CHG-7", "--purpose", "maintenance", "--rate", "5", "--wait",
                "--output", "json",
            )  # fmt: skip
        finally:
            stop.set()
            worker.join(5)
    assert result.code == 0, result
    assert "fan-out " in result.stderr and "succeeded 3" in result.stderr.splitlines()[-1]
    final = json.loads(result.stdout)
    assert (final["status"], final["succeeded"], final["total"]) == ("dispatched", 3, 3)


def test_targets_the_sweep_times_out_count_as_failures_and_can_abort(fleet: Fleet) -> None:
    from datetime import timedelta

    from iot_remote_access.lambdas.command_sweep import handler as sweep

    things = [f"temp-{i:02d}" for i in range(20)]
    for thing in things:
        fleet.iot.create_thing(thingName=thing)
    fanout_id = fleet.start(things=things, ratePerSecond=1, abortPercent=50)["id"]
    assert fleet.wave(fanout_id, publishes=10) == "next"  # nobody answers
    later = datetime.now(UTC) + timedelta(seconds=60)
    assert sweep.Sweeper(fleet.table).sweep(now=later)["timedOut"] == 10
    record = fleet.record(fanout_id)
    assert (record["failed"], record["completed"]) == (10, 10)
    assert fleet.wave(fanout_id, publishes=0) == "aborted"


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        (url_event(None, method="GET", path="/fanouts/not-an-id"), 400, "id"),
        (
            url_event(None, method="GET", path=f"/fanouts/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
            404,
            "id",
        ),
        (url_event(None, method="PUT", path="/fanouts"), 405, "route"),
        (url_event("{" + " " * 9000 + "}", path="/fanouts"), 413, "body"),
        (json_event({**COMMAND, "things": ["temp-1"], "x": 1}, path="/fanouts"), 400, "x"),
        (
            json_event({**COMMAND, "things": ["temp-1"]}, path="/fanouts", user_arn=None),
            403,
            "requester",
        ),
    ],
)
def test_hostile_fanout_requests_get_4xx_naming_the_field(
    fleet: Fleet, event: dict[str, Any], status: int, field: str
) -> None:
    result = broker.handler(event, LambdaContext())
    body = json.loads(result["body"])
    assert (result["statusCode"], body["field"]) == (status, field), body
    assert fleet.iot_data.published == [] and fleet.delayed() == 0


def test_only_callers_who_may_send_the_command_read_a_fanout(fleet: Fleet) -> None:
    fleet.iot.create_thing(thingName="temp-1")
    fanout_id = fleet.start(things=["temp-1"])["id"]
    stranger = f"arn:aws:sts::{ACCOUNT}:assumed-role/analytics/eve"
    event = url_event(None, method="GET", path=f"/fanouts/{fanout_id}", user_arn=stranger)
    assert broker.handler(event, LambdaContext())["statusCode"] == 404
    # A fan-out id is not a command id: `command get` does not show it either.
    event = url_event(None, method="GET", path=f"/commands/{fanout_id}")
    assert broker.handler(event, LambdaContext())["statusCode"] == 404


def test_with_the_ledger_down_no_target_is_sent(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iot_remote_access.lambdas import command_audit

    fleet.iot.create_thing(thingName="temp-1")
    fanout_id = fleet.start(things=["temp-1"])["id"]
    monkeypatch.setenv(command_audit.LEDGER_TABLE_VARIABLE, "no-such-table")
    monkeypatch.setattr(command_audit, "_writer", None)
    with pytest.raises(command_audit.AuditUnavailable):
        fleet.wave(fanout_id, publishes=0)
    assert fleet.iot_data.published == []
    assert fleet.record(fanout_id)["dispatched"] == 0  # the wave is delivered again later
