"""Broker Lambda, device module and responses Lambda joined through real mosquitto (mutual
TLS, the ACL from the topic model). STAND-INS: AWS IoT's data plane
(tests/support/mqtt_iot_data.py) and its rule (Fleet.record builds the rule's event);
things and execution records are in moto.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from moto import mock_aws

from iot_remote_access.core.command_executions import effective_status
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    ResponseMessage,
    parse_response,
)
from iot_remote_access.core.mosquitto_acl import render_mosquitto_acl
from iot_remote_access.core.topics import DeviceAccess, TopicModel, thing_from_topic
from iot_remote_access.device.commands import CommandDevice
from iot_remote_access.lambdas.command_broker import handler as broker
from iot_remote_access.lambdas.command_responses import handler as responses
from tests.support.mqtt_iot_data import IDENTITY, MqttIotData, Received, mqtt5_client
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker
from tests.support.tunneling_stub import (
    ACCOUNT,
    REGION,
    LambdaContext,
    captured_powertools_log,
    json_event,
    log_records,
)

TOPICS = TopicModel()
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="diagnostics",
            purpose="maintenance",
            senders=(f"arn:aws:iam::{ACCOUNT}:role/iot-operators",),
            arguments={
                "type": "object",
                "properties": {
                    "level": {"type": "string", "enum": ["basic", "full"], "maxLength": 5}
                },
                "required": ["level"],
                "additionalProperties": False,
            },
            result={
                "type": "object",
                "properties": {"level": {"type": "string", "maxLength": 5}},
                "additionalProperties": False,
            },
        ),
        CommandSpec(
            name="slow",
            purpose="maintenance",
            senders=(f"arn:aws:iam::{ACCOUNT}:role/iot-operators",),
            timeout_seconds=2,
        ),
    )
)


@dataclass
class Fleet:
    iot_data: MqttIotData
    broker: MosquittoBroker
    ca: TestCa
    log: Any
    table: Any

    def record(self, received: Received) -> dict[str, Any]:
        """What AWS IoT's rule would pass to the responses function (see responses_rule_sql)."""
        event = {"topic": received.topic, "payload": base64.b64encode(received.payload).decode()}
        if received.correlation is not None:
            event["correlation"] = base64.b64encode(received.correlation).decode()
        responder = responses.Responder(CATALOGUE, TOPICS.responses, self.table)
        return responder.handle(event, now=datetime.now(UTC))

    def status(self, command_id: str, *, now: datetime | None = None) -> str:
        item = self.table.get_item(Key={"id": command_id})["Item"]
        return effective_status(item, now=now or datetime.now(UTC))

    def send(self, thing: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        event = json_event(
            {
                "thing": thing,
                "name": name,
                "arguments": arguments,
                "reason": "INC-7 check sensor",
                "purpose": "maintenance",
            },
            path="/commands",
        )
        result = broker.handler(event, LambdaContext())
        assert result["statusCode"] == 202, result["body"]
        return dict(json.loads(result["body"]))

    def response(self, timeout: float = 10) -> Received:
        return self.iot_data.received.get(timeout=timeout)


def _acl() -> str:
    # Devices: the ACL rendered from the topic model with the responses switch on. The
    # stand-in for AWS IoT's data plane writes commands and reads responses, nothing else.
    devices = render_mosquitto_acl(DeviceAccess(command_responses=True), bridge_identity=None)
    return f"{devices}\nuser {IDENTITY}\ntopic write cmd/+/commands\ntopic read cmd/+/responses\n"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    ca = TestCa(tmp_path / "pki")
    server = MosquittoBroker(tmp_path / "mosquitto", ca, _acl())
    server.start()
    iot_data = MqttIotData(server.port, ca.client(IDENTITY), "cmd/+/responses")
    try:
        with mock_aws():
            iot = boto3.client("iot", region_name=REGION)
            for thing in ("temp-1", "temp-2"):
                iot.create_thing(thingName=thing)
            table = boto3.resource("dynamodb", region_name=REGION).create_table(
                TableName="executions",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            monkeypatch.setattr(
                broker,
                "_clients",
                broker.Clients(iot=iot, iot_data=iot_data, executions=table),
            )
            monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
            with captured_powertools_log(broker.logger) as log:
                yield Fleet(iot_data, server, ca, log, table)
    finally:
        iot_data.close()
        server.stop()


def _device(
    fleet: Fleet, thing: str, handlers: dict[str, Any]
) -> tuple[mqtt.Client, CommandDevice]:
    client = mqtt5_client(thing, fleet.ca.client(thing))
    device = CommandDevice(thing=thing, catalogue=CATALOGUE, handlers=handlers, topics=TOPICS)
    subscribed = threading.Event()
    device.attach(client)  # subscribes to cmd/{thing}/commands on every connect
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", fleet.broker.port)
    client.loop_start()
    assert subscribed.wait(10), fleet.broker.log()[-2000:]
    return client, device


def _drain(fleet: Fleet, *, seconds: float) -> list[Received]:
    arrived, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            arrived.append(fleet.iot_data.received.get(timeout=left))
        except queue.Empty:
            break
    return arrived


def _checked(received: Received) -> ResponseMessage:
    thing = thing_from_topic(TOPICS.responses, received.topic)
    assert thing is not None
    spec = CATALOGUE.get("diagnostics")
    return parse_response(
        received.payload, thing=thing, spec=spec, correlation=received.correlation
    )


def test_a_command_reaches_the_device_and_its_answer_comes_back(fleet: Fleet) -> None:
    client, device = _device(
        fleet, "temp-1", {"diagnostics": lambda args: {"level": args["level"]}}
    )
    try:
        sent = fleet.send("temp-1", "diagnostics", {"level": "full"})
        received = fleet.response()
        assert received.topic == "cmd/temp-1/responses"
        assert received.correlation == sent["id"].encode()
        answer = _checked(received)
        assert (answer.id, answer.status, answer.result) == (
            sent["id"],
            "succeeded",
            {"level": "full"},
        )
        (audit,) = [r["audit"] for r in log_records(fleet.log) if "audit" in r]
        assert (audit["commandId"], audit["decision"]) == (sent["id"], "allowed")
    finally:
        client.disconnect()
        client.loop_stop()
        device.close()


def test_a_handler_that_overruns_is_answered_failed_at_the_deadline(fleet: Fleet) -> None:
    release = threading.Event()
    client, device = _device(fleet, "temp-1", {"slow": lambda args: release.wait(10) and {}})
    try:
        started = time.monotonic()
        sent = fleet.send("temp-1", "slow", {})
        received = fleet.response()
        answer = parse_response(received.payload, thing="temp-1", correlation=received.correlation)
        assert (answer.id, answer.status) == (sent["id"], "failed")
        assert (answer.error or "").startswith("timeout:") and time.monotonic() - started < 5
    finally:
        release.set()
        client.disconnect()
        client.loop_stop()
        device.close()


def test_another_device_cannot_answer_for_a_thing(fleet: Fleet) -> None:
    # temp-1 has no handler (it answers 'rejected'); temp-2 tries to answer for it.
    quiet, device = _device(fleet, "temp-1", {})
    intruder = mqtt5_client("temp-2", fleet.ca.client("temp-2"))
    intruder.connect("127.0.0.1", fleet.broker.port)
    intruder.loop_start()
    try:
        sent = fleet.send("temp-1", "diagnostics", {"level": "basic"})
        forged = ResponseMessage(sent["id"], "temp-1", "succeeded", {"level": "full"}).payload()
        # On temp-1's topic: the broker's ACL drops it (only temp-1 may publish there).
        intruder.publish("cmd/temp-1/responses", forged, qos=1).wait_for_publish(5)
        # On its own topic: it arrives, and the check refuses it (the topic names temp-2).
        intruder.publish("cmd/temp-2/responses", forged, qos=1).wait_for_publish(5)
        arrived = _drain(fleet, seconds=3)
        by_topic = {
            topic: [r for r in arrived if r.topic == topic] for topic in {r.topic for r in arrived}
        }
        assert sorted(by_topic) == ["cmd/temp-1/responses", "cmd/temp-2/responses"]
        (forged_arrival,) = by_topic["cmd/temp-2/responses"]
        with pytest.raises(CommandRuleError) as caught:
            _checked(forged_arrival)
        assert caught.value.field == "thing"
        # temp-1's only answer is its own "rejected" (it has no handler): the forged
        # "succeeded" on its topic never arrived.
        (own,) = by_topic["cmd/temp-1/responses"]
        assert (_checked(own).id, _checked(own).status) == (sent["id"], "rejected")
        assert fleet.record(forged_arrival) == {"refused": "thing"}
        assert fleet.status(sent["id"]) == "pending"  # the forged answer changed nothing
        assert fleet.record(own) == {"recorded": sent["id"], "status": "rejected"}
    finally:
        intruder.disconnect()
        intruder.loop_stop()
        quiet.disconnect()
        quiet.loop_stop()
        device.close()


def test_a_device_that_never_answers_ends_timed_out(fleet: Fleet) -> None:
    sent = fleet.send("temp-2", "slow", {})  # temp-2 is registered but not connected
    with pytest.raises(queue.Empty):
        fleet.response(timeout=3)
    assert fleet.status(sent["id"]) == "timed-out"  # slow's timeout is 2 s
    assert fleet.status(sent["id"], now=datetime.now(UTC) - timedelta(seconds=3)) == "pending"
