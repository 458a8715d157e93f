"""Teleport on GKE: the namespace, NetworkPolicies, the chart's values and the access rules.

What ``gcp manifests`` renders for ``gcp.accessProxy``:

- Kubernetes objects (this construct): the namespace (Pod Security ``restricted``
  enforced: the chart's distroless pods meet it) and NetworkPolicies: deny all
  traffic by default, then TLS 443 into the proxy (devices' agents and operators),
  the auth API (3025) from the proxy only, DNS, HTTPS out (Firestore, Cloud
  Storage, the proxy's reverse tunnels), the diagnostics port from a monitoring
  namespace;
- ``values`` for the ``teleport-cluster`` Helm chart: ``chartMode: gcp``
  (cluster state in Firestore, audit events in Firestore *and* on stdout for
  Cloud Logging, session recordings in Cloud Storage), Workload Identity (no
  key file: ``credentialSecretName: ""`` and the Google service account on the
  Kubernetes service account), one TLS port (``proxyListenerMode: multiplex``);
- ``resources``: the Teleport roles of the access rules (``tctl create -f``).
"""

from __future__ import annotations

from typing import Any

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import PART_OF, WORKLOAD_IDENTITY_ANNOTATION
from iot_remote_access.core.kubernetes_names import split_image
from iot_remote_access.settings.gcp_access import GcpAccessProxySettings

TELEPORT_CHART = "teleport/teleport-cluster"
PROXY_PORT = 443
AUTH_PORT = 3025
DIAGNOSTICS_PORT = 3000
_NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
METADATA_ADDRESS = "169.254.169.254"
METADATA_SERVER_ADDRESSES = ("169.254.169.252", "127.0.0.1")
METADATA_SERVER_PORT = 988


def pod_labels(release: str, component: str) -> dict[str, str]:
    """The chart's selector labels for the auth or proxy pods."""
    return {
        "app.kubernetes.io/name": "teleport-cluster",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
    }


class TeleportCluster(Construct):
    """Namespace and NetworkPolicies as objects; Helm ``values`` and Teleport ``resources``.

    :param project: the Google Cloud project (Firestore, Cloud Storage, Cloud Logging).
    :param settings: the ``gcp.accessProxy`` section (already validated).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        settings: GcpAccessProxySettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.namespace = settings.namespace
        self.auth_labels = pod_labels(settings.release_name, "auth")
        self.proxy_labels = pod_labels(settings.release_name, "proxy")
        k8s.KubeNamespace(
            self,
            "Namespace",
            metadata=k8s.ObjectMeta(
                name=self.namespace,
                labels={
                    **PART_OF,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
        )
        self._network_policies()
        self.values = self._values(project)
        self.resources: list[dict[str, Any]] = settings.resources()

    # -- NetworkPolicies ------------------------------------------------------------

    def _policy(self, name: str, spec: k8s.NetworkPolicySpec) -> None:
        k8s.KubeNetworkPolicy(
            self,
            name,
            metadata=k8s.ObjectMeta(name=name, namespace=self.namespace, labels=PART_OF),
            spec=spec,
        )

    def _network_policies(self) -> None:
        everyone = k8s.LabelSelector()
        self._policy(
            "teleport-default-deny",
            k8s.NetworkPolicySpec(pod_selector=everyone, policy_types=["Ingress", "Egress"]),
        )
        self._policy(
            "teleport-proxy-tls-in",
            k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=self.proxy_labels),
                policy_types=["Ingress"],
                ingress=[k8s.NetworkPolicyIngressRule(ports=[_tcp(PROXY_PORT)])],
            ),
        )
        self._policy(
            "teleport-auth-from-proxy",
            k8s.NetworkPolicySpec(
                pod_selector=k8s.LabelSelector(match_labels=self.auth_labels),
                policy_types=["Ingress"],
                ingress=[
                    k8s.NetworkPolicyIngressRule(
                        from_=[
                            k8s.NetworkPolicyPeer(
                                pod_selector=k8s.LabelSelector(match_labels=self.proxy_labels)
                            ),
                            k8s.NetworkPolicyPeer(
                                pod_selector=k8s.LabelSelector(match_labels=self.auth_labels)
                            ),
                        ],
                        ports=[_tcp(AUTH_PORT)],
                    )
                ],
            ),
        )
        self._policy(
            "teleport-egress",
            k8s.NetworkPolicySpec(
                pod_selector=everyone,
                policy_types=["Egress"],
                egress=[
                    # DNS, then TLS only: Google APIs, the auth API, reverse tunnels.
                    k8s.NetworkPolicyEgressRule(ports=[_udp(53), _tcp(53)]),
                    k8s.NetworkPolicyEgressRule(ports=[_tcp(443), _tcp(AUTH_PORT)]),
                    # The GKE metadata server, which hands out Workload Identity tokens:
                    # 169.254.169.254:80 as pods see it, :988 where GKE serves it
                    # (169.254.169.252 with Dataplane V2, 127.0.0.1 without).
                    k8s.NetworkPolicyEgressRule(
                        to=[_host(METADATA_ADDRESS)],
                        ports=[_tcp(80)],
                    ),
                    k8s.NetworkPolicyEgressRule(
                        to=[_host(address) for address in METADATA_SERVER_ADDRESSES],
                        ports=[_tcp(METADATA_SERVER_PORT)],
                    ),
                ],
            ),
        )
        monitoring = self.settings.monitoring_namespace
        if monitoring:
            self._policy(
                "teleport-diagnostics-from-monitoring",
                k8s.NetworkPolicySpec(
                    pod_selector=everyone,
                    policy_types=["Ingress"],
                    ingress=[
                        k8s.NetworkPolicyIngressRule(
                            from_=[
                                k8s.NetworkPolicyPeer(
                                    namespace_selector=k8s.LabelSelector(
                                        match_labels={_NAMESPACE_NAME_LABEL: monitoring}
                                    )
                                )
                            ],
                            ports=[_tcp(DIAGNOSTICS_PORT)],
                        )
                    ],
                ),
            )

    # -- Helm values ----------------------------------------------------------------

    def _values(self, project: str) -> dict[str, Any]:
        settings = self.settings
        repository, _, _ = split_image(settings.image)
        security = {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        return {
            "clusterName": settings.cluster_name,
            "chartMode": "gcp",
            # One TLS listener for web, SSH, reverse tunnels and the auth API through the proxy.
            "proxyListenerMode": "multiplex",
            "image": repository,
            "imagePullPolicy": "IfNotPresent",
            "gcp": {
                "projectId": project,
                "backendTable": settings.backend_collection,
                "auditLogTable": settings.audit_collection,
                # Audit events also as JSON on stdout: Cloud Logging -> metrics, alerts, SIEM.
                "auditLogMirrorOnStdout": True,
                "sessionRecordingBucket": settings.recordings_bucket,
                # Empty: no key file, Workload Identity gives the pods Google credentials.
                "credentialSecretName": "",
            },
            "serviceAccount": {"create": True, "name": settings.release_name},
            "annotations": {
                "serviceAccount": {WORKLOAD_IDENTITY_ANNOTATION: settings.service_account},
            },
            "authentication": {"type": "local", "localAuth": True, "secondFactor": "webauthn"},
            "highAvailability": {"replicaCount": 2, "requireAntiAffinity": True},
            "podSecurityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "securityContext": security,
            "resources": {
                "requests": {"cpu": "500m", "memory": "512Mi"},
                "limits": {"memory": "1Gi"},
            },
            "log": {"level": "INFO", "format": "json", "output": "stderr"},
        }

    @property
    def image_digest(self) -> str:
        _, _, digest = split_image(self.settings.image)
        assert digest is not None  # the settings refuse an image without one
        return digest

    @property
    def kustomization(self) -> dict[str, Any]:
        """For the Helm post-renderer: the chart writes ``IMAGE:TAG`` and has no digest
        value, so kustomize's images transformer sets the digest on every container."""
        repository, _, _ = split_image(self.settings.image)
        return {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["helm-output.yaml"],
            "images": [{"name": repository, "digest": self.image_digest}],
        }


def _tcp(port: int) -> k8s.NetworkPolicyPort:
    return k8s.NetworkPolicyPort(port=k8s.IntOrString.from_number(port), protocol="TCP")


def _udp(port: int) -> k8s.NetworkPolicyPort:
    return k8s.NetworkPolicyPort(port=k8s.IntOrString.from_number(port), protocol="UDP")


def _host(address: str) -> k8s.NetworkPolicyPeer:
    return k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=f"{address}/32"))
