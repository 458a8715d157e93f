"""`gcp manifests`: HiveMQ on GKE, checked offline with the real validators.

Every synthesized object goes through kubernetes-validate (strict) for the
Kubernetes version in the settings; the HiveMQ Helm values go through the
hivemq-platform chart's own values.schema.json, read from ../shared (never
copied into the project). No cluster is needed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from iot_remote_access.cli import main
from iot_remote_access.constructs.gcp.hivemq_platform import HivemqPlatform
from iot_remote_access.core.hivemq_permissions import (
    device_access_topics,
    granted_topics,
    parse_file_realm,
)
from iot_remote_access.core.topics import Access, DeviceAccess, TopicModel
from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.settings.gcp import GcpSettings
from iot_remote_access.stacks.hivemq_chart import MANIFESTS_DIR, VALUES_FILE
from tests.support.hivemq import (
    EXAMPLE_SETTINGS,
    Synthesized,
    example_raw,
    extension_raw,
    values_schema,
)

THINGS = ("sensor-000001", "gateway:eu_1", "x" * 128)


@pytest.fixture(scope="module")
def bridge_mode(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    settings = FleetSettings.parse(example_raw())
    return Synthesized(settings, tmp_path_factory.mktemp("bridge"))


@pytest.fixture(scope="module")
def extension_mode(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    settings = FleetSettings.parse(extension_raw())
    return Synthesized(settings, tmp_path_factory.mktemp("extension"))


@pytest.fixture(params=["bridge", "extension"])
def synthesized(
    request: pytest.FixtureRequest, bridge_mode: Synthesized, extension_mode: Synthesized
) -> Synthesized:
    return bridge_mode if request.param == "bridge" else extension_mode


# -- every manifest is valid Kubernetes, the values are valid chart values ------------------


def test_every_manifest_passes_kubernetes_validate(synthesized: Synthesized) -> None:
    hivemq = synthesized.settings.hivemq
    assert hivemq is not None
    assert synthesized.objects, "nothing was synthesized"
    for obj in synthesized.objects.values():
        kubernetes_validate.validate(obj, hivemq.kubernetes_version, strict=True)
    # The Kubernetes objects embedded in the Helm values, validated the same way.
    for claim in synthesized.values["volumeClaimTemplates"]:
        kubernetes_validate.validate(claim, hivemq.kubernetes_version, strict=True)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "affinity-check", "labels": synthesized.values["nodes"]["labels"]},
        "spec": {
            "affinity": synthesized.values["podScheduling"]["affinity"],
            "containers": [{"name": "c", "image": "example.invalid/c:1"}],
        },
    }
    kubernetes_validate.validate(pod, hivemq.kubernetes_version, strict=True)


def test_kubernetes_validate_refuses_a_broken_manifest(bridge_mode: Synthesized) -> None:
    """The check above can fail: a typo in a field name is caught."""
    workload = yaml.safe_load(yaml.safe_dump(bridge_mode.get("StatefulSet", "pubsub-bridge")))
    workload["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        kubernetes_validate.validate(workload, "1.33", strict=True)


def test_values_pass_the_hivemq_platform_chart_schema(synthesized: Synthesized) -> None:
    jsonschema.Draft202012Validator(values_schema()).validate(synthesized.values)


def test_chart_schema_refuses_an_unknown_client_authentication_mode(
    bridge_mode: Synthesized,
) -> None:
    values = yaml.safe_load(yaml.safe_dump(bridge_mode.values))
    values["services"][0]["tlsClientAuthenticationMode"] = "SOMETIMES"
    with pytest.raises(jsonschema.ValidationError, match="SOMETIMES"):
        jsonschema.Draft202012Validator(values_schema()).validate(values)


@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_manifests_validate_for_the_configured_kubernetes_version(
    version: str, tmp_path: Path
) -> None:
    raw = example_raw()
    raw["hivemq"]["kubernetesVersion"] = version
    synthesized = Synthesized(FleetSettings.parse(raw), tmp_path)
    for obj in synthesized.objects.values():
        assert kubernetes_validate.validate(obj, version, strict=True) == version


# -- the device listener: mTLS only, TLS 1.2/1.3, LoadBalancer, nothing in plain text --------


def _services(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {service["name"]: service for service in values["services"]}


def test_device_listener_is_mutual_tls_on_8883_behind_a_load_balancer(
    synthesized: Synthesized,
) -> None:
    device = _services(synthesized.values)["hivemq-mqtt-devices"]
    assert device["type"] == "mqtt"
    assert device["containerPort"] == device["port"] == 8883
    assert device["serviceType"] == "LoadBalancer"
    assert device["tlsClientAuthenticationMode"] == "REQUIRED"
    assert sorted(device["tlsProtocols"]) == ["TLSv1.2", "TLSv1.3"]
    assert device["truststoreSecretName"] == "fleet-ca-truststore"
    assert device["keystoreSecretName"] == "hivemq-server-keystore"
    assert device["hivemqListenerName"] == "devices"
    for suite in device["tlsCipherSuites"]:
        assert "_CBC_" not in suite and ("GCM" in suite or "CHACHA20" in suite)


def test_no_plain_text_listener_and_only_the_device_listener_is_external(
    synthesized: Synthesized,
) -> None:
    services = synthesized.values["services"]
    for service in services:
        assert service["type"] == "mqtt", "no control center, REST API or WebSocket listener"
        assert service["tlsClientAuthenticationMode"] == "REQUIRED"
        assert service["keystoreSecretName"] and service["truststoreSecretName"]
        assert set(service["tlsProtocols"]) <= {"TLSv1.2", "TLSv1.3"}
    external = [s["name"] for s in services if s.get("serviceType", "ClusterIP") != "ClusterIP"]
    assert external == ["hivemq-mqtt-devices"]
    # Nothing in the rendered manifests exposes a port either.
    for service in synthesized.kinds("Service").values():
        assert service["spec"]["type"] == "ClusterIP"


def test_bridge_listener_exists_only_with_the_bridge(
    bridge_mode: Synthesized, extension_mode: Synthesized
) -> None:
    bridge = _services(bridge_mode.values)["hivemq-mqtt-bridge"]
    assert (bridge["port"], bridge["serviceType"], bridge["hivemqListenerName"]) == (
        8884,
        "ClusterIP",
        "bridge",
    )
    assert list(_services(extension_mode.values)) == ["hivemq-mqtt-devices"]


# -- security extension: allow-all off, ESE on, authorization exactly the topic model ---------


def _extensions(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {extension["name"]: extension for extension in values["extensions"]}


def test_allow_all_extension_is_disabled_explicitly(synthesized: Synthesized) -> None:
    extensions = _extensions(synthesized.values)
    assert extensions["hivemq-allow-all-extension"] == {
        "name": "hivemq-allow-all-extension",
        "enabled": False,
    }
    assert synthesized.values["extensionMap"]["hivemq-allow-all-extension"] == {"enabled": False}
    enabled = {name for name, e in extensions.items() if e["enabled"]}
    assert "hivemq-allow-all-extension" not in enabled
    ese = extensions["hivemq-enterprise-security-extension"]
    assert ese["enabled"] is True and ese["startMandatory"] is True
    assert ("ConfigMap", ese["configMapName"]) in synthesized.objects


def _ese_files(synthesized: Synthesized) -> dict[str, str]:
    name = _extensions(synthesized.values)["hivemq-enterprise-security-extension"]["configMapName"]
    data: dict[str, str] = synthesized.get("ConfigMap", name)["data"]
    return data


def test_ese_pipelines_match_the_listeners_and_their_realm_files(synthesized: Synthesized) -> None:
    files = _ese_files(synthesized)
    root = ET.fromstring(files["config.xml"])
    listeners = {s["hivemqListenerName"] for s in synthesized.values["services"]}
    pipelines = {p.get("listener") for p in root.iterfind("pipelines/listener-pipeline")}
    assert pipelines == listeners
    for path in (r.findtext("configuration/file-path") for r in root.iterfind("realms/file-realm")):
        assert path is not None
        directory, _, filename = path.rpartition("/")
        assert directory == "/opt/hivemq/extensions/hivemq-enterprise-security-extension/conf"
        assert filename in files


def test_device_authorization_is_exactly_the_topic_model(synthesized: Synthesized) -> None:
    """The default binding (certificate) with no things listed: an empty realm, so no
    certificate gets anything until ``gcp device-realm`` lists it (the listed and the
    clientId realms: tests/gke/test_hivemq_device_realm.py)."""
    roles, users = parse_file_realm(_ese_files(synthesized)["devices-realm.xml"])
    assert roles == () and users == ()


def test_bridge_authorization_is_one_certificate_name_with_the_bridge_role(
    bridge_mode: Synthesized,
) -> None:
    roles, users = parse_file_realm(_ese_files(bridge_mode)["bridge-realm.xml"])
    assert [(u.name, u.roles) for u in users] == [("bridge.iot-remote-access", ("bridge",))]
    (role,) = roles
    assert granted_topics(role.permissions, "pod-1") == {
        (Access.SUBSCRIBE, "$share/pubsub-bridge/dt/+/telemetry"),
        (Access.PUBLISH, "cmd/+/commands"),
    }


def test_custom_topic_model_and_rotation_reach_the_permissions(tmp_path: Path) -> None:
    raw = example_raw()
    raw.update(telemetryTopic="fleet/{thing}/up", commandsTopic="fleet/{thing}/down")
    raw["hivemq"]["rotationTopics"] = True
    synthesized = Synthesized(FleetSettings.parse(raw), tmp_path, things=("t-1",))
    files = _ese_files(synthesized)
    (role,), (user,) = parse_file_realm(files["devices-realm.xml"])
    assert (user.name, user.roles) == ("t-1", ("t-1",))
    access = DeviceAccess(
        topics=TopicModel(telemetry="fleet/{thing}/up", commands="fleet/{thing}/down"),
        rotation=True,
    )
    assert granted_topics(role.permissions, "t-1") == device_access_topics(access, "t-1")
    (bridge_role,), _ = parse_file_realm(files["bridge-realm.xml"])
    assert granted_topics(bridge_role.permissions, "b") == {
        (Access.SUBSCRIBE, "$share/pubsub-bridge/fleet/+/up"),
        (Access.PUBLISH, "fleet/+/down"),
    }
    env = {
        e["name"]: e.get("value")
        for e in synthesized.get("StatefulSet", "pubsub-bridge")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["BRIDGE_TELEMETRY_TOPIC"] == "fleet/{thing}/up"
    assert env["BRIDGE_COMMANDS_TOPIC"] == "fleet/{thing}/down"


def test_license_comes_from_the_named_secret_and_never_inline(synthesized: Synthesized) -> None:
    assert synthesized.values["license"] == {"create": False, "name": "hivemq-license"}
    assert not synthesized.kinds("Secret"), "the chart references Secrets, it never makes them"
    inline = {
        "keystorePassword",
        "keystorePrivatePassword",
        "truststorePassword",
        "data",
        "overrideLicense",
        "licenseKey",
        "overrideLicenseConfig",
        "password",
    }
    assert not inline & set(_all_keys(synthesized.values))


# -- the broker's cluster shape --------------------------------------------------------------


def test_broker_size_storage_disruption_budget_and_zone_anti_affinity(
    bridge_mode: Synthesized,
) -> None:
    values = bridge_mode.values
    assert values["nodes"]["replicaCount"] == 3
    assert values["nodes"]["resources"] == {"cpu": "4", "memory": "4Gi"}
    assert values["image"] == {
        "repository": "docker.io/hivemq",
        "name": "hivemq4",
        "tag": "4.54.0",
        "pullPolicy": "IfNotPresent",
    }
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    (claim,) = values["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "premium-rwo"
    assert values["additionalVolumes"] == [
        {
            "type": "persistentVolumeClaim",
            "name": claim["metadata"]["name"],
            "path": "/opt/hivemq/data",
        }
    ]
    (term,) = values["podScheduling"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "topology.kubernetes.io/zone"
    assert term["labelSelector"]["matchLabels"].items() <= values["nodes"]["labels"].items()
    assert values["hivemqMqttSecurity"]["allowEmptyClientId"] is False
    security = values["nodes"]["podSecurityContext"]
    assert security["enabled"] is True and security["runAsNonRoot"] is True


# -- the bridge StatefulSet ------------------------------------------------------------------


def _bridge_pod(synthesized: Synthesized) -> dict[str, Any]:
    workload = synthesized.get("StatefulSet", "pubsub-bridge")
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def test_bridge_runs_hardened(bridge_mode: Synthesized) -> None:
    pod = _bridge_pod(bridge_mode)
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["image"].endswith(":0.1.0")
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["client-certificate"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["client-certificate"]["secret"]["secretName"] == "pubsub-bridge-tls"


def test_bridge_probes_use_the_paths_the_bridge_serves_on_the_configured_port(
    tmp_path: Path,
) -> None:
    raw = example_raw()
    raw["gcp"]["bridge"].update(httpPort=9090)
    synthesized = Synthesized(FleetSettings.parse(raw), tmp_path)
    (container,) = _bridge_pod(synthesized)["containers"]
    assert container["ports"] == [{"containerPort": 9090, "name": "http"}]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BRIDGE_HTTP_PORT"] == "9090"
    service = synthesized.get("Service", "pubsub-bridge")
    assert service["spec"]["clusterIP"] == "None"  # headless: the StatefulSet's, per-pod metrics
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9090, "protocol": "TCP", "targetPort": "http"}
    ]
    statefulset = synthesized.get("StatefulSet", "pubsub-bridge")
    assert statefulset["spec"]["serviceName"] == "pubsub-bridge"


def test_the_probe_paths_are_the_ones_the_bridge_serves() -> None:
    """What the manifests probe is what bridge/health.py answers 200 or 503 on, never 404."""
    import json
    import urllib.error
    import urllib.request

    from prometheus_client import CollectorRegistry

    from iot_remote_access.bridge.health import HealthServer
    from iot_remote_access.constructs.gcp.labels import (
        BRIDGE_LIVENESS_PATH,
        BRIDGE_METRICS_PATH,
        BRIDGE_READINESS_PATH,
    )

    server = HealthServer(
        "127.0.0.1",
        0,
        registry=CollectorRegistry(),
        live=lambda: (True, {}),
        ready=lambda: (False, {"why": "test"}),
    )
    server.start()
    try:
        statuses = {}
        for path in (BRIDGE_LIVENESS_PATH, BRIDGE_READINESS_PATH, BRIDGE_METRICS_PATH, "/livez"):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{server.port}{path}", timeout=5
                ) as r:
                    statuses[path] = r.status
            except urllib.error.HTTPError as error:
                statuses[path] = error.code
                json.loads(error.read())
    finally:
        server.stop()
    assert statuses == {"/healthz": 200, "/readyz": 503, "/metrics": 200, "/livez": 404}


def test_bridge_scales_from_two_with_a_budget_and_workload_identity(
    bridge_mode: Synthesized,
) -> None:
    statefulset = bridge_mode.get("StatefulSet", "pubsub-bridge")
    assert statefulset["spec"]["replicas"] == 2
    hpa = bridge_mode.get("HorizontalPodAutoscaler", "pubsub-bridge")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "pubsub-bridge",
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"periodSeconds": 60, "type": "Pods", "value": 1}
    ]
    pdb = bridge_mode.get("PodDisruptionBudget", "pubsub-bridge")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == statefulset["spec"]["selector"]
    account = bridge_mode.get("ServiceAccount", "pubsub-bridge")
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "pubsub-bridge@my-fleet-project.iam.gserviceaccount.com"
    }
    assert _bridge_pod(bridge_mode)["serviceAccountName"] == "pubsub-bridge"
    env = {e["name"]: e for e in _bridge_pod(bridge_mode)["containers"][0]["env"]}
    assert env["BRIDGE_MQTT_HOST"]["value"] == "hivemq-mqtt-bridge"
    assert env["BRIDGE_MQTT_PORT"]["value"] == "8884"
    assert env["BRIDGE_SHARE_GROUP"]["value"] == "pubsub-bridge"
    assert env["BRIDGE_MQTT_CLIENT_ID"] == {
        "name": "BRIDGE_MQTT_CLIENT_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }


def test_extension_mode_has_no_bridge_and_configures_the_pubsub_extension(
    extension_mode: Synthesized,
) -> None:
    assert not extension_mode.kinds("StatefulSet") and not extension_mode.kinds("Deployment")
    extension = _extensions(extension_mode.values)["hivemq-google-cloud-pubsub-extension"]
    assert extension["enabled"] is True
    config = extension_mode.get("ConfigMap", extension["configMapName"])["data"]["config.xml"]
    root = ET.fromstring(config)
    assert [f.text for f in root.iterfind(".//mqtt-topic-filter")] == ["dt/+/telemetry"]
    assert root.findtext(".//pubsub-topic/name") == "iot-telemetry"
    assert root.findtext(".//google-cloud-project-id") == "my-fleet-project"
    account = extension_mode.get("ServiceAccount", "hivemq-hivemq")
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "hivemq-broker@my-fleet-project.iam.gserviceaccount.com"
    }
    assert extension_mode.values["nodes"]["serviceAccountName"] == "hivemq-hivemq"
    assert "bridge-realm.xml" not in _ese_files(extension_mode)


# -- NetworkPolicies: devices -> listener, bridge -> broker, nothing else in ----------------


def _ingress(policy: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = policy["spec"].get("ingress", [])
    return rules


def test_network_policies_allow_exactly_the_intended_paths(bridge_mode: Synthesized) -> None:
    policies = bridge_mode.kinds("NetworkPolicy")
    assert set(policies) == {
        "default-deny-ingress",
        "hivemq-allow-devices",
        "hivemq-allow-cluster",
        "hivemq-allow-bridge",
        "hivemq-allow-metrics",
        "bridge-allow-metrics",
    }
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["metadata"]["namespace"] == "iot"
    deny = policies["default-deny-ingress"]
    assert deny["spec"]["podSelector"] == {} and _ingress(deny) == []

    hivemq_labels = bridge_mode.values["nodes"]["labels"]
    statefulset = bridge_mode.get("StatefulSet", "pubsub-bridge")
    bridge_labels = statefulset["spec"]["selector"]["matchLabels"]

    def selects_hivemq(policy: dict[str, Any]) -> bool:
        wanted = policy["spec"]["podSelector"]["matchLabels"].items()
        return bool(wanted) and wanted <= hivemq_labels.items()

    devices = policies["hivemq-allow-devices"]
    assert selects_hivemq(devices)
    assert _ingress(devices) == [{"ports": [{"port": 8883, "protocol": "TCP"}]}]
    bridge = policies["hivemq-allow-bridge"]
    assert selects_hivemq(bridge)
    assert _ingress(bridge) == [
        {
            "from": [{"podSelector": {"matchLabels": bridge_labels}}],
            "ports": [{"port": 8884, "protocol": "TCP"}],
        }
    ]
    cluster = policies["hivemq-allow-cluster"]
    assert _ingress(cluster) == [{"from": [{"podSelector": devices["spec"]["podSelector"]}]}]
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert _ingress(policies["hivemq-allow-metrics"]) == [
        {"from": [monitoring], "ports": [{"port": 9399, "protocol": "TCP"}]}
    ]
    assert _ingress(policies["bridge-allow-metrics"]) == [
        {"from": [monitoring], "ports": [{"port": 8080, "protocol": "TCP"}]}
    ]
    # The bridge pods themselves accept nothing but the metrics scrape.
    for name, policy in policies.items():
        if policy["spec"]["podSelector"].get("matchLabels") == bridge_labels:
            assert name == "bridge-allow-metrics"


def test_without_monitoring_or_bridge_only_devices_and_cluster_get_in(
    extension_mode: Synthesized, tmp_path: Path
) -> None:
    raw = extension_raw()
    del raw["hivemq"]["monitoringNamespace"]
    synthesized = Synthesized(FleetSettings.parse(raw), tmp_path)
    assert set(synthesized.kinds("NetworkPolicy")) == {
        "default-deny-ingress",
        "hivemq-allow-devices",
        "hivemq-allow-cluster",
    }


# -- values that must not be wrong: settings and synth ---------------------------------------


def _parse_error(mutate: Any) -> str:
    raw = example_raw()
    mutate(raw["hivemq"])
    with pytest.raises(SettingsError) as caught:
        FleetSettings.parse(raw)
    return str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda h: h["tls"].update(fleetCaSecret="Fleet_CA"),
            r"hivemq\.tls\.fleetCaSecret: 'Fleet_CA' is not a Kubernetes object name; "
            r"allowed: lower-case",
        ),
        (
            lambda h: h.update(licenseSecret="license secret"),
            r"hivemq\.licenseSecret: 'license secret' is not a Kubernetes object name; allowed:",
        ),
        (
            lambda h: h.update(imageTag="latest"),
            r"hivemq\.imageTag: 'latest' uses the floating tag 'latest'; allowed: a fixed tag",
        ),
        (
            lambda h: h["tls"].update(protocols=["TLSv1.1"]),
            r"hivemq\.tls\.protocols\.0: 'TLSv1\.1': Input should be 'TLSv1\.3' or 'TLSv1\.2'",
        ),
        (
            lambda h: h["tls"].update(cipherSuites=["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]),
            r"hivemq\.tls\.cipherSuites: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA' is not an allowed "
            r"cipher suite; allowed: TLS 1\.3 suites",
        ),
        (
            lambda h: h["tls"].update(fleetCaCommonNames=[]),
            r"hivemq\.tls\.fleetCaCommonNames: \[\] is empty; allowed: the subject CN of each CA",
        ),
        (
            lambda h: h.update(kubernetesVersion="1.20"),
            r"hivemq\.kubernetesVersion: '1\.20' is not supported; allowed: 1\.29 to 1\.37",
        ),
        (
            lambda h: h.update(
                integration="extension",
                extension={
                    "googleServiceAccount": "hivemq-broker@my-fleet-project.iam.gserviceaccount.com"
                },
                licenseSecret=None,
            ),
            r"hivemq: integration is 'extension' but licenseSecret is missing; allowed: the name of a "
            r"Secret",
        ),
        (
            lambda h: h["nodes"].update(replicas=1),
            r"hivemq\.nodes\.replicas: 1: Input should be greater than or equal to 2",
        ),
        (
            lambda h: h.update(surprise=True),
            r"hivemq\.surprise: unknown setting; allowed: namespace",
        ),
        (
            lambda h: h.update(bridge={"image": "example.com/bridge:1"}),
            r"hivemq: bridge moved to the gcp section; allowed: gcp\.bridge \(image, serviceAccount",
        ),
        (
            lambda h: h.update(pubsub={"projectId": "p"}),
            r"hivemq: pubsub moved to the gcp section; allowed: gcp\.projectId and gcp\.pubsub",
        ),
        (
            lambda h: h.update(queuedMessagesMaxSize=10),
            r"hivemq\.queuedMessagesMaxSize: 10: Input should be greater than or equal to 1000",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_settings_errors_name_field_value_and_what_is_allowed(mutate: Any, expected: str) -> None:
    assert _parse_error_matches(mutate, expected)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda b: b.update(image="example.com/bridge"),
            r"gcp\.bridge\.image: 'example\.com/bridge' is not pinned \(no tag, so 'latest'\); "
            r"allowed: REPOSITORY:TAG",
        ),
        (
            lambda b: b.update(image="example.com/bridge:stable"),
            r"gcp\.bridge\.image: 'example\.com/bridge:stable' uses the floating tag 'stable'",
        ),
        (
            lambda b: b.update(image="example.com/bridge@sha256:abc"),
            r"gcp\.bridge\.image: .* has a malformed digest; allowed: sha256: and 64 hex digits",
        ),
        (
            lambda b: b.pop("image"),
            r"gcp\.bridge\.image: missing; required with hivemq\.integration 'bridge'",
        ),
        (
            lambda b: b.update(serviceAccount="bridge@gmail.com"),
            r"gcp\.bridge\.serviceAccount: 'bridge@gmail\.com' is not a Google service "
            r"account; allowed: NAME@PROJECT\.iam\.gserviceaccount\.com",
        ),
        (
            lambda b: b.update(googleServiceAccount="x@p.iam.gserviceaccount.com"),
            r"gcp\.bridge: googleServiceAccount was renamed; allowed: serviceAccount",
        ),
        (
            lambda b: b.update(sharedGroup="bridge"),
            r"gcp\.bridge: sharedGroup was renamed; allowed: shareGroup",
        ),
        (
            lambda b: b.update(replicas=1),
            r"gcp\.bridge\.replicas: 1: Input should be greater than or equal to 2",
        ),
        (
            lambda b: b.update(maxReplicas=2, replicas=3),
            r"gcp\.bridge: maxReplicas 2 is below replicas 3; allowed: maxReplicas >= replicas",
        ),
        (
            lambda b: b.update(identity="sensor-1"),
            r"gcp\.bridge\.identity: 'sensor-1' is also a valid thing name",
        ),
        (
            lambda b: b.update(identity="bridge internal"),
            r"gcp\.bridge\.identity: 'bridge internal' is not an identity",
        ),
        (
            lambda b: b.update(cpuLimit="lots"),
            r"gcp\.bridge\.cpuLimit: 'lots' is not a resource quantity; allowed: a positive number",
        ),
        (
            lambda b: b.update(livenessPath="/alive"),
            r"gcp\.bridge\.livenessPath: unknown setting; allowed: serviceAccount",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bridge_settings_errors_name_the_gcp_field(mutate: Any, expected: str) -> None:
    import re

    raw = example_raw()
    mutate(raw["gcp"]["bridge"])
    with pytest.raises(SettingsError) as caught:
        FleetSettings.parse(raw)
    assert re.search(expected, str(caught.value)), str(caught.value)


def test_hivemq_needs_the_gcp_section_and_its_project() -> None:
    raw = example_raw()
    del raw["gcp"]["projectId"]
    with pytest.raises(SettingsError, match=r"gcp\.projectId: missing; required with hivemq"):
        FleetSettings.parse(raw)
    del raw["gcp"]
    with pytest.raises(SettingsError, match=r"gcp: missing; required with hivemq"):
        FleetSettings.parse(raw)


def _parse_error_matches(mutate: Any, expected: str) -> bool:
    import re

    message = _parse_error(mutate)
    assert re.search(expected, message), message
    return True


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ({"image_tag": "latest"}, r"hivemq\.imageTag: 'latest' uses the floating tag 'latest'"),
        (
            {"license_secret": "Bad Name"},
            r"hivemq\.licenseSecret: 'Bad Name' is not a Kubernetes object name; allowed:",
        ),
    ],
)
def test_synth_checks_values_again_for_settings_built_in_code(
    update: dict[str, Any], expected: str
) -> None:
    """model_copy skips pydantic validation (as settings built in code can): synth refuses."""
    import cdk8s

    hivemq = FleetSettings.parse(example_raw()).hivemq
    assert hivemq is not None
    broken = hivemq.model_copy(update=update)
    with pytest.raises(ValueError, match=expected):
        HivemqPlatform(
            cdk8s.Chart(cdk8s.App(), "c"),
            "h",
            namespace="iot",
            settings=broken,
            gcp=_gcp(),
            access=DeviceAccess(),
        )


def test_synth_checks_the_fleet_ca_secret_name_again() -> None:
    import cdk8s

    hivemq = FleetSettings.parse(example_raw()).hivemq
    assert hivemq is not None
    broken = hivemq.model_copy(
        update={"tls": hivemq.tls.model_copy(update={"fleet_ca_secret": "fleet/ca"})}
    )
    with pytest.raises(
        ValueError,
        match=r"hivemq\.tls\.fleetCaSecret: 'fleet/ca' is not a "
        r"Kubernetes object name",
    ):
        HivemqPlatform(
            cdk8s.Chart(cdk8s.App(), "c"),
            "h",
            namespace="iot",
            settings=broken,
            gcp=_gcp(),
            access=DeviceAccess(),
        )


def _gcp() -> GcpSettings:
    gcp = FleetSettings.parse(example_raw()).gcp
    assert gcp is not None
    return gcp


def _bridge_with(gcp: GcpSettings) -> None:
    import cdk8s

    from iot_remote_access.constructs.gcp.bridge_deployment import BridgeDeployment

    BridgeDeployment(
        cdk8s.Chart(cdk8s.App(), "c"),
        "b",
        namespace="iot",
        gcp=gcp,
        topics=TopicModel(),
        broker_host="h",
        broker_port=8884,
    )


def test_synth_checks_the_bridge_image_again() -> None:
    gcp = _gcp()
    broken = gcp.model_copy(
        update={"bridge": gcp.bridge.model_copy(update={"image": "example.com/bridge:latest"})}
    )
    with pytest.raises(
        ValueError,
        match=r"gcp\.bridge\.image: 'example\.com/bridge:latest' "
        r"uses the floating tag 'latest'",
    ):
        _bridge_with(broken)
    with pytest.raises(ValueError, match=r"gcp\.projectId: None is not a Google Cloud project"):
        _bridge_with(gcp.model_copy(update={"project_id": None}))


def test_extra_environment_cannot_replace_a_rendered_name() -> None:
    gcp = _gcp()
    env = {"BRIDGE_SHARE_GROUP": "other", "BRIDGE_LOG_LEVEL": "DEBUG"}
    broken = gcp.model_copy(update={"bridge": gcp.bridge.model_copy(update={"env": env})})
    with pytest.raises(
        ValueError,
        match=r"gcp\.bridge\.env\.BRIDGE_SHARE_GROUP: is set by gcp manifests from the settings",
    ):
        _bridge_with(broken)


@pytest.mark.parametrize(
    "first", ["iot_remote_access.settings", "iot_remote_access.settings.hivemq"]
)
def test_settings_load_whichever_module_is_imported_first(first: str) -> None:
    """A section module imported before settings.py (or after) gives the same model."""
    import subprocess

    code = (
        f"import {first}\n"
        "from iot_remote_access.settings import FleetSettings\n"
        f"s = FleetSettings.parse({example_raw()!r})\n"
        "print(type(s.hivemq).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "HivemqSettings"


# -- the command ------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_cli_writes_manifests_and_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["gcp", "manifests", "--settings", str(EXAMPLE_SETTINGS), "--out", str(out)], capsys
    )
    assert code == 0, stderr
    written = [Path(line) for line in stdout.splitlines()]
    assert out / VALUES_FILE in written
    assert all(path.is_file() for path in written)
    assert sorted(p.name for p in (out / MANIFESTS_DIR).iterdir()) == sorted(
        p.name for p in written if p.parent == out / MANIFESTS_DIR
    )
    assert "StatefulSet.pubsub-bridge.k8s.yaml" in {p.name for p in written}
    assert stderr == ""


def test_cli_replaces_its_own_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    bridge_settings = tmp_path / "bridge.yaml"
    bridge_settings.write_text(yaml.safe_dump({"iot-remote-access": example_raw()}))
    extension_settings = tmp_path / "extension.yaml"
    extension_settings.write_text(yaml.safe_dump({"iot-remote-access": extension_raw()}))
    (out / MANIFESTS_DIR).mkdir(parents=True)
    keep = out / MANIFESTS_DIR / "kustomization.yaml"
    keep.write_text("resources: []\n")
    assert (
        _run(["gcp", "manifests", "--settings", str(bridge_settings), "--out", str(out)], capsys)[0]
        == 0
    )
    assert (out / MANIFESTS_DIR / "StatefulSet.pubsub-bridge.k8s.yaml").exists()
    assert (
        _run(
            ["gcp", "manifests", "--settings", str(extension_settings), "--out", str(out)], capsys
        )[0]
        == 0
    )
    assert not (out / MANIFESTS_DIR / "StatefulSet.pubsub-bridge.k8s.yaml").exists()
    assert keep.read_text() == "resources: []\n"


def test_cli_bad_settings_exit_2_with_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = example_raw()
    raw["hivemq"]["imageTag"] = "latest"
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["gcp", "manifests", "--settings", str(settings), "--out", str(out)], capsys
    )
    assert code == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1
    assert "hivemq.imageTag: 'latest' uses the floating tag 'latest'" in stderr
    assert not out.exists()


def test_cli_without_hivemq_section_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"telemetryTopic": "dt/{thing}/telemetry"}')
    code, _, stderr = _run(
        ["gcp", "manifests", "--settings", str(settings), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2
    assert "hivemq: missing; allowed: a hivemq section" in stderr


def test_cli_says_what_running_without_a_license_means(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = example_raw()
    del raw["hivemq"]["licenseSecret"]
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    code, _, stderr = _run(
        ["gcp", "manifests", "--settings", str(settings), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 0
    assert "no hivemq.licenseSecret" in stderr and "every client is refused" in stderr
    values = yaml.safe_load((tmp_path / "o" / VALUES_FILE).read_text())
    assert values["license"] == {"create": False}


def test_cli_without_the_gke_extra_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "iot_remote_access.stacks.hivemq_chart", None)
    code, _, stderr = _run(
        ["gcp", "manifests", "--settings", str(EXAMPLE_SETTINGS), "--out", str(tmp_path)], capsys
    )
    assert code == 2
    assert "allowed: pip install 'iot-remote-access[gke]'" in stderr


def _all_keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _all_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_keys(item)
