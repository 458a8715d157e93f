"""HiveMQ on GKE through the HiveMQ Platform Operator's ``hivemq-platform`` Helm chart.

The construct renders two things: Kubernetes objects (the Enterprise Security
Extension's ConfigMap, the Pub/Sub extension's ConfigMap and service account
when that integration is chosen) and ``values``, the chart's values, which
the CLI writes as ``hivemq-values.yaml`` for ``helm install`` or an Argo CD
Helm source. Why the chart's values rather than a hand-written
``HivemqPlatform`` resource: see docs/gcp.md ("Why the Helm chart's values").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import (
    BRIDGE_LISTENER_NAME,
    BRIDGE_LISTENER_PORT,
    DEVICE_LISTENER_NAME,
    DEVICE_LISTENER_PORT,
    HIVEMQ_METRICS_PORT,
    HIVEMQ_POD_LABELS,
    PART_OF,
    WORKLOAD_IDENTITY_ANNOTATION,
)
from iot_remote_access.core.hivemq_device_realm import (
    REALM_CHECKSUM_ANNOTATION,
    BridgeIdentity,
    DeviceRealmError,
    ese_config_map_name,
    ese_files,
    realm_checksum,
    rotation_bridge_identity,
)
from iot_remote_access.core.hivemq_pubsub import (
    PUBSUB_CONFIG_FILE,
    PUBSUB_EXTENSION_NAME,
    PubsubRoutes,
    render_pubsub_extension_config,
)
from iot_remote_access.core.kubernetes_names import (
    ManifestValueError,
    validate_dns_label,
    validate_dns_subdomain,
    validate_image_tag,
)
from iot_remote_access.core.topics import THING_NAME_RULE, DeviceAccess
from iot_remote_access.settings.gcp import GcpSettings
from iot_remote_access.settings.hivemq import HivemqSettings

ESE_EXTENSION_NAME = "hivemq-enterprise-security-extension"
ALLOW_ALL_EXTENSION_NAME = "hivemq-allow-all-extension"
#: The official image runs as uid 10000, gid 0 (HiveMQ's documented defaults).
HIVEMQ_UID = 10000
DATA_VOLUME = "hivemq-data"


class HivemqPlatform(Construct):
    """The broker: hardened Helm values plus the extension configuration they reference.

    :param namespace: where the release and the ConfigMaps live.
    :param settings: the ``hivemq`` settings section.
    :param gcp: the ``gcp`` section: the project, the Pub/Sub names and the bridge's
        identity and share group (the bridge's permissions are rendered for exactly these).
    :param access: the device topic model and switches (rotation) the permissions come from.
    :param thing_name_pattern: passed to a commands transformer (extension integration).
        Default: AWS IoT's thing-name rule.
    :param things: with ``deviceBinding: certificate``, the things the devices realm lists
        (one user each). Default: none, an empty realm in which no device gets anything.

    Attributes: ``values`` (the chart's values), ``ese_config_map``,
    ``pubsub_config_map`` and ``service_account`` (``None`` unless the Pub/Sub
    extension is on), ``device_service_name``, ``bridge_service_name``
    (``None`` without the bridge), ``pod_labels``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        namespace: str,
        settings: HivemqSettings,
        gcp: GcpSettings,
        access: DeviceAccess,
        thing_name_pattern: str = THING_NAME_RULE,
        things: Iterable[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        _validate(namespace, settings)
        self.namespace = namespace
        self.settings = settings
        self.gcp = gcp
        release = settings.release_name
        self.pod_labels = dict(HIVEMQ_POD_LABELS)
        self.device_service_name = f"{release}-mqtt-devices"
        with_bridge = settings.integration == "bridge"
        self.bridge_service_name: str | None = f"{release}-mqtt-bridge" if with_bridge else None

        files = self._ese_files(access, with_bridge, tuple(things))
        #: SHA-256 of the devices realm, on the ConfigMap and the broker pods (see values).
        self.realm_checksum = realm_checksum(files)
        self.ese_config_map = k8s.KubeConfigMap(
            self,
            "EseConfig",
            metadata=self._meta(
                ese_config_map_name(release),
                annotations={REALM_CHECKSUM_ANNOTATION: self.realm_checksum},
            ),
            data=files,
        )

        self.service_account: k8s.KubeServiceAccount | None = None
        self.pubsub_config_map: k8s.KubeConfigMap | None = None
        if settings.integration == "extension":
            extension = settings.extension
            assert extension is not None  # guaranteed by HivemqSettings
            self.service_account = k8s.KubeServiceAccount(
                self,
                "ServiceAccount",
                metadata=self._meta(
                    f"{release}-hivemq",
                    annotations={WORKLOAD_IDENTITY_ANNOTATION: extension.google_service_account},
                ),
            )
            if gcp.project_id is None:
                raise ManifestValueError("gcp.projectId", "missing; allowed: a project id")
            routes = PubsubRoutes(
                project_id=gcp.project_id,
                telemetry_topic=gcp.pubsub.telemetry_topic,
                commands_subscription=gcp.pubsub.bridge_subscription,
                commands_transformer=extension.commands_transformer,
                thing_name_pattern=thing_name_pattern,
            )
            self.pubsub_config_map = k8s.KubeConfigMap(
                self,
                "PubsubExtensionConfig",
                metadata=self._meta(f"{release}-pubsub-extension-config"),
                data={PUBSUB_CONFIG_FILE: render_pubsub_extension_config(access.topics, routes)},
            )
        self.values = self._values()

    def _meta(self, name: str, *, annotations: dict[str, str] | None = None) -> k8s.ObjectMeta:
        return k8s.ObjectMeta(
            name=name, namespace=self.namespace, labels=dict(PART_OF), annotations=annotations
        )

    def _ese_files(
        self, access: DeviceAccess, with_bridge: bool, things: tuple[str, ...]
    ) -> dict[str, str]:
        bridge = self.gcp.bridge
        try:
            return ese_files(
                access,
                binding=self.settings.device_binding,
                fleet_ca_names=self.settings.tls.fleet_ca_common_names,
                bridge=BridgeIdentity(bridge.identity, bridge.share_group) if with_bridge else None,
                things=things,
                rotation_bridge=rotation_bridge_identity(self.gcp) if with_bridge else None,
            )
        except DeviceRealmError as error:
            raise ManifestValueError("hivemq.deviceBinding", str(error)) from None

    # -- Helm values --------------------------------------------------------------

    def _values(self) -> dict[str, Any]:
        s = self.settings
        license_values: dict[str, Any] = {"create": False}
        if s.license_secret is not None:
            license_values["name"] = s.license_secret
        return {
            "image": {
                "repository": s.image_repository,
                "name": "hivemq4",
                "tag": s.image_tag,
                "pullPolicy": "IfNotPresent",
            },
            "nodes": self._nodes(),
            "podScheduling": {"affinity": self._affinity()},
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
            "services": self._services(),
            "extensions": self._extensions(),
            # Also off by name, so a values file layered on top cannot re-enable it by
            # replacing the extensions list.
            "extensionMap": {ALLOW_ALL_EXTENSION_NAME: {"enabled": False}},
            "license": license_values,
            "metrics": {"enabled": True, "port": HIVEMQ_METRICS_PORT, "path": "/"},
            # HiveMQ's default keeps 1,000 messages per client; the bridge's share group
            # queues every device's telemetry while the bridge is away.
            "hivemqMqtt": {
                "queuedMessagesMaxSize": s.queued_messages_max_size,
                "queuedMessagesStrategy": s.queued_messages_strategy,
            },
            "hivemqMqttSecurity": {
                # An empty client id would get a random one, and the permissions
                # are written for the client id: devices must send their name.
                "allowEmptyClientId": False,
                "utf8Validation": True,
            },
            "hivemqRestrictions": {
                # Thing names are at most 128 characters and topics at most 256 bytes.
                "maxClientIdLength": 128,
                "maxTopicLength": 256,
            },
            **self._storage(),
            # The chart's test pods connect without TLS: with mTLS only they can only fail.
            "testing": {"enabled": False},
            "telemetry": {"anonymousUsageStatistics": {"enabled": False}},
            "monitoring": {"enabled": False},
        }

    def _services(self) -> list[dict[str, Any]]:
        services = [
            self._tls_listener(
                name=self.device_service_name,
                listener=DEVICE_LISTENER_NAME,
                port=DEVICE_LISTENER_PORT,
                service_type="LoadBalancer",
            )
        ]
        if self.bridge_service_name is not None:
            services.append(
                self._tls_listener(
                    name=self.bridge_service_name,
                    listener=BRIDGE_LISTENER_NAME,
                    port=BRIDGE_LISTENER_PORT,
                    service_type="ClusterIP",
                )
            )
        return services

    def _extensions(self) -> list[dict[str, Any]]:
        extensions: list[dict[str, Any]] = [
            # Explicitly off: the chart enables it by default, and it lets every client in.
            {"name": ALLOW_ALL_EXTENSION_NAME, "enabled": False},
            {
                "name": ESE_EXTENSION_NAME,
                "enabled": True,
                "configMapName": self.ese_config_map.name,
                "supportsHotReload": False,
                # HiveMQ must not run without its security extension.
                "startMandatory": True,
            },
        ]
        if self.pubsub_config_map is not None:
            extensions.append(
                {
                    "name": PUBSUB_EXTENSION_NAME,
                    "enabled": True,
                    "configMapName": self.pubsub_config_map.name,
                    "supportsHotReload": True,
                }
            )
        return extensions

    def _nodes(self) -> dict[str, Any]:
        s = self.settings
        nodes: dict[str, Any] = {
            "replicaCount": s.nodes.replicas,
            "logLevel": "INFO",
            "resources": {"cpu": s.nodes.cpu, "memory": s.nodes.memory},
            "labels": {**self.pod_labels, **PART_OF},
            # A new devices realm changes the pod template, so the operator rolls the pods
            # and ESE reads the new file (docs/gcp.md, Device realm).
            "annotations": {REALM_CHECKSUM_ANNOTATION: self.realm_checksum},
            "podSecurityContext": {
                "enabled": True,
                "runAsNonRoot": True,
                "runAsUser": HIVEMQ_UID,
                "runAsGroup": 0,
                # The data volume must be writable by group 0 (HiveMQ's image convention).
                "fsGroup": 0,
            },
            "containerSecurityContext": {
                "runAsNonRoot": True,
                "runAsUser": HIVEMQ_UID,
                "runAsGroup": 0,
            },
        }
        if self.service_account is not None:
            nodes["serviceAccountName"] = self.service_account.name
        return nodes

    def _storage(self) -> dict[str, Any]:
        s = self.settings
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": s.nodes.storage_size}},
        }
        if s.nodes.storage_class is not None:
            claim_spec["storageClassName"] = s.nodes.storage_class
        return {
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": DATA_VOLUME},
                    "spec": claim_spec,
                }
            ],
            "additionalVolumes": [
                {"type": "persistentVolumeClaim", "name": DATA_VOLUME, "path": "/opt/hivemq/data"}
            ],
        }

    def _tls_listener(
        self, *, name: str, listener: str, port: int, service_type: str
    ) -> dict[str, Any]:
        s = self.settings
        service: dict[str, Any] = {
            "type": "mqtt",
            "name": name,
            "exposed": True,
            "containerPort": port,
            "port": port,
            "serviceType": service_type,
            "hivemqListenerName": listener,
            "keystoreSecretName": s.tls.server_keystore_secret,
            "keystoreSecretKey": "keystore",
            "keystorePasswordSecretName": s.tls.server_keystore_password_secret,
            "keystorePasswordSecretKey": "keystore.password",
            "truststoreSecretName": s.tls.fleet_ca_secret,
            "truststoreSecretKey": "truststore",
            "truststorePasswordSecretName": s.tls.fleet_ca_password_secret,
            "truststorePasswordSecretKey": "truststore.password",
            "tlsClientAuthenticationMode": "REQUIRED",
            "tlsProtocols": list(s.tls.protocols),
            "tlsCipherSuites": list(s.tls.cipher_suites),
            "labels": dict(PART_OF),
        }
        if service_type == "LoadBalancer":
            service["externalTrafficPolicy"] = s.listener.external_traffic_policy
            if s.listener.internal_load_balancer:
                service["annotations"] = {"networking.gke.io/load-balancer-type": "Internal"}
        return service

    def _affinity(self) -> dict[str, Any]:
        selector = {"matchLabels": dict(self.pod_labels)}
        zone = {"labelSelector": selector, "topologyKey": "topology.kubernetes.io/zone"}
        host = {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}
        if self.settings.nodes.zone_spread == "required":
            return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [zone]}}
        return {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [host],
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": zone}
                ],
            }
        }


def _validate(namespace: str, settings: HivemqSettings) -> None:
    """The values that must not be wrong, checked again at synth (settings may be built in code)."""
    validate_dns_label(namespace, field_name="hivemq.namespace")
    tls = settings.tls
    for field_name, value in (
        ("hivemq.tls.serverKeystoreSecret", tls.server_keystore_secret),
        ("hivemq.tls.serverKeystorePasswordSecret", tls.server_keystore_password_secret),
        ("hivemq.tls.fleetCaSecret", tls.fleet_ca_secret),
        ("hivemq.tls.fleetCaPasswordSecret", tls.fleet_ca_password_secret),
    ):
        validate_dns_subdomain(value, field_name=field_name)
    if settings.license_secret is not None:
        validate_dns_subdomain(settings.license_secret, field_name="hivemq.licenseSecret")
    validate_image_tag(settings.image_tag, field_name="hivemq.imageTag")
