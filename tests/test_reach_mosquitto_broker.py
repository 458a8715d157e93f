"""The analysis's mosquitto witnesses, tried on the real broker (mutual TLS).

A device tries the witness the analysis reports - with the client id it names - and
the broker allows it; a device under the library's own ACL, for which the analysis
reports nothing, is refused the same move.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from iot_remote_access.core.mosquitto_acl import render_mosquitto_acl
from iot_remote_access.core.reach import Operation
from iot_remote_access.core.reach_mosquitto import analyze_acl
from iot_remote_access.core.topics import DeviceAccess
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker

WATCHER = "watcher.test"  # reads and writes everything: the other side of each move
WATCHER_ACL = f"\nuser {WATCHER}\ntopic readwrite #\n"
LEAKY_ACL = "pattern readwrite cmd/%c/commands\npattern write dt/%u/telemetry\n"


class Broker:
    def __init__(self, directory: Path, acl: str) -> None:
        self.ca = TestCa(directory / "pki")
        self.server = MosquittoBroker(directory / "mosquitto", self.ca, acl + WATCHER_ACL)
        self.clients: list[mqtt.Client] = []

    def connect(self, identity: str, client_id: str) -> tuple[mqtt.Client, queue.Queue[str]]:
        """A connected client (at most two at once: the attacker and the watcher)."""
        inbox: queue.Queue[str] = queue.Queue()
        connected = threading.Event()
        client = mqtt5_client(client_id, self.ca.client(identity))
        client.on_message = lambda _c, _u, message: inbox.put(message.topic)
        client.on_connect = lambda *_args: connected.set()
        client.connect("127.0.0.1", self.server.port)
        client.loop_start()
        assert connected.wait(10), self.server.log()[-2000:]
        self.clients.append(client)
        return client, inbox

    def close(self, keep: int = 1) -> None:
        while len(self.clients) > keep:
            client = self.clients.pop(0)
            client.disconnect()
            client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    made = Broker(tmp_path, request.param)
    made.server.start()
    try:
        yield made
    finally:
        made.close(keep=0)
        made.server.stop()


def _delivered(inbox: queue.Queue[str], topic: str, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            if inbox.get(timeout=left) == topic:
                return True
        except queue.Empty:
            return False
    return False


def _publish_reaches(broker: Broker, client_id: str, topic: str) -> bool:
    broker.close(keep=0)
    watcher, inbox = broker.connect(WATCHER, "watcher")
    watcher.subscribe(topic, qos=1)
    time.sleep(0.3)
    attacker, _ = broker.connect("device-a", client_id)
    attacker.publish(topic, b"from device-a", qos=1).wait_for_publish(5)
    return _delivered(inbox, topic)


def _receive_reaches(broker: Broker, client_id: str, topic: str) -> bool:
    broker.close(keep=0)
    attacker, inbox = broker.connect("device-a", client_id)
    attacker.subscribe(topic, qos=1)
    time.sleep(0.3)
    watcher, _ = broker.connect(WATCHER, "watcher")
    watcher.publish(topic, b"for device-b", qos=1).wait_for_publish(5)
    return _delivered(inbox, topic)


@pytest.mark.parametrize("broker", [LEAKY_ACL], indirect=True)
def test_a_client_id_rule_lets_a_device_act_as_another_as_predicted(broker: Broker) -> None:
    report = analyze_acl(LEAKY_ACL)
    by_operation = {f.operation: f for f in report.lateral}
    publish, receive = by_operation[Operation.PUBLISH], by_operation[Operation.RECEIVE]
    assert publish.witness == receive.witness == "cmd/device-b/commands"
    assert publish.client_id == "device-b"
    assert _publish_reaches(broker, publish.client_id, publish.witness)
    assert _receive_reaches(broker, receive.client_id, receive.witness)
    # The same move under the device's own client id is refused, as the witness says.
    assert not _publish_reaches(broker, "device-a", publish.witness)


LIBRARY_ACL = render_mosquitto_acl(DeviceAccess(rotation=True, command_responses=True))


@pytest.mark.parametrize("broker", [LIBRARY_ACL], indirect=True)
def test_the_library_acl_has_no_witness_and_the_broker_agrees(broker: Broker) -> None:
    assert analyze_acl(LIBRARY_ACL).lateral == ()
    for client_id in ("device-a", "device-b"):
        assert not _publish_reaches(broker, client_id, "cmd/device-b/commands")
        assert not _receive_reaches(broker, client_id, "cmd/device-b/commands")
