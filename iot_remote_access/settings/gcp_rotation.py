"""The ``gcp.rotationService`` settings: the rotation service and its planner on GKE.

``gcp manifests`` renders, next to the bridge: a Deployment (the service: CSRs in,
certificates out, confirmations, revocations), a daily CronJob (the plan) and an
hourly CronJob (the dispatch), all from one image, as one Google service account
(Workload Identity). The rotation rules themselves (lead time, hourly budget, retries,
validity and stagger) are the ``certificates`` section's, exactly as on AWS; the CA is
``gcp.certificateAuthority``'s pool.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from iot_remote_access.core.gcp_rules import validate_pubsub_id, validate_service_account
from iot_remote_access.core.hivemq_permissions import (
    validate_bridge_identity as validate_hivemq_bridge_identity,
)
from iot_remote_access.core.kubernetes_names import (
    validate_dns_subdomain,
    validate_image,
    validate_quantity,
)
from iot_remote_access.core.mosquitto_acl import validate_bridge_identity
from iot_remote_access.core.shared_subscription import validate_share_group
from iot_remote_access.settings.base import SettingsSection, core_check


class GcpRotationServiceSettings(SettingsSection):
    """Default: 2 replicas, 100m/128Mi requested, 500m/256Mi limit, probes on 8080, the plan
    daily at minute 15 of ``certificates.dailyRunHour``, the dispatch at minute 5 of every
    hour, the inventory in the Firestore collection ``iot-device-inventory``."""

    #: The Google service account the service and the CronJobs run as (Workload Identity):
    #: Pub/Sub subscriber and publisher on the rotation topics, Firestore user, and in
    #: ``gcp.certificateAuthority.issuerMembers`` (CA Service certificate manager).
    service_account: str
    #: The image (the bridge's image carries the package too), pinned.
    image: str
    replicas: int = Field(default=2, ge=1, le=20)
    cpu_request: str = "100m"
    cpu_limit: str = "500m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    http_port: int = Field(default=8080, ge=1024, le=65535)
    run_as_user: int = Field(default=10001, ge=1, le=2_147_483_647)
    firestore_database: str = Field(default="(default)", min_length=1, max_length=63)
    inventory_collection: str = Field(
        default="iot-device-inventory", pattern=r"^[a-zA-Z0-9_-]{1,100}$"
    )
    #: Minute of the hour the hourly dispatch runs.
    dispatch_minute: int = Field(default=5, ge=0, le=59)
    #: Pub/Sub names (``gcp deploy`` creates them, each topic with a dead-letter topic):
    #: CSRs and confirmations the rotation bridge publishes, the service's subscriptions
    #: to them, certificates the service publishes and the rotation bridge's subscription.
    csr_topic: str = "iot-rotation-csr"
    csr_subscription: str = "iot-rotation-csr-service"
    confirm_topic: str = "iot-rotation-confirm"
    confirm_subscription: str = "iot-rotation-confirm-service"
    certificate_topic: str = "iot-rotation-certificates"
    certificate_subscription: str = "iot-rotation-certificates-bridge"
    #: The rotation bridge (the bridge's image and code on the rotation topics): the CN of
    #: its client certificate (never a valid thing name), the Secret holding that
    #: certificate (``tls.crt``, ``tls.key``, ``ca.crt``), its share group and replicas.
    #: It runs as ``gcp.bridge.serviceAccount``.
    bridge_identity: str = "rotation-bridge.iot-remote-access"
    bridge_client_certificate_secret: str = "rotation-bridge-tls"  # noqa: S105 - a name
    bridge_share_group: str = "rotation-bridge"
    bridge_replicas: int = Field(default=2, ge=2, le=20)

    @field_validator("bridge_identity")
    @classmethod
    def _identity(cls, value: str) -> str:
        core_check(validate_bridge_identity, value)
        return core_check(validate_hivemq_bridge_identity, value)

    @field_validator("bridge_share_group")
    @classmethod
    def _share_group(cls, value: str) -> str:
        return core_check(validate_share_group, value)

    @field_validator("bridge_client_certificate_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return core_check(validate_dns_subdomain, value)

    @field_validator(
        "csr_topic",
        "csr_subscription",
        "confirm_topic",
        "confirm_subscription",
        "certificate_topic",
        "certificate_subscription",
    )
    @classmethod
    def _pubsub_id(cls, value: str) -> str:
        return core_check(validate_pubsub_id, value)

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        return core_check(validate_service_account, value)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return core_check(validate_image, value)

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return core_check(validate_quantity, value)
