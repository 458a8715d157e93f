"""Ingress NetworkPolicies for the broker's namespace: deny by default, then exactly these paths.

- devices -> the device listener (any source: devices come through the load balancer);
- the bridge pods -> the bridge listener;
- broker pods <-> broker pods (cluster transport);
- optionally, a monitoring namespace -> metrics ports, and the HiveMQ
  Platform Operator's namespace -> the broker pods.

Nothing else reaches any pod in the namespace. Kubelet health probes come
from the node and are not subject to these policies on GKE.
"""

from __future__ import annotations

from cdk8s_plus_33 import k8s
from constructs import Construct

from iot_remote_access.constructs.gcp.labels import PART_OF
from iot_remote_access.core.kubernetes_names import validate_dns_label

_NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class NetworkPolicies(Construct):
    """Default-deny ingress plus one policy per allowed path.

    :param namespace: the namespace the policies protect (every pod in it).
    :param hivemq_pod_labels: labels selecting the broker pods.
    :param device_port: the device listener's port.
    :param hivemq_metrics_port: the broker's Prometheus port.
    :param bridge_pod_labels: labels selecting the bridge pods. Default: no bridge.
    :param bridge_listener_port: the broker's bridge listener port (with the bridge).
    :param bridge_http_port: the bridge's health/metrics port (with the bridge).
    :param monitoring_namespace: may scrape metrics. Default: none.
    :param operator_namespace: may reach the broker pods. Default: none.
    :param rotation_bridge_pod_labels: labels of the rotation bridge's pods, which reach
        the bridge listener too (with the bridge). Default: no rotation bridge.

    Attribute ``policies``: name -> KubeNetworkPolicy.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        namespace: str,
        hivemq_pod_labels: dict[str, str],
        device_port: int,
        hivemq_metrics_port: int,
        bridge_pod_labels: dict[str, str] | None = None,
        bridge_listener_port: int | None = None,
        bridge_http_port: int | None = None,
        monitoring_namespace: str | None = None,
        operator_namespace: str | None = None,
        rotation_bridge_pod_labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        validate_dns_label(namespace, field_name="hivemq.namespace")
        if (bridge_pod_labels is None) != (bridge_listener_port is None):
            raise ValueError(
                f"bridge_pod_labels {bridge_pod_labels!r} and bridge_listener_port "
                f"{bridge_listener_port!r}: allowed: both set (with the bridge) or neither"
            )
        _validate_namespaces(monitoring_namespace, operator_namespace)
        self.namespace = namespace
        self.policies: dict[str, k8s.KubeNetworkPolicy] = {}
        hivemq = k8s.LabelSelector(match_labels=hivemq_pod_labels)

        self._policy("default-deny-ingress", k8s.LabelSelector(), [])
        self._policy(
            "hivemq-allow-devices",
            hivemq,
            [k8s.NetworkPolicyIngressRule(ports=[_tcp(device_port)])],
        )
        self._policy(
            "hivemq-allow-cluster",
            hivemq,
            [k8s.NetworkPolicyIngressRule(from_=[k8s.NetworkPolicyPeer(pod_selector=hivemq)])],
        )
        if bridge_pod_labels is not None and bridge_listener_port is not None:
            bridges = {"hivemq-allow-bridge": bridge_pod_labels}
            if rotation_bridge_pod_labels is not None:
                bridges["hivemq-allow-rotation-bridge"] = rotation_bridge_pod_labels
            self._bridge_policies(hivemq, bridge_listener_port, bridges)
        if operator_namespace is not None:
            self._policy(
                "hivemq-allow-operator",
                hivemq,
                [k8s.NetworkPolicyIngressRule(from_=[_namespace_peer(operator_namespace)])],
            )
        if monitoring_namespace is not None:
            monitoring = [_namespace_peer(monitoring_namespace)]
            self._policy(
                "hivemq-allow-metrics",
                hivemq,
                [k8s.NetworkPolicyIngressRule(from_=monitoring, ports=[_tcp(hivemq_metrics_port)])],
            )
            if bridge_pod_labels is not None and bridge_http_port is not None:
                self._policy(
                    "bridge-allow-metrics",
                    k8s.LabelSelector(match_labels=bridge_pod_labels),
                    [
                        k8s.NetworkPolicyIngressRule(
                            from_=monitoring, ports=[_tcp(bridge_http_port)]
                        )
                    ],
                )

    def _bridge_policies(
        self, hivemq: k8s.LabelSelector, port: int, bridges: dict[str, dict[str, str]]
    ) -> None:
        """Each bridge's pods (policy name -> pod labels) may reach the bridge listener."""
        for name, labels in bridges.items():
            peer = k8s.NetworkPolicyPeer(pod_selector=k8s.LabelSelector(match_labels=labels))
            self._policy(
                name, hivemq, [k8s.NetworkPolicyIngressRule(from_=[peer], ports=[_tcp(port)])]
            )

    def _policy(
        self, name: str, selector: k8s.LabelSelector, rules: list[k8s.NetworkPolicyIngressRule]
    ) -> None:
        self.policies[name] = k8s.KubeNetworkPolicy(
            self,
            name,
            metadata=k8s.ObjectMeta(name=name, namespace=self.namespace, labels=dict(PART_OF)),
            spec=k8s.NetworkPolicySpec(
                pod_selector=selector, policy_types=["Ingress"], ingress=rules or None
            ),
        )


def _tcp(port: int) -> k8s.NetworkPolicyPort:
    return k8s.NetworkPolicyPort(port=k8s.IntOrString.from_number(port), protocol="TCP")


def _namespace_peer(namespace: str) -> k8s.NetworkPolicyPeer:
    return k8s.NetworkPolicyPeer(
        namespace_selector=k8s.LabelSelector(match_labels={_NAMESPACE_NAME_LABEL: namespace})
    )


def _validate_namespaces(monitoring: str | None, operator: str | None) -> None:
    for field_name, value in (
        ("hivemq.monitoringNamespace", monitoring),
        ("hivemq.operatorNamespace", operator),
    ):
        if value is not None:
            validate_dns_label(value, field_name=field_name)
