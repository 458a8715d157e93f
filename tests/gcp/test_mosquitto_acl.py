"""The mosquitto ACL rendered from the topic model, checked as text and on a real broker.

mosquitto 2.0's acl_file checks PUBLISH against ``write`` rules and every
delivered message against ``read`` rules; it does not refuse a SUBSCRIBE (the
SUBACK grants even ``#``). The broker tests therefore show what matters: a
device's publish to another device's topic is refused, and a wildcard
subscription delivers nothing but the device's own commands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from iot_remote_access.core.mosquitto_acl import (
    AclGrant,
    MosquittoAcl,
    render_mosquitto_acl,
    validate_bridge_identity,
)
from iot_remote_access.core.shared_subscription import shared_subscription, topic_filter
from iot_remote_access.core.topics import Access, DeviceAccess, TopicModel, TopicModelError
from tests.support.gcp_clients import Device, wait_for
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker

BRIDGE = "bridge.iot-remote-access"


def test_rendered_acl_binds_devices_to_their_certificate_identity() -> None:
    text = render_mosquitto_acl()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern write dt/%u/telemetry",
        "pattern read cmd/%u/commands",
        f"user {BRIDGE}",
        f"topic deny dt/{BRIDGE}/telemetry",
        f"topic deny cmd/{BRIDGE}/commands",
        "topic read dt/+/telemetry",
        "topic write cmd/+/commands",
    ]
    assert "%c" not in "\n".join(rules)
    assert "#" not in "\n".join(rules)


def test_rendered_acl_follows_the_topic_model_and_rotation() -> None:
    access = DeviceAccess(
        topics=TopicModel(telemetry="fleet/{thing}/up", commands="fleet/{thing}/down"),
        rotation=True,
        tunneling=True,
        jobs=True,
    )
    acl = MosquittoAcl(access, share_group="g1")
    patterns = [r.line() for r in acl.rules() if r.user is None]
    assert patterns == [
        "pattern write fleet/%u/up",
        "pattern read fleet/%u/down",
        "pattern write rot/%u/csr",
        "pattern read rot/%u/certificate",
        "pattern write rot/%u/confirm",
    ]  # AWS-only $aws/ topics (tunnels, jobs) are not rendered for mosquitto
    assert acl.bridge_subscription == "$share/g1/fleet/+/up"


def test_grants_per_identity() -> None:
    acl = MosquittoAcl()
    assert acl.grants("sensor-1") == {
        AclGrant(Access.PUBLISH, "dt/sensor-1/telemetry"),
        AclGrant(Access.SUBSCRIBE, "cmd/sensor-1/commands"),
    }
    assert acl.grants(BRIDGE) == {
        AclGrant(Access.SUBSCRIBE, "dt/+/telemetry"),
        AclGrant(Access.PUBLISH, "cmd/+/commands"),
    }
    assert acl.denied(BRIDGE) == {f"dt/{BRIDGE}/telemetry", f"cmd/{BRIDGE}/commands"}
    assert acl.denied("sensor-1") == frozenset()
    assert acl.grants("evil/#") == frozenset()
    assert MosquittoAcl(bridge_identity=None).grants(BRIDGE) == {
        AclGrant(Access.PUBLISH, f"dt/{BRIDGE}/telemetry"),
        AclGrant(Access.SUBSCRIBE, f"cmd/{BRIDGE}/commands"),
    }


ROTATION_BRIDGE = "rotation-bridge.iot-remote-access"


def test_the_rotation_bridge_user_gets_the_rotation_topics_only() -> None:
    acl = MosquittoAcl(DeviceAccess(rotation=True), rotation_bridge_identity=ROTATION_BRIDGE)
    assert acl.grants(ROTATION_BRIDGE) == {
        AclGrant(Access.SUBSCRIBE, "rot/+/csr"),
        AclGrant(Access.SUBSCRIBE, "rot/+/confirm"),
        AclGrant(Access.PUBLISH, "rot/+/certificate"),
    }
    assert f"rot/{ROTATION_BRIDGE}/csr" in acl.denied(ROTATION_BRIDGE)
    assert acl.grants(BRIDGE) == MosquittoAcl(DeviceAccess(rotation=True)).grants(BRIDGE)
    text = acl.render()
    section = text[text.index(f"user {ROTATION_BRIDGE}\n") :].splitlines()
    assert section[-3:] == [
        "topic read rot/+/csr",
        "topic write rot/+/certificate",
        "topic read rot/+/confirm",
    ]
    assert all(line.startswith("topic deny ") for line in section[1:-3])
    assert "$share/rotation-bridge/rot/+/csr and $share/rotation-bridge/rot/+/confirm" in text
    with pytest.raises(TopicModelError, match=r"rotation_bridge_identity: .* the bridge's too"):
        MosquittoAcl(rotation_bridge_identity=BRIDGE)
    with pytest.raises(TopicModelError, match="rotation_bridge_identity: 'rot-bridge' is also"):
        MosquittoAcl(rotation_bridge_identity="rot-bridge")


def test_shared_subscription_is_the_telemetry_filter_never_hash() -> None:
    assert topic_filter("dt/{thing}/telemetry") == "dt/+/telemetry"
    assert shared_subscription("a/b/{thing}/c", "grp_1") == "$share/grp_1/a/b/+/c"
    with pytest.raises(
        TopicModelError,
        match=r"share_group: 'a/b' is not a share group name; "
        r"allowed: \[a-zA-Z0-9_-\]\{1,64\}",
    ):
        shared_subscription("dt/{thing}/telemetry", "a/b")
    with pytest.raises(TopicModelError, match=r"telemetry: 'dt/#' contains '#'"):
        topic_filter("dt/#")


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (
            "iot-bridge",
            r"'iot-bridge' is also a valid thing name, so a device certificate could "
            r"carry it; allowed: .*'bridge.iot-remote-access'",
        ),
        ("bridge x", r"'bridge x' is not an identity; allowed: \[a-zA-Z0-9._:-\]\{1,128\}"),
        ("bridge/+", r"'bridge/\+' is not an identity"),
    ],
)
def test_bridge_identity_must_not_be_a_thing_name(identity: str, message: str) -> None:
    with pytest.raises(TopicModelError, match=message):
        validate_bridge_identity(identity)
    with pytest.raises(TopicModelError, match=message):
        MosquittoAcl(bridge_identity=identity)


# -- on a real broker ----------------------------------------------------------------


@pytest.fixture
def clients(ca: TestCa, broker: MosquittoBroker) -> Iterator[dict[str, Device]]:
    made = {
        "sensor-1": Device(ca.client("sensor-1"), broker.port, client_id="sensor-1"),
        "sensor-2": Device(ca.client("sensor-2"), broker.port, client_id="sensor-2"),
        BRIDGE: Device(ca.client(BRIDGE), broker.port, client_id="bridge-0"),
    }
    try:
        yield made
    finally:
        for device in made.values():
            device.close()


def settle() -> None:
    """After the expected delivery arrived: give unexpected ones time to show up too."""
    time.sleep(0.5)


def test_device_cannot_publish_to_another_devices_topics(clients: dict[str, Device]) -> None:
    bridge = clients[BRIDGE]
    bridge.subscribe("$share/pubsub-bridge/dt/+/telemetry")
    two = clients["sensor-2"]
    two.subscribe("cmd/sensor-2/commands")
    one = clients["sensor-1"]
    assert one.puback(one.publish("dt/sensor-2/telemetry", b"forged", wait=False)) == (
        "Not authorized"
    )
    assert one.puback(one.publish("cmd/sensor-2/commands", b"forged", wait=False)) == (
        "Not authorized"
    )
    assert one.puback(one.publish("cmd/sensor-1/commands", b"self", wait=False)) == (
        "Not authorized"
    )
    assert one.puback(one.publish("dt/sensor-1/telemetry", b"mine", wait=False)) == "Success"
    wait_for(lambda: bridge.messages() != [], 10, "the bridge's delivery")
    settle()
    assert bridge.messages() == [("dt/sensor-1/telemetry", b"mine")]
    assert two.messages() == []


def test_client_id_does_not_change_the_identity(ca: TestCa, broker: MosquittoBroker) -> None:
    """Permissions follow the certificate's CN, whatever client id the device claims."""
    impostor = Device(ca.client("sensor-1"), broker.port, client_id="sensor-2")
    try:
        assert impostor.puback(impostor.publish("dt/sensor-2/telemetry", b"x", wait=False)) == (
            "Not authorized"
        )
        assert impostor.puback(impostor.publish("dt/sensor-1/telemetry", b"x", wait=False)) == (
            "Success"
        )
    finally:
        impostor.close()


def test_device_wildcard_subscriptions_receive_only_its_own_commands(
    clients: dict[str, Device],
) -> None:
    one, two, bridge = clients["sensor-1"], clients["sensor-2"], clients[BRIDGE]
    for wildcard in (
        "#",
        "cmd/+/commands",
        "dt/+/telemetry",
        "+/sensor-2/#",
        "$share/x/#",
        "cmd/sensor-2/commands",
    ):
        one.subscribe(wildcard)
    bridge.publish("cmd/sensor-2/commands", b"for two")
    bridge.publish("cmd/sensor-1/commands", b"for one")
    two.publish("dt/sensor-2/telemetry", b"two's telemetry")
    own = ("cmd/sensor-1/commands", b"for one")
    wait_for(lambda: own in one.messages(), 10, "its own command")  # it does receive that ...
    settle()
    received = one.messages()
    assert set(received) == {("cmd/sensor-1/commands", b"for one")}  # ... and nothing else


def test_bridge_may_only_read_telemetry_and_write_commands(clients: dict[str, Device]) -> None:
    bridge, one = clients[BRIDGE], clients["sensor-1"]
    bridge.subscribe("#")
    one.subscribe("cmd/sensor-1/commands")
    for topic in ("dt/sensor-1/telemetry", f"dt/{BRIDGE}/telemetry", "rot/sensor-1/csr", "x"):
        status = bridge.puback(bridge.publish(topic, b"bridge", wait=False))
        assert status == "Not authorized", topic
    assert bridge.puback(bridge.publish("cmd/sensor-1/commands", b"cmd", wait=False)) == "Success"
    one.publish("dt/sensor-1/telemetry", b"t")
    wait_for(lambda: bridge.messages() != [], 10, "the telemetry")
    settle()
    assert set(bridge.messages()) == {("dt/sensor-1/telemetry", b"t")}


def test_grants_match_what_the_real_broker_allows(
    clients: dict[str, Device], acl: MosquittoAcl
) -> None:
    """For each identity, a publish to each probe topic succeeds exactly when grants() says so."""
    probes = [
        "dt/sensor-1/telemetry",
        "dt/sensor-2/telemetry",
        "cmd/sensor-1/commands",
        "cmd/sensor-2/commands",
        f"dt/{BRIDGE}/telemetry",
        f"cmd/{BRIDGE}/commands",
        "rot/sensor-1/csr",
        "other/topic",
    ]
    for identity, device in clients.items():
        granted, denied = acl.grants(identity), acl.denied(identity)
        for topic in probes:
            allowed = topic not in denied and any(
                g.access is Access.PUBLISH and _matches(g.topic, topic) for g in granted
            )
            status = device.puback(device.publish(topic, b"probe", wait=False))
            assert status == ("Success" if allowed else "Not authorized"), (identity, topic)


def _matches(topic_filter_: str, topic: str) -> bool:
    parts, levels = topic_filter_.split("/"), topic.split("/")
    return len(parts) == len(levels) and all(
        p in ("+", t) for p, t in zip(parts, levels, strict=True)
    )


def test_mosquitto_restart_forgets_shared_subscriptions(
    ca: TestCa, broker: MosquittoBroker
) -> None:
    """A broker fact the bridge's fault test works around, shown so that a mosquitto that
    fixes it is noticed: after a restart, mosquitto 2.0 keeps a persistent session's queued
    messages and its plain subscriptions, but not its shared ones, so a message published
    before the bridge subscribes again reaches nobody."""

    def session(client_id: str) -> Device:
        return Device(
            ca.client(BRIDGE),
            broker.port,
            client_id=client_id,
            clean_start=False,
            session_expiry=600,
        )

    for client_id, subscription in (
        ("shared", "$share/g/dt/+/telemetry"),
        ("plain", "dt/+/telemetry"),
    ):
        device = session(client_id)
        device.subscribe(subscription)
        device.close()
    sensor = Device(ca.client("sensor-1"), broker.port, client_id="sensor-1")
    sensor.publish("dt/sensor-1/telemetry", b"before")
    sensor.close()
    broker.restart()
    sensor = Device(ca.client("sensor-1"), broker.port, client_id="sensor-1")
    sensor.publish("dt/sensor-1/telemetry", b"after")
    sensor.close()
    received = {}
    for client_id in ("shared", "plain"):
        device = session(client_id)
        wait_for(lambda d=device: d.messages() != [], 10, f"{client_id}'s queued message")
        settle()
        received[client_id] = [payload for _, payload in device.messages()]
        device.close()
    assert received == {"shared": [b"before"], "plain": [b"before", b"after"]}
