"""The MQTT <-> Pub/Sub bridge on GKE: Deployment, autoscaler, disruption budget, identity.

The bridge connects to HiveMQ's internal mTLS listener with its own client
certificate (mounted from a Secret), reaches Pub/Sub as a Google service
account through Workload Identity (no key file), and exposes liveness,
readiness and Prometheus metrics on one HTTP port. It runs non-root with a
read-only root filesystem, no privilege escalation and no capabilities.

Environment the container gets (the bridge reads its settings from these):

=================================  =============================================
``BRIDGE_MQTT_HOST``/``_PORT``     the broker's bridge listener Service
``BRIDGE_MQTT_CLIENT_ID``          the pod name (unique per replica)
``BRIDGE_MQTT_CERT_FILE``,         the mounted client certificate, key and the
``_KEY_FILE``, ``_CA_FILE``        CA that signed the broker's certificate
``BRIDGE_SHARED_GROUP``            the shared-subscription group
``BRIDGE_TELEMETRY_TOPIC``,        the topic model's templates (``{thing}``)
``BRIDGE_COMMANDS_TOPIC``
``BRIDGE_THING_NAME_PATTERN``      the fleet's thing-name pattern
``BRIDGE_PUBSUB_PROJECT``,         where telemetry goes and commands come from
``_TELEMETRY_TOPIC``,
``_COMMANDS_SUBSCRIPTION``
``BRIDGE_HTTP_PORT``               health and metrics
=================================  =============================================
"""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import (
    BRIDGE_POD_LABELS,
    PART_OF,
    WORKLOAD_IDENTITY_ANNOTATION,
)
from iot_remote_access.core.gcp_rules import validate_service_account
from iot_remote_access.core.kubernetes_names import (
    validate_dns_label,
    validate_dns_subdomain,
    validate_image,
)
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModel
from iot_remote_access.settings.hivemq import BridgeDeploymentSettings, PubsubRouteSettings

CERT_DIR = "/etc/pubsub-bridge/tls"


class BridgeDeployment(Construct):
    """The bridge's Deployment with its ServiceAccount, metrics Service, HPA and PDB.

    :param namespace: where everything lives.
    :param name: the base name of every object. Default: ``pubsub-bridge``.
    :param settings: the ``hivemq.bridge`` settings.
    :param pubsub: the Pub/Sub topic and subscription.
    :param topics: the device topic model.
    :param broker_host: the broker's bridge-listener Service name.
    :param broker_port: its port.
    :param thing_name_pattern: Default: AWS IoT's thing-name rule.

    Attributes: ``service_account``, ``deployment``, ``service``,
    ``autoscaler``, ``disruption_budget``, ``pod_labels``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        namespace: str,
        settings: BridgeDeploymentSettings,
        pubsub: PubsubRouteSettings,
        topics: TopicModel,
        broker_host: str,
        broker_port: int,
        name: str = "pubsub-bridge",
        thing_name_pattern: str = THING_NAME_RULE,
    ) -> None:
        super().__init__(scope, construct_id)
        validate_dns_label(namespace, field_name="hivemq.namespace")
        validate_dns_label(name, field_name="name")
        validate_image(settings.image, field_name="hivemq.bridge.image")
        validate_service_account(
            settings.google_service_account, field_name="hivemq.bridge.googleServiceAccount"
        )
        validate_dns_subdomain(
            settings.client_certificate_secret, field_name="hivemq.bridge.clientCertificateSecret"
        )
        self.pod_labels = dict(BRIDGE_POD_LABELS)
        labels = {**self.pod_labels, **PART_OF}

        def meta(annotations: dict[str, str] | None = None) -> k8s.ObjectMeta:
            return k8s.ObjectMeta(
                name=name, namespace=namespace, labels=labels, annotations=annotations
            )

        self.service_account = k8s.KubeServiceAccount(
            self,
            "ServiceAccount",
            metadata=meta({WORKLOAD_IDENTITY_ANNOTATION: settings.google_service_account}),
            # GKE Workload Identity serves tokens from the metadata server; the pod
            # needs no Kubernetes API token.
            automount_service_account_token=False,
        )
        env = {
            "BRIDGE_MQTT_HOST": broker_host,
            "BRIDGE_MQTT_PORT": str(broker_port),
            "BRIDGE_MQTT_CERT_FILE": f"{CERT_DIR}/tls.crt",
            "BRIDGE_MQTT_KEY_FILE": f"{CERT_DIR}/tls.key",
            "BRIDGE_MQTT_CA_FILE": f"{CERT_DIR}/ca.crt",
            "BRIDGE_SHARED_GROUP": settings.shared_group,
            "BRIDGE_TELEMETRY_TOPIC": topics.telemetry,
            "BRIDGE_COMMANDS_TOPIC": topics.commands,
            "BRIDGE_THING_NAME_PATTERN": thing_name_pattern,
            "BRIDGE_PUBSUB_PROJECT": pubsub.project_id,
            "BRIDGE_PUBSUB_TELEMETRY_TOPIC": pubsub.telemetry_topic,
            "BRIDGE_PUBSUB_COMMANDS_SUBSCRIPTION": pubsub.commands_subscription,
            "BRIDGE_HTTP_PORT": str(settings.http_port),
            **settings.env,
        }
        env_vars = [k8s.EnvVar(name=key, value=value) for key, value in env.items()]
        env_vars.append(
            k8s.EnvVar(
                name="BRIDGE_MQTT_CLIENT_ID",
                value_from=k8s.EnvVarSource(
                    field_ref=k8s.ObjectFieldSelector(field_path="metadata.name")
                ),
            )
        )
        http = k8s.IntOrString.from_string("http")
        container = k8s.Container(
            name="bridge",
            image=settings.image,
            image_pull_policy="IfNotPresent",
            env=env_vars,
            ports=[k8s.ContainerPort(name="http", container_port=settings.http_port)],
            resources=k8s.ResourceRequirements(
                requests={
                    "cpu": k8s.Quantity.from_string(settings.cpu_request),
                    "memory": k8s.Quantity.from_string(settings.memory_request),
                },
                limits={
                    "cpu": k8s.Quantity.from_string(settings.cpu_limit),
                    "memory": k8s.Quantity.from_string(settings.memory_limit),
                },
            ),
            liveness_probe=k8s.Probe(
                http_get=k8s.HttpGetAction(path=settings.liveness_path, port=http),
                period_seconds=10,
                timeout_seconds=2,
                failure_threshold=3,
            ),
            readiness_probe=k8s.Probe(
                http_get=k8s.HttpGetAction(path=settings.readiness_path, port=http),
                period_seconds=5,
                timeout_seconds=2,
                failure_threshold=2,
            ),
            startup_probe=k8s.Probe(
                http_get=k8s.HttpGetAction(path=settings.liveness_path, port=http),
                period_seconds=2,
                failure_threshold=30,
            ),
            security_context=k8s.SecurityContext(
                run_as_non_root=True,
                run_as_user=settings.run_as_user,
                run_as_group=settings.run_as_user,
                allow_privilege_escalation=False,
                privileged=False,
                read_only_root_filesystem=True,
                capabilities=k8s.Capabilities(drop=["ALL"]),
                seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
            ),
            volume_mounts=[
                k8s.VolumeMount(name="client-certificate", mount_path=CERT_DIR, read_only=True),
                k8s.VolumeMount(name="tmp", mount_path="/tmp"),  # noqa: S108 - an emptyDir, not the host's /tmp
            ],
        )
        self.deployment = k8s.KubeDeployment(
            self,
            "Deployment",
            metadata=meta(),
            spec=k8s.DeploymentSpec(
                replicas=settings.replicas,
                selector=k8s.LabelSelector(match_labels=self.pod_labels),
                strategy=k8s.DeploymentStrategy(
                    type="RollingUpdate",
                    rolling_update=k8s.RollingUpdateDeployment(
                        max_unavailable=k8s.IntOrString.from_number(0),
                        max_surge=k8s.IntOrString.from_number(1),
                    ),
                ),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=labels),
                    spec=k8s.PodSpec(
                        service_account_name=self.service_account.name,
                        automount_service_account_token=False,
                        # Graceful shutdown drains in-flight messages before the pod goes.
                        termination_grace_period_seconds=60,
                        security_context=k8s.PodSecurityContext(
                            run_as_non_root=True,
                            run_as_user=settings.run_as_user,
                            run_as_group=settings.run_as_user,
                            fs_group=settings.run_as_user,
                            seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
                        ),
                        containers=[container],
                        volumes=[
                            k8s.Volume(
                                name="client-certificate",
                                secret=k8s.SecretVolumeSource(
                                    secret_name=settings.client_certificate_secret,
                                    default_mode=0o440,
                                ),
                            ),
                            k8s.Volume(
                                name="tmp",
                                empty_dir=k8s.EmptyDirVolumeSource(
                                    size_limit=k8s.Quantity.from_string("64Mi")
                                ),
                            ),
                        ],
                        topology_spread_constraints=[
                            k8s.TopologySpreadConstraint(
                                max_skew=1,
                                topology_key="topology.kubernetes.io/zone",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=k8s.LabelSelector(match_labels=self.pod_labels),
                            )
                        ],
                    ),
                ),
            ),
        )
        self.service = k8s.KubeService(
            self,
            "MetricsService",
            metadata=meta(),
            spec=k8s.ServiceSpec(
                type="ClusterIP",
                selector=self.pod_labels,
                ports=[
                    k8s.ServicePort(
                        name="http", port=settings.http_port, target_port=http, protocol="TCP"
                    )
                ],
            ),
        )
        self.autoscaler = k8s.KubeHorizontalPodAutoscalerV2(
            self,
            "Autoscaler",
            metadata=meta(),
            spec=k8s.HorizontalPodAutoscalerSpecV2(
                scale_target_ref=k8s.CrossVersionObjectReferenceV2(
                    api_version="apps/v1", kind="Deployment", name=self.deployment.name
                ),
                min_replicas=settings.replicas,
                max_replicas=settings.max_replicas,
                metrics=[
                    k8s.MetricSpecV2(
                        type="Resource",
                        resource=k8s.ResourceMetricSourceV2(
                            name="cpu",
                            target=k8s.MetricTargetV2(
                                type="Utilization",
                                average_utilization=settings.target_cpu_utilization,
                            ),
                        ),
                    )
                ],
            ),
        )
        self.disruption_budget = k8s.KubePodDisruptionBudget(
            self,
            "DisruptionBudget",
            metadata=meta(),
            spec=k8s.PodDisruptionBudgetSpec(
                max_unavailable=k8s.IntOrString.from_number(1),
                selector=k8s.LabelSelector(match_labels=self.pod_labels),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
        )
