"""Remote commands on GCP, end to end on real parts.

The GCP command backend (``cli/command_gcp.py``, called directly and through a click
wrapper) -> the Pub/Sub emulator -> the bridge, started as ``gcp manifests`` renders it
(one replica, tests/support/local_pod.py) -> real mosquitto (mutual TLS, the ACL from the
topic model with command responses on) -> the device module (``device/commands.py``),
which answers -> the bridge's responses path -> Pub/Sub -> the execution record.

The topology is created by the real ``gcp deploy`` from the same settings file.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from iot_remote_access.cli import command_gcp
from iot_remote_access.core.command_backend import CommandBackend
from iot_remote_access.core.commands import ResponseMessage
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.device.commands import CommandDevice
from iot_remote_access.settings import FleetSettings
from tests.gcp.test_bridge_as_deployed import SETTINGS_FILE, Rendered, bridge_pod, cli
from tests.support.command_cli import command_group
from tests.support.local_pod import Kubelet, LocalPod
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker, PubsubEmulator

OPERATOR = "serviceAccount:operator@cmd-e2e.iam.gserviceaccount.com"
CATALOGUE = [
    {
        "name": "diagnostics",
        "purpose": "maintenance",
        "senders": [OPERATOR],
        "timeoutSeconds": 20,
        "arguments": {
            "type": "object",
            "properties": {"level": {"type": "string", "enum": ["basic", "full"], "maxLength": 5}},
            "required": ["level"],
            "additionalProperties": False,
        },
        "result": {
            "type": "object",
            "properties": {"level": {"type": "string", "maxLength": 5}},
            "additionalProperties": False,
        },
    },
    {"name": "slow", "purpose": "maintenance", "senders": [OPERATOR], "timeoutSeconds": 3},
]


@dataclass
class Deployed:
    settings_file: Path
    settings: FleetSettings
    rendered: Rendered
    records: Path


_projects = itertools.count()


@pytest.fixture
def deployed(tmp_path: Path, emulator: PubsubEmulator) -> Deployed:
    """The example settings with commands on, rendered and deployed by the real CLI, in a
    project of its own per test (the emulator may hand a message to a stopped bridge's
    stream until its ack deadline: tests must not share subscriptions)."""
    directory = tmp_path / "commands-gcp"
    directory.mkdir()
    document = yaml.safe_load(SETTINGS_FILE.read_text())
    section = document["iot-remote-access"]
    section["commands"] = {"enabled": True, "catalogue": CATALOGUE}
    section["gcp"]["projectId"] = f"cmd-e2e-{os.getpid()}-{next(_projects)}"
    section["gcp"]["pubsub"]["commandServiceMembers"] = [OPERATOR]
    settings_file = directory / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(document))
    out = directory / "rendered"
    result = cli("gcp", "manifests", "--settings", str(settings_file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    objects = [
        doc
        for path in sorted((out / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    rendered = Rendered(objects, yaml.safe_load((out / "hivemq-values.yaml").read_text()))
    result = cli(
        "gcp",
        "deploy",
        "--settings",
        str(settings_file),
        env={"PUBSUB_EMULATOR_HOST": emulator.host},
    )
    assert result.returncode == 0, result.stderr
    return Deployed(
        settings_file, FleetSettings.from_file(settings_file), rendered, directory / "records.db"
    )


@pytest.fixture
def broker(tmp_path: Path, ca: TestCa, deployed: Deployed) -> Iterator[MosquittoBroker]:
    gcp, hivemq = deployed.settings.gcp, deployed.settings.hivemq
    assert gcp is not None and hivemq is not None
    acl = MosquittoAcl(
        DeviceAccess(
            topics=deployed.settings.topic_model(),
            rotation=hivemq.rotation_topics,
            command_responses=True,
        ),
        bridge_identity=gcp.bridge.identity,
        share_group=gcp.bridge.share_group,
    )
    server = MosquittoBroker(tmp_path / "broker", ca, acl.render())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bridge(
    deployed: Deployed,
    emulator: PubsubEmulator,
    ca: TestCa,
    broker: MosquittoBroker,
    tmp_path: Path,
) -> Iterator[LocalPod]:
    """Replica 0 of the rendered bridge, probed as the kubelet would, until ready."""
    assert deployed.settings.gcp is not None
    pod = bridge_pod(deployed.rendered, deployed.settings.gcp, ca, broker, tmp_path / "pod", 0)
    kubelet = Kubelet(pod)
    pod.start({"PUBSUB_EMULATOR_HOST": emulator.host, "HOME": str(tmp_path)})
    try:
        kubelet.wait_started()
        kubelet.start()
        assert kubelet.ready.wait(60), (kubelet.records, pod.log()[-3000:])
        yield pod
    finally:
        kubelet.stop()
        pod.stop(timeout=30)


@pytest.fixture
def backend(deployed: Deployed, tmp_path: Path) -> CommandBackend:
    return command_gcp.backend(
        deployed.settings, {"principal": OPERATOR, "records": tmp_path / "records.sqlite"}
    )


class RunningDevice:
    def __init__(self, ca: TestCa, port: int, thing: str, settings: FleetSettings) -> None:
        self.client = mqtt5_client(thing, ca.client(thing))
        self.device = CommandDevice(
            thing=thing,
            catalogue=settings.commands.command_catalogue(),
            handlers={"diagnostics": lambda args: {"level": args["level"]}},
            topics=settings.topic_model(),
        )
        subscribed = threading.Event()
        self.device.attach(self.client)
        self.properties: list[Any] = []
        relay_to_device = self.device._on_message

        def observe(client: Any, userdata: Any, message: Any) -> None:
            self.properties.append(message.properties)  # what the bridge set, then the device
            relay_to_device(client, userdata, message)

        self.client.message_callback_add(self.device.routing.commands, observe)
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.device.close()


def _body(thing: str, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "thing": thing,
        "name": name,
        "arguments": arguments or {},
        "reason": "INC-7 check sensor",
        "purpose": "maintenance",
    }


def _wait(backend: CommandBackend, command_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record = backend.get(command_id)
    while record["status"] == "pending" and time.monotonic() < deadline:
        record = backend.get(command_id)
    return record


def _audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.audit for r in caplog.records if hasattr(r, "audit")]  # type: ignore[attr-defined]


def test_a_command_reaches_the_device_through_the_bridge_and_succeeds(
    deployed: Deployed,
    bridge: LocalPod,
    broker: MosquittoBroker,
    ca: TestCa,
    backend: CommandBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    device = RunningDevice(ca, broker.port, "temp-1", deployed.settings)
    try:
        sent = backend.send(_body("temp-1", "diagnostics", {"level": "full"}))
        assert sent["status"] == "pending" and sent["requester"] == OPERATOR
        record = _wait(backend, sent["id"], 30)
        assert record["status"] == "succeeded", (record, bridge.log()[-3000:])
        # The bridge published it as MQTT 5: the id as correlation data, where to answer,
        # and a message expiry within the command's timeout.
        (properties,) = device.properties
        assert properties.CorrelationData == sent["id"].encode()
        assert properties.ResponseTopic == "cmd/temp-1/responses"
        assert 0 < properties.MessageExpiryInterval <= 20
        assert record["completedAt"] >= record["issuedAt"]
        events = [(a["event"], a["decision"]) for a in _audits(caplog)]
        assert ("command.send", "allowed") in events
        assert ("command.response", "recorded") in events
    finally:
        device.close()
    # The same record, through the click wrapper (a new process-level backend, same file).
    runner = CliRunner()
    group = command_group(
        command_gcp.backend,
        {"principal": OPERATOR, "records": backend.store.path},  # type: ignore[attr-defined]
    )
    shown = runner.invoke(group, ["--settings", str(deployed.settings_file), "get", sent["id"]])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "succeeded"


def test_through_the_click_wrapper_a_waited_send_succeeds_and_bad_input_exits_2(
    deployed: Deployed, bridge: LocalPod, broker: MosquittoBroker, ca: TestCa, tmp_path: Path
) -> None:
    device = RunningDevice(ca, broker.port, "temp-4", deployed.settings)
    group = command_group(
        command_gcp.backend, {"principal": OPERATOR, "records": tmp_path / "wrapper.sqlite"}
    )
    base = [
        *("--settings", str(deployed.settings_file), "send", "--reason", "INC-8"),
        *("--thing", "temp-4", "--name", "diagnostics", "--purpose", "maintenance"),
    ]
    runner = CliRunner()
    try:
        result = runner.invoke(
            group,
            [*base, "--args", '{"level": "basic"}', "--wait"],
        )
        assert result.exit_code == 0, (result.output, bridge.log()[-4000:])
        assert json.loads(result.stdout)["status"] == "succeeded"
        bad = runner.invoke(
            group,
            [*base, "--args", '{"level": "everything"}'],
        )
        assert bad.exit_code == 2 and bad.stderr.startswith("error: arguments.level:"), bad.output
        assert len(bad.stderr.strip().splitlines()) == 1
    finally:
        device.close()


def test_the_installed_console_script_sends_through_the_bridge_and_waits(
    deployed: Deployed,
    bridge: LocalPod,
    broker: MosquittoBroker,
    ca: TestCa,
    tmp_path: Path,
    emulator: PubsubEmulator,
) -> None:
    """`iot-remote-access command send --cloud gcp --wait` in a subprocess, as an operator
    runs it: settings file, emulator, the rendered bridge, real mosquitto, the device."""
    device = RunningDevice(ca, broker.port, "temp-5", deployed.settings)
    env = {
        "PUBSUB_EMULATOR_HOST": emulator.host,
        command_gcp.EMULATOR_PRINCIPAL_VARIABLE: OPERATOR,
    }
    common = ["--cloud", "gcp", "--settings", str(deployed.settings_file)]
    common += ["--records", str(tmp_path / "operator.sqlite"), "--output", "json"]
    try:
        sent = cli(
            "command", "send", *common, "--thing", "temp-5", "--name", "diagnostics",
            "--purpose", "maintenance", "--args", '{"level": "basic"}',
            "--reason", "INC-10", "--wait", env=env,
        )  # fmt: skip
        assert sent.returncode == 0, (sent.stdout, sent.stderr, bridge.log()[-3000:])
        record = json.loads(sent.stdout)
        assert record["status"] == "succeeded" and record["thing"] == "temp-5"
        listed = cli("command", "list", *common, "--thing", "temp-5", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]
        refused = cli(
            "command", "send", *common, "--thing", "temp-5", "--name", "diagnostics",
            "--purpose", "maintenance", "--args", '{"level": "everything"}',
            "--reason", "INC-10", env=env,
        )  # fmt: skip
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: --args: arguments.level:"), refused.stderr
    finally:
        device.close()


def test_a_silent_device_ends_timed_out(bridge: LocalPod, backend: CommandBackend) -> None:
    sent = backend.send(_body("temp-9", "slow"))  # nobody is connected as temp-9
    time.sleep(3.5)  # slow's timeout is 3 s
    assert backend.get(sent["id"])["status"] == "timed-out"
    assert backend.sweep() >= 1  # type: ignore[attr-defined]
    assert backend.store.get(sent["id"])["status"] == "timed-out"  # type: ignore[attr-defined]


def test_a_device_answering_another_thing_s_command_changes_nothing(
    deployed: Deployed,
    bridge: LocalPod,
    broker: MosquittoBroker,
    ca: TestCa,
    backend: CommandBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    sent = backend.send(_body("temp-3", "diagnostics", {"level": "basic"}))  # temp-3 is silent
    intruder = mqtt5_client("temp-2", ca.client("temp-2"))
    intruder.connect("127.0.0.1", broker.port)
    intruder.loop_start()
    try:
        # On its own topic, answering for temp-3's command id (payload names itself) ...
        forged = ResponseMessage(sent["id"], "temp-2", "succeeded", {"level": "full"}).payload()
        intruder.publish("cmd/temp-2/responses", forged, qos=1).wait_for_publish(5)
        # ... and naming temp-3 in the payload; on temp-3's topic the broker drops it.
        claimed = ResponseMessage(sent["id"], "temp-3", "succeeded", {"level": "full"}).payload()
        intruder.publish("cmd/temp-2/responses", claimed, qos=1).wait_for_publish(5)
        intruder.publish("cmd/temp-3/responses", claimed, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        refused: list[str] = []
        while time.monotonic() < deadline and len(refused) < 2:
            backend.get(sent["id"])
            refused = [
                a["refused"]
                for a in _audits(caplog)
                if a.get("decision") == "refused" and a["event"] == "command.response"
            ]
        assert sorted(refused) == ["thing", "wrong-thing"], bridge.log()[-2000:]
        assert backend.get(sent["id"])["status"] == "pending"
    finally:
        intruder.disconnect()
        intruder.loop_stop()


def test_the_rendered_bridge_reads_the_responses_topic(deployed: Deployed) -> None:
    (container,) = [
        c
        for c in deployed.rendered.bridge_workload()["spec"]["template"]["spec"]["containers"]
        if c["name"] == "bridge"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BRIDGE_RESPONSES_TOPIC"] == "cmd/{thing}/responses"
    assert env["BRIDGE_PUBSUB_RESPONSES_TOPIC"] == "iot-command-responses"
    # The broker's bridge role (ESE file realm, rendered into a ConfigMap) may read them.
    assert "cmd/+/responses" in json.dumps(deployed.rendered.objects)
