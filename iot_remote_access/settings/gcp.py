"""The ``gcp`` settings section: the project, the Cloud Pub/Sub topology and the bridge.

Read as part of :class:`~iot_remote_access.settings.FleetSettings` (key ``gcp``)
from the one settings file of ``iot-remote-access gcp plan|deploy|manifests``
(``examples/gcp-settings.yaml``). Every Pub/Sub name and the bridge's identity
and share group are decided here, once: ``gcp manifests`` hands them to the
bridge as ``BRIDGE_*`` variables and to HiveMQ as permissions. The bridge
container reads its variables (:mod:`iot_remote_access.bridge.settings`) with
the same defaults.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from iot_remote_access.core.gcp_rules import (
    validate_project_id,
    validate_pubsub_id,
    validate_service_account,
)
from iot_remote_access.core.hivemq_permissions import (
    validate_bridge_identity as validate_hivemq_bridge_identity,
)
from iot_remote_access.core.kubernetes_names import (
    validate_dns_subdomain,
    validate_image,
    validate_quantity,
)
from iot_remote_access.core.mosquitto_acl import DEFAULT_BRIDGE_IDENTITY, validate_bridge_identity
from iot_remote_access.core.shared_subscription import DEFAULT_SHARE_GROUP, validate_share_group
from iot_remote_access.settings.base import SettingsSection, core_check
from iot_remote_access.settings.gcp_access import GcpAccessProxySettings
from iot_remote_access.settings.gcp_ca import GcpCertificateAuthoritySettings
from iot_remote_access.settings.gcp_rotation import GcpRotationServiceSettings

DEFAULT_TELEMETRY_TOPIC_ID = "iot-telemetry"
DEFAULT_COMMANDS_TOPIC_ID = "iot-commands"
DEFAULT_BRIDGE_SUBSCRIPTION_ID = "iot-commands-bridge"
DEFAULT_ANALYTICS_SUBSCRIPTION_ID = "iot-telemetry-analytics"
DEFAULT_RESPONSES_TOPIC_ID = "iot-command-responses"
DEFAULT_RESPONSES_SUBSCRIPTION_ID = "iot-command-responses-service"
DEAD_LETTER_SUFFIX = "-dead-letter"
#: Messages on a topic without a subscription are dropped, so every dead-letter
#: topic gets a subscription that keeps them for inspection.
DEAD_LETTER_HOLD_SUFFIX = "-hold"

#: Google Cloud's rules for label keys and values.
_LABEL_KEY_RE = re.compile(r"\A[a-z][a-z0-9_-]{0,62}\Z")
_LABEL_VALUE_RE = re.compile(r"\A[a-z0-9_-]{0,63}\Z")
_MEMBER_RE = re.compile(r"\A(serviceAccount|group|user|principal|principalSet):\S+\Z")


def validate_resource_id(value: str) -> str:
    """A Pub/Sub id inside a pydantic validator (the field is pydantic's location)."""
    return core_check(validate_pubsub_id, value)


class GcpPubsubSettings(SettingsSection):
    """Names and delivery settings of the Pub/Sub topology.

    Default: topics ``iot-telemetry`` and ``iot-commands`` (each with a
    ``-dead-letter`` topic), the bridge's subscription ``iot-commands-bridge``
    and the pull subscription ``iot-telemetry-analytics``; 7 days of retention,
    a 30 s ack deadline, retries backing off from 10 s to 600 s, dead-lettering
    after 5 delivery attempts.
    """

    telemetry_topic: str = DEFAULT_TELEMETRY_TOPIC_ID
    commands_topic: str = DEFAULT_COMMANDS_TOPIC_ID
    bridge_subscription: str = DEFAULT_BRIDGE_SUBSCRIPTION_ID
    analytics_subscription: str = DEFAULT_ANALYTICS_SUBSCRIPTION_ID
    #: A Pub/Sub filter for the analytics subscription (fixed once created).
    analytics_filter: str = ""
    #: IAM members (``serviceAccount:...``, ``group:...``) that may consume the
    #: analytics subscription.
    analytics_members: tuple[str, ...] = ()
    message_retention_days: int = Field(default=7, ge=1, le=7)
    ack_deadline_seconds: int = Field(default=30, ge=10, le=600)
    max_delivery_attempts: int = Field(default=5, ge=5, le=100)
    #: Remote commands (``commands.enabled``): the topic the bridge publishes device
    #: answers to, and the command service's subscription on it.
    responses_topic: str = DEFAULT_RESPONSES_TOPIC_ID
    responses_subscription: str = DEFAULT_RESPONSES_SUBSCRIPTION_ID
    #: IAM members of the command service (the operator CLI's identity while the
    #: service runs inside it): publish to the commands topic, consume the responses.
    command_service_members: tuple[str, ...] = ()
    retry_min_backoff_seconds: int = Field(default=10, ge=0, le=600)
    retry_max_backoff_seconds: int = Field(default=600, ge=0, le=600)

    @field_validator(
        "telemetry_topic",
        "commands_topic",
        "bridge_subscription",
        "analytics_subscription",
        "responses_topic",
        "responses_subscription",
    )
    @classmethod
    def _resource_id(cls, value: str) -> str:
        return validate_resource_id(value)

    @field_validator("analytics_filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        if len(value.encode()) > 256:
            raise ValueError(
                f"{value[:40]!r}... is {len(value.encode())} bytes; allowed: at most 256"
            )
        return value

    @field_validator("analytics_members", "command_service_members")
    @classmethod
    def _members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if not _MEMBER_RE.match(member) or member.startswith(("allUsers", "allAuthenticated")):
                raise ValueError(
                    f"{member!r} is not an IAM member; allowed: 'serviceAccount:EMAIL', "
                    "'group:EMAIL', 'user:EMAIL', 'principal:...', 'principalSet:...'"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.retry_min_backoff_seconds > self.retry_max_backoff_seconds:
            raise ValueError(
                f"retryMinBackoffSeconds {self.retry_min_backoff_seconds} is above "
                f"retryMaxBackoffSeconds {self.retry_max_backoff_seconds}; allowed: min <= max"
            )
        names = [
            self.telemetry_topic,
            self.commands_topic,
            self.telemetry_topic + DEAD_LETTER_SUFFIX,
            self.commands_topic + DEAD_LETTER_SUFFIX,
        ]
        if len(set(names)) != len(names):
            raise ValueError(
                f"telemetryTopic {self.telemetry_topic!r} and commandsTopic "
                f"{self.commands_topic!r} collide; allowed: distinct topic ids"
            )
        if {self.responses_topic, self.responses_topic + DEAD_LETTER_SUFFIX} & set(names):
            raise ValueError(
                f"responsesTopic {self.responses_topic!r} collides with the telemetry or "
                "commands topics; allowed: a distinct topic id"
            )
        subscriptions = [
            self.bridge_subscription,
            self.analytics_subscription,
            self.responses_subscription,
        ]
        if len(set(subscriptions)) != len(subscriptions):
            raise ValueError(
                f"responsesSubscription {self.responses_subscription!r} is also another "
                "subscription's id; allowed: distinct subscription ids"
            )
        return self

    @property
    def telemetry_dead_letter_topic(self) -> str:
        return self.telemetry_topic + DEAD_LETTER_SUFFIX

    @property
    def commands_dead_letter_topic(self) -> str:
        return self.commands_topic + DEAD_LETTER_SUFFIX

    @property
    def responses_dead_letter_topic(self) -> str:
        return self.responses_topic + DEAD_LETTER_SUFFIX


#: Keys of the old ``hivemq.bridge`` section that have another name here.
_RENAMED_BRIDGE_KEYS = {"googleServiceAccount": "serviceAccount", "sharedGroup": "shareGroup"}
_ENV_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


class GcpBridgeSettings(SettingsSection):
    """The MQTT <-> Pub/Sub bridge: who it is (broker and Google Cloud) and how it runs on GKE.

    The one place its names are decided: ``gcp deploy`` grants ``serviceAccount``,
    ``gcp manifests`` renders the HiveMQ permissions for ``identity`` and
    ``shareGroup`` and passes the same values to the bridge, and the mosquitto
    ACL (:mod:`iot_remote_access.core.mosquitto_acl`) uses the same defaults.

    Default: certificate CN ``bridge.iot-remote-access``, share group
    ``pubsub-bridge``; on GKE a StatefulSet of 2 to 6 replicas at 70% CPU,
    250m/128Mi requested, 1 CPU/256Mi limit, HTTP (``/healthz``, ``/readyz``,
    ``/metrics``) on 8080, 20 s to drain on SIGTERM. ``image`` is required
    by ``gcp manifests`` only.
    """

    #: The Google service account the bridge runs as (Workload Identity).
    service_account: str
    #: The CN of the bridge's client certificate (its broker identity). It must not
    #: be a valid thing name, so that no device certificate can ever carry it.
    identity: str = DEFAULT_BRIDGE_IDENTITY
    #: The MQTT 5 share group of the bridge's telemetry subscription.
    share_group: str = DEFAULT_SHARE_GROUP
    #: The bridge's container image, pinned (``REPOSITORY:TAG`` or a digest).
    image: str | None = None
    #: Secret (type kubernetes.io/tls) with the bridge's client certificate:
    #: ``tls.crt``, ``tls.key`` and ``ca.crt`` (the CA that signed the broker's certificate).
    client_certificate_secret: str = "pubsub-bridge-tls"  # noqa: S105 - a Secret's name
    replicas: int = Field(default=2, ge=2, le=100)
    max_replicas: int = Field(default=6, ge=2, le=1000)
    target_cpu_utilization: int = Field(default=70, ge=10, le=100)
    # Measured (benchmarks/bridge_throughput.py): 130-160 us of CPU per message at
    # 1,000 msg/s, 70-110 us at full speed. 250m carries about 1,500 msg/s, so the HPA
    # (70% of the request) adds a replica near 1,000 msg/s; the limit leaves bursts room.
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    http_port: int = Field(default=8080, ge=1024, le=65535)
    #: How long the bridge drains on SIGTERM (``BRIDGE_DRAIN_TIMEOUT_SECONDS``); the pod's
    #: termination grace period is this plus 30 s.
    drain_timeout_seconds: int = Field(default=20, ge=1, le=600)
    #: A non-root user id the container runs as (the image's own user by default).
    run_as_user: int = Field(default=10001, ge=1, le=2_147_483_647)
    #: Extra environment variables for the bridge (plain values; never secrets).
    #: ``BRIDGE_*`` names must be variables the bridge knows (checked by ``gcp manifests``).
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict):
            for old, new in _RENAMED_BRIDGE_KEYS.items():
                if old in data:
                    raise ValueError(f"{old} was renamed; allowed: {new}")
        return data

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        return core_check(validate_service_account, value)

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str) -> str:
        # The rules of both brokers: mosquitto's username and HiveMQ's ESE realm name.
        core_check(validate_bridge_identity, value)
        return core_check(validate_hivemq_bridge_identity, value)

    @field_validator("share_group")
    @classmethod
    def _share_group(cls, value: str) -> str:
        return core_check(validate_share_group, value)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else core_check(validate_image, value)

    @field_validator("client_certificate_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return core_check(validate_dns_subdomain, value)

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return core_check(validate_quantity, value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME_RE.match(name):
                raise ValueError(
                    f"{name[:60]!r} is not an environment variable name; "
                    "allowed: [A-Za-z_][A-Za-z0-9_]*"
                )
        return value

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.max_replicas < self.replicas:
            raise ValueError(
                f"maxReplicas {self.max_replicas} is below replicas {self.replicas}; "
                "allowed: maxReplicas >= replicas"
            )
        return self


class GcpSettings(SettingsSection):
    """The ``gcp`` section of the settings file.

    ``projectNumber`` is required: dead-lettering only works once the project's
    Pub/Sub service agent (``service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com``)
    may publish to the dead-letter topics and consume the source subscriptions.
    """

    #: The project everything lives in. ``gcp plan|deploy`` use it unless ``--project``
    #: is given (they must then agree); ``gcp manifests`` requires it.
    project_id: str | None = None
    project_number: str
    labels: dict[str, str] = Field(default_factory=dict)
    pubsub: GcpPubsubSettings = Field(default_factory=GcpPubsubSettings)
    bridge: GcpBridgeSettings
    #: Interactive device access through Teleport on GKE (``gcp manifests`` renders it,
    #: ``gcp plan|deploy`` its log-based metrics and alert policies). Default: none.
    access_proxy: GcpAccessProxySettings | None = None
    #: Device certificates from Certificate Authority Service (``gcp plan|deploy`` render
    #: the CA pool and CA; the rotation service issues from them). Default: none.
    certificate_authority: GcpCertificateAuthoritySettings | None = None
    #: The certificate rotation service and planner on GKE (``gcp manifests``; needs
    #: ``certificateAuthority``). Default: none.
    rotation_service: GcpRotationServiceSettings | None = None

    @field_validator("project_id")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        return None if value is None else core_check(validate_project_id, value)

    @field_validator("project_number", mode="before")
    @classmethod
    def _project_number(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(r"[1-9][0-9]{5,19}", value):
            raise ValueError(
                f"{value!r} is not a project number; allowed: digits, e.g. '123456789012'"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 64:
            raise ValueError(f"{len(value)} labels; allowed: at most 64")
        for key, label in value.items():
            if not _LABEL_KEY_RE.match(key):
                raise ValueError(
                    f"label key {key!r} is not allowed; allowed: [a-z][a-z0-9_-]{{0,62}}"
                )
            if not isinstance(label, str) or not _LABEL_VALUE_RE.match(label):
                raise ValueError(
                    f"label {key}={label!r} has a value that is not allowed; "
                    "allowed: [a-z0-9_-]{0,63}"
                )
        return value

    @property
    def pubsub_service_agent(self) -> str:
        return f"serviceAccount:service-{self.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
