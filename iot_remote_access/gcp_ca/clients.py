"""The CA Service SDK client of ``gcp plan|deploy`` and of the rotation service."""

from __future__ import annotations

from typing import Any

from iot_remote_access.gcp_monitoring.clients import is_loopback

#: Set, ``gcp plan|deploy`` reach CA Service there instead (``HOST:PORT``): a loopback
#: address without TLS (a local stand-in), anything else with TLS and the usual credentials.
ENDPOINT_ENV = "IOT_REMOTE_ACCESS_GCP_CA_ENDPOINT"


def make_client(endpoint: str | None = None) -> Any:
    """A ``CertificateAuthorityServiceClient`` for Google's endpoint or ``endpoint``."""
    from google.cloud.security.privateca_v1 import CertificateAuthorityServiceClient
    from google.cloud.security.privateca_v1.services.certificate_authority_service import (
        transports,
    )

    if endpoint is None:
        return CertificateAuthorityServiceClient()
    if is_loopback(endpoint):
        import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

        # No TLS and no credentials: only ever a local stand-in on this machine.
        channel = grpc.insecure_channel(endpoint)
        transport = transports.CertificateAuthorityServiceGrpcTransport(channel=channel)
        return CertificateAuthorityServiceClient(transport=transport)
    return CertificateAuthorityServiceClient(client_options={"api_endpoint": endpoint})
