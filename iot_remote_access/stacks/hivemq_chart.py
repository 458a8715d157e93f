"""The GKE deployment of the broker side: one cdk8s chart, plus the HiveMQ Helm values.

``synthesize`` writes a directory a platform team applies in two steps:

``manifests/``          plain Kubernetes objects (namespace, extension ConfigMaps,
                        bridge StatefulSet/Service/HPA/PDB/ServiceAccount, NetworkPolicies),
                        one file per object: ``kubectl apply -f`` or an Argo CD
                        directory source
``hivemq-values.yaml``  values for HiveMQ's ``hivemq-platform`` chart: ``helm
                        install`` or an Argo CD Helm source
"""

from __future__ import annotations

from pathlib import Path

import cdk8s
import yaml
from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.bridge_deployment import BridgeDeployment
from iot_remote_access.constructs.gcp.hivemq_platform import HivemqPlatform
from iot_remote_access.constructs.gcp.labels import (
    BRIDGE_LISTENER_PORT,
    COMPONENT_LABEL,
    DEVICE_LISTENER_PORT,
    HIVEMQ_METRICS_PORT,
    PART_OF,
)
from iot_remote_access.constructs.gcp.network_policies import NetworkPolicies
from iot_remote_access.constructs.gcp.rotation_service import RotationService
from iot_remote_access.constructs.gcp.teleport_cluster import TELEPORT_CHART, TeleportCluster
from iot_remote_access.core.kubernetes_names import ManifestValueError
from iot_remote_access.core.rotation_messages import rotation_bridge_topics
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.settings import FleetSettings
from iot_remote_access.settings.gcp import GcpSettings
from iot_remote_access.settings.hivemq import HIVEMQ_CHART as HIVEMQ_CHART
from iot_remote_access.settings.hivemq import HIVEMQ_CHART_VERSION as HIVEMQ_CHART_VERSION

MANIFESTS_DIR = "manifests"
VALUES_FILE = "hivemq-values.yaml"
TELEPORT_VALUES_FILE = "teleport-values.yaml"
TELEPORT_RESOURCES_FILE = "teleport-resources.yaml"
#: A Helm post-renderer (kustomize's images transformer) that pins Teleport's image digest.
TELEPORT_POST_RENDERER_DIR = "teleport-post-renderer"
POST_RENDER_SCRIPT = """#!/bin/sh
# Helm post-renderer written by iot-remote-access: Helm's manifests come in on stdin,
# kustomize pins every Teleport container image to the digest in kustomization.yaml.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cat > "$here/helm-output.yaml"
exec kubectl kustomize "$here"
"""
ROTATION_BRIDGE_POD_LABELS = {COMPONENT_LABEL: "rotation-bridge"}


class HivemqChart(cdk8s.Chart):
    """Namespace, broker extension config, bridge and NetworkPolicies for one fleet.

    :param settings: the fleet settings; their ``hivemq`` and ``gcp`` sections are required.
    :param things: with ``deviceBinding: certificate``, the things the devices realm lists.

    Attributes: ``hivemq`` (:class:`HivemqPlatform`, with ``values``),
    ``bridge`` (:class:`BridgeDeployment` or ``None`` with the Pub/Sub
    extension), ``rotation`` (:class:`RotationService` with ``gcp.rotationService``,
    else ``None``), ``network_policies``, ``namespace_object`` (``None`` when
    ``createNamespace`` is off).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FleetSettings,
        things: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id, disable_resource_name_hashes=True)
        hivemq = settings.hivemq
        if hivemq is None:
            raise ManifestValueError(
                "hivemq", "missing; allowed: a hivemq section (see examples/gcp-settings.yaml)"
            )
        gcp = settings.gcp
        if gcp is None:
            raise ManifestValueError(
                "gcp", "missing; allowed: a gcp section (see examples/gcp-settings.yaml)"
            )
        namespace = hivemq.namespace
        # Declared topics (topic model v2) included; shadows and jobs are AWS-only.
        access = settings.device_access(
            rotation=hivemq.rotation_topics,
            # Remote commands on: devices answer on their responses topic, the bridge relays.
            command_responses=settings.commands.enabled,
        )
        self.namespace_object = self._namespace(namespace) if hivemq.create_namespace else None
        self.hivemq = HivemqPlatform(
            self,
            "Hivemq",
            namespace=namespace,
            settings=hivemq,
            gcp=gcp,
            access=access,
            thing_name_pattern=settings.thing_name_pattern,
            things=things,
        )
        self.bridge: BridgeDeployment | None = None
        if hivemq.integration == "bridge":
            assert self.hivemq.bridge_service_name is not None
            self.bridge = BridgeDeployment(
                self,
                "Bridge",
                namespace=namespace,
                gcp=gcp,
                topics=access.topics,
                broker_host=self.hivemq.bridge_service_name,
                broker_port=BRIDGE_LISTENER_PORT,
                thing_name_pattern=settings.thing_name_pattern,
                command_responses=access.command_responses,
            )
        self.rotation, self.rotation_bridge = self._rotation(gcp, access.topics, settings)
        self.network_policies = NetworkPolicies(
            self,
            "NetworkPolicies",
            namespace=namespace,
            hivemq_pod_labels=self.hivemq.pod_labels,
            device_port=DEVICE_LISTENER_PORT,
            hivemq_metrics_port=HIVEMQ_METRICS_PORT,
            bridge_pod_labels=self.bridge.pod_labels if self.bridge else None,
            bridge_listener_port=BRIDGE_LISTENER_PORT if self.bridge else None,
            bridge_http_port=gcp.bridge.http_port if self.bridge else None,
            monitoring_namespace=hivemq.monitoring_namespace,
            operator_namespace=hivemq.operator_namespace,
            rotation_bridge_pod_labels=(
                self.rotation_bridge.pod_labels if self.rotation_bridge else None
            ),
        )

    def _namespace(self, namespace: str) -> k8s.KubeNamespace:
        return k8s.KubeNamespace(
            self,
            "Namespace",
            metadata=k8s.ObjectMeta(
                name=namespace,
                labels={
                    **PART_OF,
                    # The broker pods come from the operator's StatefulSet, which
                    # meets "baseline"; the bridge meets "restricted".
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
        )

    def _rotation(
        self, gcp: GcpSettings, topics: TopicModel, settings: FleetSettings
    ) -> tuple[RotationService | None, BridgeDeployment | None]:
        """With ``gcp.rotationService``: the service and its CronJobs, and (with the bridge)
        the rotation bridge."""
        if gcp.rotation_service is None:
            return None, None
        service = RotationService(
            self,
            "Rotation",
            namespace=self.hivemq.namespace,
            gcp=gcp,
            certificates=settings.certificates,
            ledger=settings.ledger,
        )
        bridge = self._rotation_bridge(gcp, topics, settings) if self.bridge else None
        return service, bridge

    def _rotation_bridge(
        self, gcp: GcpSettings, topics: TopicModel, settings: FleetSettings
    ) -> BridgeDeployment:
        """The bridge once more, on the rotation topics and names (docs/gcp-rotation.md)."""
        rotation = gcp.rotation_service
        assert rotation is not None and self.hivemq.bridge_service_name is not None
        pubsub = gcp.pubsub.model_copy(
            update={
                "telemetry_topic": rotation.csr_topic,
                "commands_topic": rotation.certificate_topic,
                "bridge_subscription": rotation.certificate_subscription,
                "responses_topic": rotation.confirm_topic,
            }
        )
        bridge = gcp.bridge.model_copy(
            update={
                "identity": rotation.bridge_identity,
                "share_group": rotation.bridge_share_group,
                "client_certificate_secret": rotation.bridge_client_certificate_secret,
                "replicas": rotation.bridge_replicas,
                "max_replicas": max(rotation.bridge_replicas, gcp.bridge.max_replicas),
            }
        )
        return BridgeDeployment(
            self,
            "RotationBridge",
            namespace=self.hivemq.namespace,
            gcp=gcp.model_copy(update={"pubsub": pubsub, "bridge": bridge}),
            topics=rotation_bridge_topics(topics),
            broker_host=self.hivemq.bridge_service_name,
            broker_port=BRIDGE_LISTENER_PORT,
            name="rotation-bridge",
            thing_name_pattern=settings.thing_name_pattern,
            command_responses=True,
            pod_labels=ROTATION_BRIDGE_POD_LABELS,
        )


def synthesize(
    settings: FleetSettings, out_dir: Path, *, things: tuple[str, ...] = ()
) -> list[Path]:
    """Write ``manifests/`` and ``hivemq-values.yaml`` under ``out_dir``; return the files written.

    ``things``: the devices realm's things (``deviceBinding: certificate``); none by default.

    Raises ValueError (naming field, value and what is allowed) before writing
    anything when a value cannot be used.
    """
    manifests = out_dir / MANIFESTS_DIR
    app = cdk8s.App(outdir=str(manifests), yaml_output_type=cdk8s.YamlOutputType.FILE_PER_RESOURCE)
    chart = HivemqChart(app, "hivemq", settings=settings, things=things)
    values = chart.hivemq.values
    teleport = _teleport(app, settings)
    # Every value was checked while the chart was built: only now is anything removed or
    # written. Files of ours from an earlier run go, so a switch of integration leaves no
    # stale workload behind; other files in the directory stay.
    ours = [VALUES_FILE, TELEPORT_VALUES_FILE, TELEPORT_RESOURCES_FILE]
    renderer = out_dir / TELEPORT_POST_RENDERER_DIR
    ours_renderer = [renderer / name for name in ("kustomization.yaml", "post-render")]
    for stale in [
        *manifests.glob("*.k8s.yaml"),
        *(out_dir / name for name in ours),
        *ours_renderer,
    ]:
        stale.unlink(missing_ok=True)
    app.synth()
    hivemq = settings.hivemq
    assert hivemq is not None
    header = (
        f"# Values for {HIVEMQ_CHART} {HIVEMQ_CHART_VERSION}, generated by iot-remote-access.\n"
        f"# helm upgrade --install {hivemq.release_name} {HIVEMQ_CHART} --version "
        f"{HIVEMQ_CHART_VERSION} -n {hivemq.namespace} -f {VALUES_FILE}\n"
    )
    values_file = out_dir / VALUES_FILE
    values_file.write_text(header + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    extra = _write_teleport(teleport, out_dir) if teleport is not None else []
    return [*sorted(manifests.glob("*.yaml")), values_file, *extra]


def _teleport(app: cdk8s.App, settings: FleetSettings) -> TeleportCluster | None:
    """Teleport's objects in a chart of their own (its own namespace), with ``gcp.accessProxy``."""
    gcp = settings.gcp
    if gcp is None or gcp.access_proxy is None:
        return None
    assert gcp.project_id is not None  # required with hivemq (FleetSettings)
    hivemq = settings.hivemq
    if hivemq is not None and hivemq.namespace == gcp.access_proxy.namespace:
        # Teleport's default-deny policies would cut the broker off, and both write the
        # namespace object: one namespace each.
        raise ManifestValueError(
            "gcp.accessProxy.namespace",
            f"{gcp.access_proxy.namespace!r} is hivemq.namespace too; allowed: a namespace "
            "of its own",
        )
    chart = cdk8s.Chart(app, "teleport", disable_resource_name_hashes=True)
    return TeleportCluster(chart, "Teleport", project=gcp.project_id, settings=gcp.access_proxy)


def _write_teleport(teleport: TeleportCluster, out_dir: Path) -> list[Path]:
    access = teleport.settings
    values_file = out_dir / TELEPORT_VALUES_FILE
    header = (
        f"# Values for {TELEPORT_CHART} {access.chart_version}, generated by iot-remote-access.\n"
        f"# helm upgrade --install {access.release_name} {TELEPORT_CHART} --version "
        f"{access.chart_version} -n {access.namespace} -f {TELEPORT_VALUES_FILE} "
        f"--post-renderer ./{TELEPORT_POST_RENDERER_DIR}/post-render\n"
        f"# The post-renderer pins {access.image} (the chart alone runs IMAGE:TAG).\n"
    )
    values_file.write_text(
        header + yaml.safe_dump(teleport.values, sort_keys=False), encoding="utf-8"
    )
    resources_file = out_dir / TELEPORT_RESOURCES_FILE
    resources_file.write_text(
        "# Teleport roles of the access rules: tctl create -f "
        + TELEPORT_RESOURCES_FILE
        + "\n"
        + yaml.safe_dump_all(teleport.resources, sort_keys=False),
        encoding="utf-8",
    )
    return [values_file, resources_file, *_write_post_renderer(teleport, out_dir)]


def _write_post_renderer(teleport: TeleportCluster, out_dir: Path) -> list[Path]:
    renderer = out_dir / TELEPORT_POST_RENDERER_DIR
    renderer.mkdir(parents=True, exist_ok=True)
    kustomization = renderer / "kustomization.yaml"
    kustomization.write_text(
        yaml.safe_dump(teleport.kustomization, sort_keys=False), encoding="utf-8"
    )
    script = renderer / "post-render"
    script.write_text(POST_RENDER_SCRIPT, encoding="utf-8")
    script.chmod(0o755)
    return [kustomization, script]
