"""The MQTT <-> Pub/Sub bridge on GKE: StatefulSet, autoscaler, disruption budget, identity.

The bridge connects to HiveMQ's internal mTLS listener with its own client
certificate (mounted from a Secret), reaches Pub/Sub as a Google service
account through Workload Identity (no key file), and exposes liveness,
readiness and Prometheus metrics on one HTTP port. It runs non-root with a
read-only root filesystem, no privilege escalation and no capabilities.

Why a StatefulSet: each replica's MQTT client id is its pod name
(``pubsub-bridge-0``, ``-1``, ...), stable across restarts, so a replica
killed without a drain comes back under the same id and resumes the broker
session that holds what was queued for it. A clean stop (SIGTERM) drains and
ends the session (see docs/bridge-deploy.md for the contract).

Environment the container gets (every name is a variable the bridge reads;
it refuses any ``BRIDGE_*`` variable it does not know):

=============================================  ==========================================
``BRIDGE_PROJECT``                             ``gcp.projectId``
``BRIDGE_MQTT_HOST``/``_PORT``                 the broker's bridge listener Service
``BRIDGE_MQTT_CLIENT_ID``                      the pod name (downward API)
``BRIDGE_MQTT_CERT_FILE``, ``_KEY_FILE``,      the mounted client certificate, key and
``_CA_FILE``                                   the CA that signed the broker's certificate
``BRIDGE_SHARE_GROUP``                         ``gcp.bridge.shareGroup``
``BRIDGE_TELEMETRY_TOPIC``,                    the topic model's templates (``{thing}``)
``BRIDGE_COMMANDS_TOPIC``
``BRIDGE_THING_NAME_PATTERN``                  the fleet's thing-name pattern
``BRIDGE_PUBSUB_TELEMETRY_TOPIC``,             ``gcp.pubsub`` names, dead-letter topics
``_TELEMETRY_DEAD_LETTER_TOPIC``,              included
``_COMMANDS_SUBSCRIPTION``,
``_COMMANDS_DEAD_LETTER_TOPIC``
``BRIDGE_RESPONSES_TOPIC``,                    remote commands on only: the topic model's
``BRIDGE_PUBSUB_RESPONSES_TOPIC``              responses template, ``gcp.pubsub.responsesTopic``
``BRIDGE_HTTP_PORT``                           health and metrics
``BRIDGE_DRAIN_TIMEOUT_SECONDS``               ``gcp.bridge.drainTimeoutSeconds``
=============================================  ==========================================
"""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import (
    BRIDGE_COMMAND,
    BRIDGE_LIVENESS_PATH,
    BRIDGE_POD_LABELS,
    BRIDGE_READINESS_PATH,
    PART_OF,
    WORKLOAD_IDENTITY_ANNOTATION,
)
from iot_remote_access.constructs.gcp.pod_security import container_security, pod_security
from iot_remote_access.core.gcp_rules import validate_project_id, validate_service_account
from iot_remote_access.core.kubernetes_names import (
    ManifestValueError,
    validate_dns_label,
    validate_dns_subdomain,
    validate_image,
)
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModel
from iot_remote_access.settings.gcp import GcpSettings

CERT_DIR = "/etc/pubsub-bridge/tls"
#: The pod's termination grace period is the drain timeout plus this: time for the
#: bridge to disconnect and exit after its drain, before the kubelet sends SIGKILL.
GRACE_MARGIN_SECONDS = 30
_HTTP = "http"


class BridgeDeployment(Construct):
    """The bridge's StatefulSet with its ServiceAccount, headless Service, HPA and PDB.

    :param namespace: where everything lives.
    :param gcp: the ``gcp`` settings: project, Pub/Sub names and ``bridge``.
    :param topics: the device topic model.
    :param broker_host: the broker's bridge-listener Service name.
    :param broker_port: its port.
    :param name: the base name of every object. Default: ``pubsub-bridge``.
    :param thing_name_pattern: Default: AWS IoT's thing-name rule.
    :param command_responses: remote commands on: the bridge relays devices' responses
        to Pub/Sub. Default: off.
    :param pod_labels: the pods' labels (a second bridge, the rotation bridge, needs its
        own). Default: ``BRIDGE_POD_LABELS``.

    Attributes: ``service_account``, ``stateful_set``, ``service``,
    ``autoscaler``, ``disruption_budget``, ``pod_labels``, ``environment``
    (the plain ``BRIDGE_*`` values, name -> value).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        namespace: str,
        gcp: GcpSettings,
        topics: TopicModel,
        broker_host: str,
        broker_port: int,
        name: str = "pubsub-bridge",
        thing_name_pattern: str = THING_NAME_RULE,
        command_responses: bool = False,
        pod_labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.gcp = gcp
        self.command_responses = command_responses
        self.settings = gcp.bridge
        self.name = name
        self.namespace = namespace
        self._validate()
        self.pod_labels = dict(pod_labels or BRIDGE_POD_LABELS)
        self.environment = self._environment(topics, broker_host, broker_port, thing_name_pattern)
        self.service_account = self._service_account()
        self.service = self._service()
        self.stateful_set = self._stateful_set()
        self.autoscaler = self._autoscaler()
        self.disruption_budget = self._disruption_budget()

    # -- checks and metadata -------------------------------------------------------------

    def _validate(self) -> None:
        """The values that must not be wrong, again (settings may be built in code)."""
        s = self.settings
        validate_dns_label(self.namespace, field_name="hivemq.namespace")
        validate_dns_label(self.name, field_name="name")
        if s.image is None:
            raise ManifestValueError("gcp.bridge.image", "missing; allowed: a pinned image")
        validate_image(s.image, field_name="gcp.bridge.image")
        validate_service_account(s.service_account, field_name="gcp.bridge.serviceAccount")
        validate_dns_subdomain(
            s.client_certificate_secret, field_name="gcp.bridge.clientCertificateSecret"
        )
        validate_project_id(self.gcp.project_id, field_name="gcp.projectId")

    def _meta(self, annotations: dict[str, str] | None = None) -> k8s.ObjectMeta:
        return k8s.ObjectMeta(
            name=self.name,
            namespace=self.namespace,
            labels={**self.pod_labels, **PART_OF},
            annotations=annotations,
        )

    # -- environment -----------------------------------------------------------------------

    def _environment(
        self, topics: TopicModel, broker_host: str, broker_port: int, thing_name_pattern: str
    ) -> dict[str, str]:
        s, pubsub = self.settings, self.gcp.pubsub
        assert self.gcp.project_id is not None  # checked in _validate
        rendered = {
            "BRIDGE_PROJECT": self.gcp.project_id,
            "BRIDGE_MQTT_HOST": broker_host,
            "BRIDGE_MQTT_PORT": str(broker_port),
            "BRIDGE_MQTT_CERT_FILE": f"{CERT_DIR}/tls.crt",
            "BRIDGE_MQTT_KEY_FILE": f"{CERT_DIR}/tls.key",
            "BRIDGE_MQTT_CA_FILE": f"{CERT_DIR}/ca.crt",
            "BRIDGE_SHARE_GROUP": s.share_group,
            "BRIDGE_TELEMETRY_TOPIC": topics.telemetry,
            "BRIDGE_COMMANDS_TOPIC": topics.commands,
            "BRIDGE_THING_NAME_PATTERN": thing_name_pattern,
            "BRIDGE_PUBSUB_TELEMETRY_TOPIC": pubsub.telemetry_topic,
            "BRIDGE_PUBSUB_TELEMETRY_DEAD_LETTER_TOPIC": pubsub.telemetry_dead_letter_topic,
            "BRIDGE_PUBSUB_COMMANDS_SUBSCRIPTION": pubsub.bridge_subscription,
            "BRIDGE_PUBSUB_COMMANDS_DEAD_LETTER_TOPIC": pubsub.commands_dead_letter_topic,
            "BRIDGE_HTTP_PORT": str(s.http_port),
            "BRIDGE_DRAIN_TIMEOUT_SECONDS": str(s.drain_timeout_seconds),
        }
        if self.command_responses:
            rendered["BRIDGE_RESPONSES_TOPIC"] = topics.responses
            rendered["BRIDGE_PUBSUB_RESPONSES_TOPIC"] = pubsub.responses_topic
        for key in s.env:
            if key.upper() in rendered or key.upper() == "BRIDGE_MQTT_CLIENT_ID":
                raise ManifestValueError(
                    f"gcp.bridge.env.{key}",
                    "is set by gcp manifests from the settings (one name, one place); "
                    "allowed: other variables",
                )
        return {**rendered, **s.env}

    def _env_vars(self) -> list[k8s.EnvVar]:
        env = [k8s.EnvVar(name=key, value=value) for key, value in self.environment.items()]
        # The pod name: stable per replica (pubsub-bridge-0, -1, ...), so a replacement
        # resumes its predecessor's broker session.
        env.append(
            k8s.EnvVar(
                name="BRIDGE_MQTT_CLIENT_ID",
                value_from=k8s.EnvVarSource(
                    field_ref=k8s.ObjectFieldSelector(field_path="metadata.name")
                ),
            )
        )
        return env

    # -- volumes and container ------------------------------------------------------------

    def _volumes(self) -> list[k8s.Volume]:
        return [
            k8s.Volume(
                name="client-certificate",
                secret=k8s.SecretVolumeSource(
                    secret_name=self.settings.client_certificate_secret, default_mode=0o440
                ),
            ),
            k8s.Volume(
                name="tmp",
                empty_dir=k8s.EmptyDirVolumeSource(size_limit=k8s.Quantity.from_string("64Mi")),
            ),
        ]

    def _volume_mounts(self) -> list[k8s.VolumeMount]:
        return [
            k8s.VolumeMount(name="client-certificate", mount_path=CERT_DIR, read_only=True),
            k8s.VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108 - an emptyDir, not the host's /tmp
        ]

    def _resources(self) -> k8s.ResourceRequirements:
        s = self.settings
        return k8s.ResourceRequirements(
            requests={
                "cpu": k8s.Quantity.from_string(s.cpu_request),
                "memory": k8s.Quantity.from_string(s.memory_request),
            },
            limits={
                "cpu": k8s.Quantity.from_string(s.cpu_limit),
                "memory": k8s.Quantity.from_string(s.memory_limit),
            },
        )

    @staticmethod
    def _probes() -> tuple[k8s.Probe, k8s.Probe, k8s.Probe]:
        """Startup, liveness and readiness, on the paths bridge/health.py serves."""
        port = k8s.IntOrString.from_string(_HTTP)
        live = k8s.HttpGetAction(path=BRIDGE_LIVENESS_PATH, port=port)
        ready = k8s.HttpGetAction(path=BRIDGE_READINESS_PATH, port=port)
        return (
            # Up to 60 s to start (settings, TLS, first connection) before liveness counts.
            k8s.Probe(http_get=live, period_seconds=2, timeout_seconds=2, failure_threshold=30),
            k8s.Probe(http_get=live, period_seconds=10, timeout_seconds=2, failure_threshold=3),
            k8s.Probe(http_get=ready, period_seconds=5, timeout_seconds=2, failure_threshold=2),
        )

    def _container(self) -> k8s.Container:
        s = self.settings
        assert s.image is not None  # checked in _validate
        startup, liveness, readiness = self._probes()
        return k8s.Container(
            name="bridge",
            image=s.image,
            image_pull_policy="IfNotPresent",
            command=list(BRIDGE_COMMAND),
            env=self._env_vars(),
            ports=[k8s.ContainerPort(name=_HTTP, container_port=s.http_port)],
            resources=self._resources(),
            security_context=container_security(s.run_as_user),
            volume_mounts=self._volume_mounts(),
            startup_probe=startup,
            liveness_probe=liveness,
            readiness_probe=readiness,
        )

    # -- workload --------------------------------------------------------------------------

    def _pod_spec(self) -> k8s.PodSpec:
        s = self.settings
        return k8s.PodSpec(
            service_account_name=self.service_account.name,
            automount_service_account_token=False,
            # SIGTERM starts the drain; SIGKILL comes only after it had its time.
            termination_grace_period_seconds=s.drain_timeout_seconds + GRACE_MARGIN_SECONDS,
            security_context=pod_security(s.run_as_user),
            containers=[self._container()],
            volumes=self._volumes(),
            topology_spread_constraints=[
                k8s.TopologySpreadConstraint(
                    max_skew=1,
                    topology_key="topology.kubernetes.io/zone",
                    when_unsatisfiable="ScheduleAnyway",
                    label_selector=k8s.LabelSelector(match_labels=self.pod_labels),
                )
            ],
        )

    def _stateful_set(self) -> k8s.KubeStatefulSet:
        return k8s.KubeStatefulSet(
            self,
            "StatefulSet",
            metadata=self._meta(),
            spec=k8s.StatefulSetSpec(
                service_name=self.service.name,
                replicas=self.settings.replicas,
                # Replicas start and stop independently (no ordinal waits); rolling updates
                # still replace one pod at a time, each only after the previous is Ready.
                pod_management_policy="Parallel",
                update_strategy=k8s.StatefulSetUpdateStrategy(
                    type="RollingUpdate",
                    rolling_update=k8s.RollingUpdateStatefulSetStrategy(
                        partition=0, max_unavailable=k8s.IntOrString.from_number(1)
                    ),
                ),
                selector=k8s.LabelSelector(match_labels=self.pod_labels),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels={**self.pod_labels, **PART_OF}),
                    spec=self._pod_spec(),
                ),
            ),
        )

    # -- identity, service, scaling ---------------------------------------------------------

    def _service_account(self) -> k8s.KubeServiceAccount:
        return k8s.KubeServiceAccount(
            self,
            "ServiceAccount",
            metadata=self._meta({WORKLOAD_IDENTITY_ANNOTATION: self.settings.service_account}),
            # GKE Workload Identity serves tokens from the metadata server; the pod
            # needs no Kubernetes API token.
            automount_service_account_token=False,
        )

    def _service(self) -> k8s.KubeService:
        """Headless: the StatefulSet's governing Service, and per-pod metrics endpoints."""
        return k8s.KubeService(
            self,
            "Service",
            metadata=self._meta(),
            spec=k8s.ServiceSpec(
                type="ClusterIP",
                cluster_ip="None",
                selector=self.pod_labels,
                ports=[
                    k8s.ServicePort(
                        name=_HTTP,
                        port=self.settings.http_port,
                        target_port=k8s.IntOrString.from_string(_HTTP),
                        protocol="TCP",
                    )
                ],
            ),
        )

    def _autoscaler(self) -> k8s.KubeHorizontalPodAutoscalerV2:
        s = self.settings
        return k8s.KubeHorizontalPodAutoscalerV2(
            self,
            "Autoscaler",
            metadata=self._meta(),
            spec=k8s.HorizontalPodAutoscalerSpecV2(
                scale_target_ref=k8s.CrossVersionObjectReferenceV2(
                    api_version="apps/v1", kind="StatefulSet", name=self.stateful_set.name
                ),
                min_replicas=s.replicas,
                max_replicas=s.max_replicas,
                metrics=[
                    k8s.MetricSpecV2(
                        type="Resource",
                        resource=k8s.ResourceMetricSourceV2(
                            name="cpu",
                            target=k8s.MetricTargetV2(
                                type="Utilization", average_utilization=s.target_cpu_utilization
                            ),
                        ),
                    )
                ],
                # Every scale-down is a drain: one replica a minute, after 5 quiet minutes.
                behavior=k8s.HorizontalPodAutoscalerBehaviorV2(
                    scale_down=k8s.HpaScalingRulesV2(
                        stabilization_window_seconds=300,
                        policies=[k8s.HpaScalingPolicyV2(type="Pods", value=1, period_seconds=60)],
                    )
                ),
            ),
        )

    def _disruption_budget(self) -> k8s.KubePodDisruptionBudget:
        return k8s.KubePodDisruptionBudget(
            self,
            "DisruptionBudget",
            metadata=self._meta(),
            spec=k8s.PodDisruptionBudgetSpec(
                max_unavailable=k8s.IntOrString.from_number(1),
                selector=k8s.LabelSelector(match_labels=self.pod_labels),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
        )
