"""Labels and ports shared by the GKE constructs (one place, so selectors always agree)."""

from __future__ import annotations

# The listener names ("devices", "bridge"; one ESE pipeline each) live with the ESE files.
from iot_remote_access.core.hivemq_device_realm import (
    BRIDGE_LISTENER_NAME as BRIDGE_LISTENER_NAME,
)
from iot_remote_access.core.hivemq_device_realm import (
    DEVICE_LISTENER_NAME as DEVICE_LISTENER_NAME,
)

COMPONENT_LABEL = "iot-remote-access/component"
PART_OF = {"app.kubernetes.io/part-of": "iot-remote-access"}
HIVEMQ_POD_LABELS = {COMPONENT_LABEL: "hivemq"}
BRIDGE_POD_LABELS = {COMPONENT_LABEL: "pubsub-bridge"}

#: The device listener (mTLS, public). Devices expect MQTT over TLS on 8883.
DEVICE_LISTENER_PORT = 8883
#: The bridge's listener (mTLS, reachable only from the bridge pods).
BRIDGE_LISTENER_PORT = 8884
#: The HiveMQ Prometheus extension.
HIVEMQ_METRICS_PORT = 9399

#: GKE's annotation binding a Kubernetes service account to a Google service account.
WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"

#: What the bridge serves on its HTTP port (iot_remote_access.bridge.health); the
#: probes and the metrics Service use exactly these, so they are not settings.
BRIDGE_LIVENESS_PATH = "/healthz"
BRIDGE_READINESS_PATH = "/readyz"
BRIDGE_METRICS_PATH = "/metrics"
#: The bridge container's entry point, as in its Dockerfile (iot_remote_access/bridge).
BRIDGE_COMMAND = ("python", "-m", "iot_remote_access.bridge")
