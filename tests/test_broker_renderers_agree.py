"""mosquitto (the bridge tests' broker) and HiveMQ (GKE) grant the same topics.

Both renderers start from one DeviceAccess; this proves they end at the same
place for devices and for the bridge identity, for default and custom topic
models, with rotation and command responses on and off.
"""

from __future__ import annotations

import pytest

from iot_remote_access.core.hivemq_permissions import (
    bridge_permissions,
    device_access_topics,
    device_permissions,
    granted_topics,
)
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.topics import Access, DeviceAccess, TopicModel

MODELS = [
    TopicModel(),
    TopicModel(
        telemetry="fleet/eu/{thing}/up",
        commands="fleet/eu/{thing}/down",
        responses="fleet/eu/{thing}/answers",
    ),
]
THINGS = ["sensor-1", "gw:eu_7", "x" * 128]


def _mosquitto(acl: MosquittoAcl, identity: str) -> frozenset[tuple[Access, str]]:
    return frozenset((grant.access, grant.topic) for grant in acl.grants(identity))


@pytest.mark.parametrize("topics", MODELS)
@pytest.mark.parametrize("rotation", [False, True])
@pytest.mark.parametrize("command_responses", [False, True])
@pytest.mark.parametrize("thing", THINGS)
def test_devices_get_the_same_topics_from_both_brokers(
    topics: TopicModel, rotation: bool, command_responses: bool, thing: str
) -> None:
    access = DeviceAccess(topics=topics, rotation=rotation, command_responses=command_responses)
    hivemq = granted_topics(device_permissions(access), thing)
    mosquitto = _mosquitto(MosquittoAcl(access=access), thing)
    assert hivemq == mosquitto == device_access_topics(access, thing)
    assert all("+" not in topic and "#" not in topic for _, topic in hivemq)
    responses = (Access.PUBLISH, topics.responses.replace("{thing}", thing))
    assert (responses in hivemq) is command_responses


@pytest.mark.parametrize("topics", MODELS)
@pytest.mark.parametrize("command_responses", [False, True])
def test_the_bridge_gets_the_same_topics_from_both_brokers(
    topics: TopicModel, command_responses: bool
) -> None:
    group = "pubsub-bridge"
    identity = "bridge.iot-remote-access"
    access = DeviceAccess(topics=topics, command_responses=command_responses)
    acl = MosquittoAcl(access=access, bridge_identity=identity, share_group=group)
    hivemq = granted_topics(
        bridge_permissions(topics, shared_group=group, command_responses=command_responses),
        identity,
    )
    mosquitto = _mosquitto(acl, identity)
    telemetry = topics.telemetry.replace("{thing}", "+")
    commands = topics.commands.replace("{thing}", "+")
    responses = topics.responses.replace("{thing}", "+")
    expected = {(Access.SUBSCRIBE, f"$share/{group}/{telemetry}"), (Access.PUBLISH, commands)}
    if command_responses:
        # Remote commands on: the bridge reads every thing's answers, shared among replicas.
        expected.add((Access.SUBSCRIBE, f"$share/{group}/{responses}"))
    assert hivemq == expected
    # mosquitto checks a shared subscription against the filter without its
    # $share/<group>/ prefix, so its ACL names the plain filter.
    normalized = {(a, t.removeprefix(f"$share/{group}/")) for a, t in hivemq}
    assert {(a, t.removeprefix(f"$share/{group}/")) for a, t in mosquitto} == normalized
