"""The three SDK clients ``gcp plan|deploy`` uses for Cloud Logging and Cloud Monitoring."""

from __future__ import annotations

import ipaddress
from typing import Any

#: Set, ``gcp plan|deploy`` reach Cloud Logging and Cloud Monitoring there instead
#: (``HOST:PORT``): a loopback address without TLS (a local stand-in), anything else
#: with TLS and the usual credentials (e.g. a Private Service Connect endpoint).
ENDPOINT_ENV = "IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT"


def is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_clients(endpoint: str | None = None) -> tuple[Any, Any, Any, Any]:
    """MetricsServiceV2Client, AlertPolicyServiceClient, ConfigServiceV2Client, IAMClient
    (an ``endpoint`` serves the first three; IAM is always Google's unless loopback)."""
    from google.cloud.iam_admin_v1.services.iam import IAMClient
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
    from google.cloud.logging_v2.services.config_service_v2 import ConfigServiceV2Client
    from google.cloud.logging_v2.services.config_service_v2.transports import (
        ConfigServiceV2GrpcTransport,
    )
    from google.cloud.logging_v2.services.metrics_service_v2 import MetricsServiceV2Client
    from google.cloud.logging_v2.services.metrics_service_v2.transports import (
        MetricsServiceV2GrpcTransport,
    )
    from google.cloud.monitoring_v3.services.alert_policy_service import AlertPolicyServiceClient
    from google.cloud.monitoring_v3.services.alert_policy_service.transports import (
        AlertPolicyServiceGrpcTransport,
    )

    if endpoint is None:
        return (
            MetricsServiceV2Client(),
            AlertPolicyServiceClient(),
            ConfigServiceV2Client(),
            IAMClient(),
        )
    if is_loopback(endpoint):
        import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

        # No TLS and no credentials: only ever a local stand-in on this machine.
        channel = grpc.insecure_channel(endpoint)
        return (
            MetricsServiceV2Client(transport=MetricsServiceV2GrpcTransport(channel=channel)),
            AlertPolicyServiceClient(transport=AlertPolicyServiceGrpcTransport(channel=channel)),
            ConfigServiceV2Client(transport=ConfigServiceV2GrpcTransport(channel=channel)),
            IAMClient(transport=IAMGrpcTransport(channel=channel)),
        )
    options = {"api_endpoint": endpoint}
    return (
        MetricsServiceV2Client(client_options=options),
        AlertPolicyServiceClient(client_options=options),
        ConfigServiceV2Client(client_options=options),
        IAMClient(),
    )
