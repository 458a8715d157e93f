"""The bridge's workload as rendered: one set of names shared with Pub/Sub, HiveMQ and mosquitto,
a StatefulSet that replaces one replica at a time, and only variables the bridge reads.

The rendered bridge is also started, exactly as described here, in
tests/gcp/test_bridge_as_deployed.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.bridge.settings import BridgeSettings
from iot_remote_access.cli import main
from iot_remote_access.core.hivemq_permissions import allows, parse_file_realm
from iot_remote_access.core.mosquitto_acl import AclGrant, MosquittoAcl
from iot_remote_access.core.shared_subscription import shared_subscription, topic_filter
from iot_remote_access.core.topics import Access, DeviceAccess
from iot_remote_access.settings import FleetSettings
from tests.support.hivemq import Synthesized, example_raw


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(FleetSettings.parse(example_raw()), tmp_path_factory.mktemp("bridge"))


def _container(rendered: Synthesized) -> dict[str, Any]:
    pod = rendered.get("StatefulSet", "pubsub-bridge")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert isinstance(container, dict)
    return container


def _env(rendered: Synthesized) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(rendered)["env"] if "value" in e}


def test_every_rendered_variable_is_one_the_bridge_reads(rendered: Synthesized) -> None:
    names = {e["name"] for e in _container(rendered)["env"]}
    assert names <= BridgeSettings.variable_names()
    # Everything the bridge needs without a default, and both dead-letter topics.
    assert {
        "BRIDGE_PROJECT",
        "BRIDGE_MQTT_HOST",
        "BRIDGE_MQTT_CA_FILE",
        "BRIDGE_MQTT_CERT_FILE",
        "BRIDGE_MQTT_KEY_FILE",
        "BRIDGE_MQTT_CLIENT_ID",
        "BRIDGE_PUBSUB_TELEMETRY_DEAD_LETTER_TOPIC",
        "BRIDGE_PUBSUB_COMMANDS_DEAD_LETTER_TOPIC",
    } <= names


def test_pubsub_names_are_the_ones_gcp_deploy_creates(rendered: Synthesized) -> None:
    gcp = rendered.settings.gcp
    assert gcp is not None
    env = _env(rendered)
    assert env["BRIDGE_PROJECT"] == gcp.project_id == "my-fleet-project"
    assert env["BRIDGE_PUBSUB_TELEMETRY_TOPIC"] == gcp.pubsub.telemetry_topic == "iot-telemetry"
    assert env["BRIDGE_PUBSUB_TELEMETRY_DEAD_LETTER_TOPIC"] == "iot-telemetry-dead-letter"
    assert env["BRIDGE_PUBSUB_COMMANDS_SUBSCRIPTION"] == gcp.pubsub.bridge_subscription
    assert env["BRIDGE_PUBSUB_COMMANDS_DEAD_LETTER_TOPIC"] == "iot-commands-dead-letter"
    account = rendered.get("ServiceAccount", "pubsub-bridge")["metadata"]["annotations"]
    assert account["iam.gke.io/gcp-service-account"] == gcp.bridge.service_account


def test_identity_and_share_group_are_what_hivemq_and_mosquitto_allow(
    rendered: Synthesized,
) -> None:
    gcp = rendered.settings.gcp
    assert gcp is not None
    env = _env(rendered)
    topics = rendered.settings.topic_model()
    subscription = shared_subscription(env["BRIDGE_TELEMETRY_TOPIC"], env["BRIDGE_SHARE_GROUP"])
    assert subscription == "$share/pubsub-bridge/dt/+/telemetry"
    # HiveMQ: the realm's one user is the certificate CN, its role allows that subscription.
    ese = next(e for e in rendered.values["extensions"] if e["name"].endswith("security-extension"))
    realm = rendered.get("ConfigMap", ese["configMapName"])["data"]["bridge-realm.xml"]
    roles, users = parse_file_realm(realm)
    assert [user.name for user in users] == [gcp.bridge.identity]
    (role,) = roles
    assert allows(role.permissions, "pubsub-bridge-0", Access.SUBSCRIBE, subscription)
    assert not allows(
        role.permissions, "pubsub-bridge-0", Access.SUBSCRIBE, "$share/other/dt/+/telemetry"
    )
    # mosquitto: the ACL rendered from the same settings.
    acl = MosquittoAcl(
        DeviceAccess(topics=topics),
        bridge_identity=gcp.bridge.identity,
        share_group=gcp.bridge.share_group,
    )
    assert acl.bridge_subscription == subscription
    assert AclGrant(Access.SUBSCRIBE, topic_filter(topics.telemetry)) in acl.grants(
        gcp.bridge.identity
    )


def test_a_statefulset_replaces_one_replica_at_a_time_and_names_clients_by_pod(
    rendered: Synthesized,
) -> None:
    spec = rendered.get("StatefulSet", "pubsub-bridge")["spec"]
    assert spec["replicas"] == 2
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "partition": 0},
    }
    pod = spec["template"]["spec"]
    env = _env(rendered)
    assert env["BRIDGE_DRAIN_TIMEOUT_SECONDS"] == "20"
    assert pod["terminationGracePeriodSeconds"] == 20 + 30
    client_id = next(e for e in pod["containers"][0]["env"] if e["name"] == "BRIDGE_MQTT_CLIENT_ID")
    assert client_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert not rendered.kinds("Deployment")


def test_the_command_is_the_images_entry_point(rendered: Synthesized) -> None:
    dockerfile = Path(__file__).resolve().parents[2] / "iot_remote_access" / "bridge" / "Dockerfile"
    entrypoint = next(
        line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT ")
    )
    assert yaml.safe_load(entrypoint.removeprefix("ENTRYPOINT ")) == _container(rendered)["command"]
    assert "args" not in _container(rendered)


def test_broker_queue_limits_are_raised_in_the_hivemq_values(rendered: Synthesized) -> None:
    assert rendered.values["hivemqMqtt"] == {
        "queuedMessagesMaxSize": 100_000,
        "queuedMessagesStrategy": "discard",
    }


def test_manifests_refuse_an_extra_variable_the_bridge_does_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = example_raw()
    raw["gcp"]["bridge"]["env"] = {"BRIDGE_SHARED_GROUP": "bridge", "TZ": "UTC"}
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    with pytest.raises(SystemExit) as exit_info:
        main(["gcp", "manifests", "--settings", str(settings), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err == (
        f"error: {settings}: gcp.bridge.env: unknown variable BRIDGE_SHARED_GROUP "
        "(did you mean BRIDGE_SHARE_GROUP?); allowed: the BRIDGE_* variables the bridge reads "
        "(docs/bridge-deploy.md)\n"
    )
    assert not (tmp_path / "o").exists()


def test_the_extension_integration_needs_no_bridge_image(tmp_path: Path) -> None:
    raw = example_raw()
    raw["hivemq"].update(
        integration="extension",
        extension={
            "googleServiceAccount": "hivemq-broker@my-fleet-project.iam.gserviceaccount.com"
        },
    )
    del raw["gcp"]["bridge"]["image"]
    synthesized = Synthesized(FleetSettings.parse(raw), tmp_path)
    assert not synthesized.kinds("StatefulSet")
    extension = next(e for e in synthesized.values["extensions"] if "pubsub" in e["name"])
    config = synthesized.get("ConfigMap", extension["configMapName"])["data"]["config.xml"]
    # The extension publishes under the same names as the bridge would.
    assert "<name>iot-telemetry</name>" in config
    assert "<google-cloud-project-id>my-fleet-project</google-cloud-project-id>" in config
