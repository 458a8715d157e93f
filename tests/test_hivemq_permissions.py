"""HiveMQ topic permissions rendered from the topic model (pure: no cluster, no broker).

The cross-check against the mosquitto ACL (same DeviceAccess, same sample
things) belongs next to this once core/mosquitto_acl.py is on main.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_remote_access.core.hivemq_ese import EsePipeline, render_ese_config
from iot_remote_access.core.hivemq_permissions import (
    CLIENT_ID_PLACEHOLDER,
    Activity,
    RealmRole,
    RealmUser,
    SharedSubscription,
    allows,
    bridge_permissions,
    device_access_topics,
    device_permissions,
    granted_topics,
    parse_file_realm,
    render_file_realm,
    topic_matches,
    validate_bridge_identity,
    validate_shared_group,
)
from iot_remote_access.core.hivemq_pubsub import PubsubRoutes, render_pubsub_extension_config
from iot_remote_access.core.topics import Access, DeviceAccess, TopicModel, TopicModelError

SAMPLE_THINGS = ("sensor-000001", "gateway:eu_1", "A", "x" * 128, "dt", "cmd", "telemetry")
CUSTOM = TopicModel(telemetry="fleet/{thing}/up", commands="fleet/{thing}/down")


@pytest.mark.parametrize(
    "access",
    [
        DeviceAccess(),
        DeviceAccess(rotation=True),
        DeviceAccess(topics=CUSTOM, rotation=True),
        # AWS-only capabilities add only $aws/ topics, which HiveMQ does not have.
        DeviceAccess(tunneling=True, jobs=True, job_ids=("job-1",)),
    ],
    ids=["default", "rotation", "custom-topics", "aws-extras"],
)
@pytest.mark.parametrize("thing", SAMPLE_THINGS)
def test_device_role_grants_exactly_the_topic_model(access: DeviceAccess, thing: str) -> None:
    permissions = device_permissions(access)
    assert granted_topics(permissions, thing) == device_access_topics(access, thing)


def test_device_role_is_written_with_client_id_substitution_and_no_wildcard() -> None:
    permissions = device_permissions(DeviceAccess(rotation=True))
    assert [(p.activity, p.topic) for p in permissions] == [
        (Activity.PUBLISH, f"dt/{CLIENT_ID_PLACEHOLDER}/telemetry"),
        (Activity.SUBSCRIBE, f"cmd/{CLIENT_ID_PLACEHOLDER}/commands"),
        (Activity.PUBLISH, f"rot/{CLIENT_ID_PLACEHOLDER}/csr"),
        (Activity.SUBSCRIBE, f"rot/{CLIENT_ID_PLACEHOLDER}/certificate"),
        (Activity.PUBLISH, f"rot/{CLIENT_ID_PLACEHOLDER}/confirm"),
    ]
    for permission in permissions:
        assert "+" not in permission.topic and "#" not in permission.topic
        assert permission.shared_subscription is SharedSubscription.NOT_SHARED


@given(
    st.from_regex(r"[a-zA-Z0-9:_-]{1,20}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9:_-]{1,20}", fullmatch=True),
)
def test_a_device_never_reaches_another_devices_topics(me: str, other: str) -> None:
    permissions = device_permissions(DeviceAccess(rotation=True))
    for access, topic in device_access_topics(DeviceAccess(rotation=True), other):
        assert allows(permissions, me, access, topic) is (me == other)
    assert allows(permissions, me, Access.PUBLISH, f"dt/{me}/telemetry")
    assert not allows(permissions, me, Access.SUBSCRIBE, f"dt/{me}/telemetry")
    assert not allows(permissions, me, Access.PUBLISH, f"cmd/{me}/commands")
    for wildcard in ("cmd/+/commands", "cmd/#", "#", "+/+/+", f"cmd/{me}/#"):
        assert not allows(permissions, me, Access.SUBSCRIBE, wildcard)
    assert not allows(permissions, me, Access.SUBSCRIBE, f"$share/g/cmd/{me}/commands")


def test_bridge_role_is_a_shared_telemetry_subscription_and_commands_publish() -> None:
    permissions = bridge_permissions(TopicModel(), shared_group="bridge")
    assert granted_topics(permissions, "any-client") == {
        (Access.SUBSCRIBE, "$share/bridge/dt/+/telemetry"),
        (Access.PUBLISH, "cmd/+/commands"),
    }
    bridge = "pubsub-bridge-5d8f"
    assert allows(permissions, bridge, Access.SUBSCRIBE, "$share/bridge/dt/+/telemetry")
    assert allows(permissions, bridge, Access.SUBSCRIBE, "$share/bridge/dt/sensor-1/telemetry")
    assert allows(permissions, bridge, Access.PUBLISH, "cmd/sensor-1/commands")
    # Not a plain subscription, not another group, never wider than the telemetry filter.
    assert not allows(permissions, bridge, Access.SUBSCRIBE, "dt/+/telemetry")
    assert not allows(permissions, bridge, Access.SUBSCRIBE, "$share/other/dt/+/telemetry")
    for wider in ("$share/bridge/#", "$share/bridge/dt/#", "$share/bridge/+/+/telemetry"):
        assert not allows(permissions, bridge, Access.SUBSCRIBE, wider)
    assert not allows(permissions, bridge, Access.PUBLISH, "dt/sensor-1/telemetry")
    assert not allows(permissions, bridge, Access.PUBLISH, "cmd/sensor-1/other")


def test_bridge_role_follows_a_custom_topic_model() -> None:
    assert granted_topics(bridge_permissions(CUSTOM, shared_group="g1"), "b") == {
        (Access.SUBSCRIBE, "$share/g1/fleet/+/up"),
        (Access.PUBLISH, "fleet/+/down"),
    }


@pytest.mark.parametrize("group", ["", "a/b", "+", "#", "a b", "x" * 65])
def test_shared_group_rejects_what_would_widen_the_filter(group: str) -> None:
    with pytest.raises(
        TopicModelError,
        match=r"shared_group: .* is not a shared-subscription "
        r"group; allowed: \[a-zA-Z0-9_-\]\{1,64\}",
    ):
        validate_shared_group(group)
    with pytest.raises(TopicModelError):
        bridge_permissions(TopicModel(), shared_group=group)


@pytest.mark.parametrize("name", ["pubsub-bridge", "bridge", "a:b_c-d"])
def test_bridge_identity_must_not_be_a_possible_thing_name(name: str) -> None:
    with pytest.raises(
        TopicModelError,
        match=rf"'{name}' is also a valid thing name.*allowed: "
        r"a name with a character thing names cannot have",
    ):
        validate_bridge_identity(name)
    assert validate_bridge_identity("pubsub-bridge.internal") == "pubsub-bridge.internal"


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("dt/+/telemetry", "dt/a/telemetry", True),
        ("dt/+/telemetry", "dt/a/b/telemetry", False),
        ("dt/#", "dt/a/b", True),
        ("dt/#", "dt", True),
        ("#", "$SYS/x", False),
        ("+/x", "$aws/x", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches_follows_mqtt(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_file_realm_round_trips_and_escapes_xml() -> None:
    role = RealmRole("CN with <angle> & amp", device_permissions(DeviceAccess()))
    with pytest.raises(TopicModelError, match=r"role: .* is not usable as a certificate name"):
        render_file_realm([role])
    roles = [
        RealmRole("Fleet CA 1", device_permissions(DeviceAccess())),
        RealmRole("bridge", bridge_permissions(TopicModel(), shared_group="bridge")),
    ]
    document = render_file_realm(roles, [RealmUser("pubsub-bridge.internal", ("bridge",))])
    parsed_roles, users = parse_file_realm(document)
    assert users == (RealmUser("pubsub-bridge.internal", ("bridge",)),)
    for original, parsed in zip(roles, parsed_roles, strict=True):
        assert parsed.role_id == original.role_id
        expected = granted_topics(original.permissions, "t1")
        assert granted_topics(parsed.permissions, "t1") == expected


def test_ese_config_binds_each_listener_to_its_realm() -> None:
    document = render_ese_config(
        (
            EsePipeline("devices", "devices", "devices-realm.xml", by_user=False),
            EsePipeline("bridge", "bridge", "bridge-realm.xml", by_user=True),
        )
    )
    root = ET.fromstring(document)
    realms = {
        r.findtext("name"): r.findtext("configuration/file-path")
        for r in root.iterfind("realms/file-realm")
    }
    conf = "/opt/hivemq/extensions/hivemq-enterprise-security-extension/conf"
    assert realms == {
        "devices": f"{conf}/devices-realm.xml",
        "bridge": f"{conf}/bridge-realm.xml",
    }
    pipelines = {p.get("listener"): p for p in root.iterfind("pipelines/listener-pipeline")}
    assert set(pipelines) == {"devices", "bridge"}
    device = pipelines["devices"]
    assert _extractions(device) == {
        ("subject-common-name", "authentication-key"),
        ("issuer-common-name", "authorization-role-key"),
    }
    assert device.findtext("file-authorization-manager/realm") == "devices"
    assert device.findtext("file-authorization-manager/use-authorization-key") == "false"
    assert device.findtext("file-authorization-manager/use-authorization-role-key") == "true"
    bridge = pipelines["bridge"]
    assert _extractions(bridge) == {
        ("subject-common-name", "authentication-key"),
        ("subject-common-name", "authorization-key"),
    }
    assert bridge.findtext("file-authorization-manager/use-authorization-key") == "true"
    assert bridge.findtext("file-authorization-manager/use-authorization-role-key") == "false"
    assert root.findtext("access-log/enabled") == "true"


def _extractions(pipeline: ET.Element) -> set[tuple[str | None, str | None]]:
    return {
        (e.findtext("x509-field"), e.findtext("ese-variable"))
        for e in pipeline.iterfind(
            "authentication-preprocessors/x509-preprocessor/x509-extractions/x509-extraction"
        )
    }


def test_pubsub_extension_forwards_exactly_the_telemetry_topics() -> None:
    routes = PubsubRoutes(project_id="my-fleet-project", telemetry_topic="telemetry")
    root = ET.fromstring(render_pubsub_extension_config(CUSTOM, routes))
    assert (
        root.findtext("pubsub-connections/pubsub-connection/google-cloud-project-id")
        == "my-fleet-project"
    )
    assert (
        root.find("pubsub-connections/pubsub-connection/authentication/application-default")
        is not None
    )
    mapping = root.find("mqtt-to-pubsub-mappings/mqtt-to-pubsub-mapping")
    assert mapping is not None
    assert [f.text for f in mapping.iterfind("mqtt-topic-filters/mqtt-topic-filter")] == [
        "fleet/+/up"
    ]
    assert mapping.findtext("pubsub-topics/pubsub-topic/name") == "telemetry"
    # No commands route without a transformer that can check thing names.
    assert root.find("pubsub-to-mqtt-transformers") is None


def test_pubsub_extension_commands_route_needs_a_transformer() -> None:
    routes = PubsubRoutes(
        project_id="my-fleet-project",
        telemetry_topic="telemetry",
        commands_subscription="commands-hivemq",
        commands_transformer="com.example.Commands",
        thing_name_pattern="sensor-[0-9]+",
    )
    root = ET.fromstring(render_pubsub_extension_config(TopicModel(), routes))
    transformer = root.find("pubsub-to-mqtt-transformers/pubsub-to-mqtt-transformer")
    assert transformer is not None
    assert transformer.findtext("transformer") == "com.example.Commands"
    subscription = transformer.findtext("pubsub-subscriptions/pubsub-subscription/name")
    assert subscription == "commands-hivemq"
    settings = {
        s.findtext("name"): s.findtext("value")
        for s in transformer.iterfind("custom-settings/custom-setting")
    }
    assert settings == {
        "commands-topic-template": "cmd/{thing}/commands",
        "thing-name-pattern": "sensor-[0-9]+",
    }
