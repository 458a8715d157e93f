"""`iot-remote-access command` end to end: the real console script (a subprocess) signs its
requests to a loopback STAND-IN for the broker's function URL (tests/support/command_url_standin.py),
which runs the real broker handler with moto (things, execution records); the broker
publishes through a STAND-IN for AWS IoT's data plane (tests/support/mqtt_iot_data.py) to real
mosquitto over mutual TLS; the device module answers; a STAND-IN for the IoT rule hands each
answer to the real responses handler; the real sweep handler times out what nobody answered.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

from iot_remote_access.core.commands import CommandCatalogue, CommandSpec, ResponseMessage
from iot_remote_access.core.mosquitto_acl import render_mosquitto_acl
from iot_remote_access.core.topics import DeviceAccess, TopicModel
from iot_remote_access.device.commands import CommandDevice
from iot_remote_access.lambdas.command_broker import handler as broker
from iot_remote_access.lambdas.command_responses import handler as responses
from iot_remote_access.lambdas.command_sweep import handler as sweep
from tests.support.command_tables import create_executions_table
from tests.support.command_url_standin import BrokerUrl, broker_url
from tests.support.mqtt_iot_data import IDENTITY, MqttIotData, mqtt5_client
from tests.support.paths import REPO_ROOT
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker
from tests.support.tunneling_stub import ACCOUNT, REGION

CLI = str(REPO_ROOT / ".venv" / "bin" / "iot-remote-access")
TOPICS = TopicModel()
OPERATOR = Credentials("ASIAEXAMPLEOPERATOR", "operator-secret-key", "operator-session")
OPERATOR_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice"
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
class World:
    url: BrokerUrl
    table: Any
    ca: TestCa
    mosquitto: MosquittoBroker
    rule_results: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": OPERATOR.access_key,
            "AWS_SECRET_ACCESS_KEY": OPERATOR.secret_key,
            "AWS_SESSION_TOKEN": OPERATOR.token or "",
            "AWS_DEFAULT_REGION": REGION,
            "IOT_REMOTE_ACCESS_COMMAND_URL": self.url.url,
        }
        return subprocess.run(
            [CLI, "command", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    def status(self, command_id: str) -> str:
        return str(self.table.get_item(Key={"id": command_id})["Item"]["status"])


def _acl() -> str:
    devices = render_mosquitto_acl(DeviceAccess(command_responses=True), bridge_identity=None)
    return f"{devices}\nuser {IDENTITY}\ntopic write cmd/+/commands\ntopic read cmd/+/responses\n"


def _rule_standin(
    iot_data: MqttIotData, table: Any, world: list[World], stop: threading.Event
) -> None:
    """STAND-IN for the IoT rule on cmd/+/responses: the event responses_rule_sql builds."""
    responder = responses.Responder(CATALOGUE, TOPICS.responses, table)
    while not stop.is_set():
        try:
            received = iot_data.received.get(timeout=0.2)
        except queue.Empty:
            continue
        event = {"topic": received.topic, "payload": base64.b64encode(received.payload).decode()}
        if received.correlation is not None:
            event["correlation"] = base64.b64encode(received.correlation).decode()
        result = responder.handle(event, now=datetime.now(UTC))
        if world:
            world[0].rule_results.put(result)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    ca = TestCa(tmp_path / "pki")
    mosquitto = MosquittoBroker(tmp_path / "mosquitto", ca, _acl())
    mosquitto.start()
    iot_data = MqttIotData(mosquitto.port, ca.client(IDENTITY), "cmd/+/responses")
    stop, holder = threading.Event(), []
    try:
        with mock_aws():
            iot = boto3.client("iot", region_name=REGION)
            for thing in ("temp-1", "temp-2"):
                iot.create_thing(thingName=thing)
            table = create_executions_table(boto3.resource("dynamodb", region_name=REGION))
            monkeypatch.setattr(
                broker, "_clients", broker.Clients(iot=iot, iot_data=iot_data, executions=table)
            )
            monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
            rule = threading.Thread(
                target=_rule_standin, args=(iot_data, table, holder, stop), daemon=True
            )
            rule.start()
            with broker_url({OPERATOR.access_key: (OPERATOR, OPERATOR_ARN)}) as url:
                holder.append(World(url, table, ca, mosquitto))
                yield holder[0]
            stop.set()
            rule.join(5)
    finally:
        iot_data.close()
        mosquitto.stop()


def _device(
    world: World, thing: str, handlers: dict[str, Any]
) -> tuple[mqtt.Client, CommandDevice]:
    client = mqtt5_client(thing, world.ca.client(thing))
    device = CommandDevice(thing=thing, catalogue=CATALOGUE, handlers=handlers, topics=TOPICS)
    subscribed = threading.Event()
    device.attach(client)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", world.mosquitto.port)
    client.loop_start()
    assert subscribed.wait(10), world.mosquitto.log()[-2000:]
    return client, device


def _stop(client: mqtt.Client, device: CommandDevice) -> None:
    client.disconnect()
    client.loop_stop()
    device.close()


SEND = ["send", "--reason", "INC-42 sensor check", "--purpose", "maintenance"]


def test_send_wait_get_and_list_through_the_console_script(world: World) -> None:
    client, device = _device(world, "temp-1", {"diagnostics": lambda a: {"level": a["level"]}})
    try:
        sent = world.cli(
            *SEND, "--thing", "temp-1", "--name", "diagnostics", "--args", '{"level":"full"}',
            "--wait", "--output", "json",
        )  # fmt: skip
    finally:
        _stop(client, device)
    assert sent.returncode == 0, sent.stderr
    record = json.loads(sent.stdout)
    assert (record["status"], record["thing"], record["command"]) == (
        "succeeded",
        "temp-1",
        "diagnostics",
    )
    assert world.status(record["id"]) == "succeeded"
    got = world.cli("get", record["id"], "--output", "json")
    assert got.returncode == 0 and json.loads(got.stdout)["status"] == "succeeded", got.stderr
    listed = world.cli("list", "--thing", "temp-1", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]
    table = world.cli("list")  # the default output: a table on a terminal
    assert table.returncode == 0 and record["id"][:8] in table.stdout


def test_a_device_that_never_answers_ends_timed_out_by_the_sweep(world: World) -> None:
    sent = world.cli(*SEND, "--thing", "temp-2", "--name", "slow", "--output", "json")
    assert sent.returncode == 0, sent.stderr  # accepted: exit 0 without --wait
    command_id = json.loads(sent.stdout)["id"]
    assert world.status(command_id) == "pending"
    time.sleep(2.5)  # slow's timeout is 2 s; temp-2 is registered but not connected
    # The scheduled sweep runs again until the record is written (a loaded machine can
    # delay the broker's write past the first run); other tests' records may time out too.
    timed_out, deadline = 0, time.monotonic() + 20
    while world.status(command_id) == "pending" and time.monotonic() < deadline:
        timed_out += sweep.Sweeper(world.table).sweep(now=datetime.now(UTC))["timedOut"]
        time.sleep(0.5)
    assert timed_out >= 1
    assert world.status(command_id) == "timed-out"  # written, not only shown
    got = world.cli("get", command_id, "--output", "json")
    assert got.returncode == 1 and json.loads(got.stdout)["status"] == "timed-out"


def test_a_device_answering_another_things_command_id_changes_nothing(world: World) -> None:
    sent = world.cli(
        *SEND, "--thing", "temp-1", "--name", "diagnostics", "--args", '{"level":"basic"}',
        "--output", "json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    command_id = json.loads(sent.stdout)["id"]
    intruder = mqtt5_client("temp-2", world.ca.client("temp-2"))
    intruder.connect("127.0.0.1", world.mosquitto.port)
    intruder.loop_start()
    try:
        # temp-2 answers temp-1's command, on its own topic (the ACL forbids temp-1's).
        for thing in ("temp-1", "temp-2"):
            forged = ResponseMessage(command_id, thing, "succeeded", {"level": "full"}).payload()
            intruder.publish("cmd/temp-2/responses", forged, qos=1).wait_for_publish(5)
        results = [world.rule_results.get(timeout=10) for _ in range(2)]
    finally:
        intruder.disconnect()
        intruder.loop_stop()
    assert sorted(r.get("refused", "") for r in results) == ["thing", "wrong-thing"]
    assert world.status(command_id) == "pending"
    got = world.cli("get", command_id, "--output", "json")
    assert got.returncode == 0 and json.loads(got.stdout)["status"] == "pending"
