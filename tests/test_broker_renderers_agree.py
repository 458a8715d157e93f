"""mosquitto (the bridge tests' broker) and HiveMQ (GKE) grant the same topics.

Both renderers start from one DeviceAccess; this proves they end at the same
place for devices and for the bridge identity, for default and custom topic
models, with rotation and command responses on and off, and for GCP's rotation bridge.
"""

from __future__ import annotations

import re

import pytest

from iot_remote_access.core.aws_policy import device_policy_document, plain_arn
from iot_remote_access.core.hivemq_device_realm import (
    BRIDGE_REALM_FILE,
    BridgeIdentity,
    devices_realm,
    ese_files,
)
from iot_remote_access.core.hivemq_permissions import (
    bridge_permissions,
    device_access_topics,
    device_permissions,
    granted_topics,
    parse_file_realm,
)
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.policy_check import THING_NAME_VARIABLE
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.topics import (
    Access,
    CustomTopic,
    DeviceAccess,
    ShadowOperation,
    Shadows,
    TopicModel,
)

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


# -- every topic kind of the model (v2), including the AWS policy ----------------------------

EVERY_KIND = DeviceAccess(
    rotation=True,
    command_responses=True,
    tunneling=True,
    jobs=True,
    any_job_id=True,
    shadows=Shadows(named=("config",), operations=(ShadowOperation.UPDATE,)),
    custom=(
        CustomTopic("health", "dt/{thing}/health", Access.PUBLISH),
        CustomTopic("config", "cfg/{thing}/desired", Access.SUBSCRIBE),
    ),
)


def _iam(pattern: str, value: str) -> bool:
    """IAM resource matching ('*' any characters, '/' included; '?' one)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


@pytest.mark.parametrize("thing", THINGS)
def test_every_topic_kind_renders_the_same_on_every_broker_and_aws(thing: str) -> None:
    access = EVERY_KIND
    purposes = [grant.purpose for grant in access.grants()]
    for kind in (
        "telemetry",
        "commands",
        "command responses",
        "certificate rotation",
        "custom: ",
        "secure tunneling",
        "jobs: ",
        "shadow ",
    ):
        assert any(p.startswith(kind) for p in purposes), kind
    # Brokers: every non-AWS grant, the same on both, wildcard-free.
    hivemq = granted_topics(device_permissions(access), thing)
    mosquitto = _mosquitto(MosquittoAcl(access=access), thing)
    assert hivemq == mosquitto == device_access_topics(access, thing)
    assert (Access.PUBLISH, f"dt/{thing}/health") in hivemq
    assert (Access.SUBSCRIBE, f"cfg/{thing}/desired") in hivemq
    assert not any(topic.startswith("$aws/") for _, topic in hivemq)
    # AWS: every grant (AWS-reserved ones too) is allowed by the rendered policy, for
    # this thing, and the policy allows nothing of another thing (the reach analysis).
    document = device_policy_document(access, plain_arn())
    resources = {
        action: [
            r.split(":", 5)[5].replace(THING_NAME_VARIABLE, thing)
            for s in document["Statement"]
            if action in s["Action"]
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        ]
        for action in ("iot:Publish", "iot:Subscribe", "iot:Receive")
    }
    for grant in access.grants():
        topic = grant.render(thing).replace("{jobId}", "fw-1")
        if grant.access is Access.PUBLISH:
            assert any(_iam(r, f"topic/{topic}") for r in resources["iot:Publish"]), topic
        else:
            assert any(_iam(r, f"topicfilter/{topic}") for r in resources["iot:Subscribe"]), topic
            assert any(_iam(r, f"topic/{topic}") for r in resources["iot:Receive"]), topic
    assert analyze_policy(document).lateral == ()


@pytest.mark.parametrize("topics", MODELS)
@pytest.mark.parametrize("rotation", [False, True])
@pytest.mark.parametrize("command_responses", [False, True])
def test_the_certificate_bound_realm_grants_each_thing_what_mosquitto_grants(
    topics: TopicModel, rotation: bool, command_responses: bool
) -> None:
    """deviceBinding certificate: the realm as gcp device-realm renders it, read back; each
    user's role grants its thing the model's topics, whatever client id it sends."""
    access = DeviceAccess(topics=topics, rotation=rotation, command_responses=command_responses)
    realm = devices_realm(access, binding="certificate", fleet_ca_names=(), things=THINGS)
    roles, users = parse_file_realm(realm)
    by_id = {role.role_id: role.permissions for role in roles}
    assert sorted(user.name for user in users) == sorted(THINGS)
    for user in users:
        (role_id,) = user.roles
        expected = _mosquitto(MosquittoAcl(access=access), user.name)
        assert expected == device_access_topics(access, user.name)
        for client_id in (user.name, "another-client-id"):
            assert granted_topics(by_id[role_id], client_id) == expected


@pytest.mark.parametrize("topics", MODELS)
@pytest.mark.parametrize("command_responses", [False, True])
def test_the_rotation_bridge_gets_the_same_topics_from_both_brokers(
    topics: TopicModel, command_responses: bool
) -> None:
    """GCP certificate rotation: the rotation bridge's role in HiveMQ's bridge realm (as
    `gcp manifests` renders it, read back) and its mosquitto ACL user grant the same topics:
    every CSR and confirmation (shared), every certificate topic; the bridge keeps its own."""
    bridge = BridgeIdentity("bridge.iot-remote-access", "pubsub-bridge")
    rotation = BridgeIdentity("rotation-bridge.iot-remote-access", "rotation-bridge")
    access = DeviceAccess(topics=topics, rotation=True, command_responses=command_responses)
    files = ese_files(
        access, binding="clientId", fleet_ca_names=("fleet",), bridge=bridge,
        rotation_bridge=rotation,
    )  # fmt: skip
    roles, users = parse_file_realm(files[BRIDGE_REALM_FILE])
    by_role = {role.role_id: role.permissions for role in roles}
    acl = MosquittoAcl(
        access=access,
        bridge_identity=bridge.identity,
        share_group=bridge.share_group,
        rotation_bridge_identity=rotation.identity,
        rotation_share_group=rotation.share_group,
    )
    for user in users:
        (role_id,) = user.roles
        identity, group = (
            (rotation.identity, rotation.share_group)
            if role_id == "rotation-bridge"
            else (bridge.identity, bridge.share_group)
        )
        assert user.name == identity
        hivemq = granted_topics(by_role[role_id], identity)
        # mosquitto checks a shared subscription against the plain filter (see above).
        normalized = {(a, t.removeprefix(f"$share/{group}/")) for a, t in hivemq}
        assert {(a, t) for a, t in _mosquitto(acl, identity)} == normalized
    rotation_topics = granted_topics(by_role["rotation-bridge"], rotation.identity)
    csr, certificate, confirm = (
        t.replace("{thing}", "+")
        for t in (topics.rotation_csr, topics.rotation_certificate, topics.rotation_confirm)
    )
    assert rotation_topics == {
        (Access.SUBSCRIBE, f"$share/rotation-bridge/{csr}"),
        (Access.SUBSCRIBE, f"$share/rotation-bridge/{confirm}"),
        (Access.PUBLISH, certificate),
    }
    # Without it, that identity gets only the pattern rules (a device's topics, its name).
    without = MosquittoAcl(access=access).grants(rotation.identity)
    assert all(rotation.identity in grant.topic for grant in without)
