"""The rotation service as ``gcp manifests`` renders it: valid Kubernetes, hardened like the
bridge, one identity through Workload Identity, only variables the service reads.

The rendered Deployment and the plan CronJob are also run from their own command and
environment in tests/gcp/test_rotation_as_deployed.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from iot_remote_access.core.hivemq_permissions import allows, parse_file_realm
from iot_remote_access.core.topics import Access
from iot_remote_access.pubsub.rotation_settings import ENV_PREFIX, GcpRotationSettings
from iot_remote_access.settings import FleetSettings
from tests.support.gcp_rotation import (
    ROTATION_BRIDGE_IDENTITY,
    rotation_bridge_overrides,
    rotation_settings_file,
)
from tests.support.hivemq import Synthesized

ROTATION_OBJECTS = [
    ("Deployment", "rotation-service"),
    ("CronJob", "rotation-plan"),
    ("CronJob", "rotation-dispatch"),
    ("ServiceAccount", "rotation-service"),
    ("PodDisruptionBudget", "rotation-service"),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    directory = tmp_path_factory.mktemp("rotation")
    settings = FleetSettings.from_file(rotation_settings_file(directory))
    return Synthesized(settings, directory / "out")


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def test_the_rotation_objects_pass_kubernetes_validate(rendered: Synthesized) -> None:
    hivemq = rendered.settings.hivemq
    assert hivemq is not None
    for key in ROTATION_OBJECTS:
        kubernetes_validate.validate(rendered.objects[key], hivemq.kubernetes_version, strict=True)


def test_hardened_like_the_bridge_with_its_own_workload_identity(rendered: Synthesized) -> None:
    bridge = _pod(rendered.get("StatefulSet", "pubsub-bridge"))
    (bridge_container,) = bridge["containers"]
    account = rendered.get("ServiceAccount", "rotation-service")
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "iot-rotation@my-fleet-project.iam.gserviceaccount.com"
    }
    assert account["automountServiceAccountToken"] is False
    for kind, name in ROTATION_OBJECTS[:3]:
        pod = _pod(rendered.get(kind, name))
        (container,) = pod["containers"]
        assert pod["securityContext"] == bridge["securityContext"]
        assert container["securityContext"] == bridge_container["securityContext"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["serviceAccountName"] == "rotation-service"
        assert pod["automountServiceAccountToken"] is False
        assert container["image"] == bridge_container["image"]  # one image carries both


def test_the_namespace_default_deny_covers_the_rotation_pods(rendered: Synthesized) -> None:
    """Nothing connects to the service or the jobs (the kubelet's probes are not subject to
    NetworkPolicies on GKE): the default-deny ingress policy selects every pod, no policy
    lets anything in to theirs."""
    deny = rendered.get("NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    labels = [
        _pod_labels(rendered.get(kind, name)) for kind, name in ROTATION_OBJECTS[:3]
    ]  # fmt: skip
    for (kind, name), policy in rendered.objects.items():
        if kind != "NetworkPolicy" or name == "default-deny-ingress":
            continue
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert not any(selector.items() <= pod.items() for pod in labels), name


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def test_every_variable_is_one_the_service_reads_from_the_same_settings(
    rendered: Synthesized,
) -> None:
    known = {ENV_PREFIX + name.upper() for name in GcpRotationSettings.model_fields}
    certificates = rendered.settings.certificates
    assert certificates is not None
    for kind, name in ROTATION_OBJECTS[:3]:
        (container,) = _pod(rendered.get(kind, name))["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert set(env) <= known
        assert env["ROTATION_HOURLY_BUDGET"] == "400" == str(certificates.hourly_rotation_budget)
        assert env["ROTATION_CA_CREATE_QPS"] == "7"  # the Enterprise tier's figure
        assert env["ROTATION_CA_POOL"] == (
            "projects/my-fleet-project/locations/europe-west1/caPools/iot-devices"
        )
        assert container["command"][:3] == ["python", "-m", "iot_remote_access.pubsub.rotation"]
    plan, dispatch = (
        rendered.get("CronJob", "rotation-plan"),
        rendered.get("CronJob", "rotation-dispatch"),
    )
    assert plan["spec"]["schedule"] == f"15 {certificates.daily_run_hour} * * *"
    assert dispatch["spec"]["schedule"] == "5 * * * *"
    for job in (plan, dispatch):
        assert job["spec"]["concurrencyPolicy"] == "Forbid" and job["spec"]["timeZone"] == "Etc/UTC"


def test_without_a_ca_pool_the_service_is_refused_in_one_line(tmp_path: Path) -> None:
    import yaml

    from tests.gcp.test_bridge_as_deployed import cli

    path = rotation_settings_file(tmp_path)
    document = yaml.safe_load(path.read_text())
    del document["iot-remote-access"]["gcp"]["certificateAuthority"]
    path.write_text(yaml.safe_dump(document))
    result = cli("gcp", "manifests", "--settings", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}: gcp.certificateAuthority: missing;")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_rotation_bridge_is_the_bridge_on_the_rotation_topics(rendered: Synthesized) -> None:
    """The second bridge: its own pods, its own identity in the broker's bridge realm with
    exactly the rotation topics, the listener reachable from its pods, and the same
    variables the end-to-end test runs the bridge with."""
    hivemq = rendered.settings.hivemq
    assert hivemq is not None
    names = ("StatefulSet", "Service", "ServiceAccount", "HorizontalPodAutoscaler")
    for kind in (*names, "PodDisruptionBudget"):
        obj = rendered.get(kind, "rotation-bridge")
        kubernetes_validate.validate(obj, hivemq.kubernetes_version, strict=True)
    pod = rendered.get("StatefulSet", "rotation-bridge")["spec"]["template"]
    bridge_pod = rendered.get("StatefulSet", "pubsub-bridge")["spec"]["template"]
    assert pod["metadata"]["labels"] != bridge_pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    expected = rotation_bridge_overrides()
    for key in ("mqtt_client_id",):
        expected.pop(key)  # the pod name here (downward API)
    assert {k: env[f"BRIDGE_{k.upper()}"] for k in expected} == expected
    policy = rendered.get("NetworkPolicy", "hivemq-allow-rotation-bridge")["spec"]
    (rule,) = policy["ingress"]
    assert (
        rule["from"][0]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    # HiveMQ: the rotation bridge's identity may do its three things and nothing of the
    # bridge's; the bridge nothing of the rotation bridge's.
    ese = next(e for e in rendered.values["extensions"] if e["name"].endswith("security-extension"))
    realm = rendered.get("ConfigMap", ese["configMapName"])["data"]["bridge-realm.xml"]
    roles, users = parse_file_realm(realm)
    by_user = {u.name: {r.role_id: r for r in roles}[u.roles[0]] for u in users}
    rotation = by_user[ROTATION_BRIDGE_IDENTITY].permissions
    bridge = by_user["bridge.iot-remote-access"].permissions
    assert allows(
        rotation, "rotation-bridge-0", Access.SUBSCRIBE, "$share/rotation-bridge/rot/+/csr"
    )
    assert allows(
        rotation, "rotation-bridge-0", Access.SUBSCRIBE, "$share/rotation-bridge/rot/+/confirm"
    )
    assert allows(rotation, "rotation-bridge-0", Access.PUBLISH, "rot/gw-1/certificate")
    assert not allows(
        rotation, "rotation-bridge-0", Access.SUBSCRIBE, "$share/rotation-bridge/dt/+/telemetry"
    )
    assert not allows(rotation, "rotation-bridge-0", Access.PUBLISH, "cmd/gw-1/commands")
    assert not allows(bridge, "pubsub-bridge-0", Access.PUBLISH, "rot/gw-1/certificate")


def test_with_the_ledger_on_google_cloud_every_rotation_pod_records_to_its_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    path = rotation_settings_file(tmp_path)
    document = yaml.safe_load(path.read_text())
    root = document.get("iot-remote-access", document)
    root["ledger"] = {"ledgerId": "fleet-a", "gcp": {"bucket": "fleet-ledger-anchors"}}
    path.write_text(yaml.safe_dump(document))
    rendered = Synthesized(FleetSettings.from_file(path), tmp_path / "out")
    for kind, name in ROTATION_OBJECTS[:3]:
        (container,) = _pod(rendered.get(kind, name))["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["ROTATION_ACCESS_LEDGER_BUCKET"] == "fleet-ledger-anchors"
        assert env["ROTATION_ACCESS_LEDGER_ID"] == "fleet-a"
        # The service reads exactly these values back (the pod's own environment).
        for variable in list(os.environ):
            if variable.startswith(ENV_PREFIX):
                monkeypatch.delenv(variable)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        settings = GcpRotationSettings.from_environment()
        assert (settings.access_ledger_bucket, settings.access_ledger_id) == (
            "fleet-ledger-anchors",
            "fleet-a",
        )
