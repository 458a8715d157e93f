"""The ``hivemq`` settings section: HiveMQ on GKE, beside the ``gcp`` section.

Read by ``iot-remote-access gcp manifests`` together with ``gcp``, from one
settings file: the Pub/Sub names, the project and everything about the bridge
(identity, share group, image, replicas) are in ``gcp`` (``settings.gcp``),
never repeated here. Everything that would make a wrong
manifest (Secret names, image tags, the Google service account) is checked
here, when the file is read, with messages naming the field, the value and
what is allowed; the constructs check the same values again at synth for
callers that build them from Python.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.gcp_rules import validate_service_account
from iot_remote_access.core.hivemq_permissions import validate_identity
from iot_remote_access.core.kubernetes_names import (
    validate_dns_label,
    validate_dns_subdomain,
    validate_image,
    validate_image_tag,
    validate_kubernetes_version,
    validate_quantity,
)
from iot_remote_access.settings.base import SettingsSection, core_check

HIVEMQ_CHART = "hivemq/hivemq-platform"
#: The chart version the Helm values are written for and validated against.
HIVEMQ_CHART_VERSION = "0.2.72"
#: Default HiveMQ image tag: the one the hivemq-platform chart 0.2.72 ships.
DEFAULT_HIVEMQ_TAG = "4.54.0"
DEFAULT_KUBERNETES_VERSION = "1.33"
#: TLS versions a device listener may offer; nothing older than 1.2.
TlsProtocol = Literal["TLSv1.3", "TLSv1.2"]
ALLOWED_TLS_PROTOCOLS: tuple[TlsProtocol, ...] = ("TLSv1.3", "TLSv1.2")
#: AEAD suites only (forward secrecy, no CBC): TLS 1.3's and TLS 1.2's ECDHE-GCM/ChaCha20.
DEFAULT_CIPHER_SUITES = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
)
#: How device permissions are bound (see ``HivemqSettings.device_binding``).
DeviceBinding = Literal["certificate", "clientId"]
DEVICE_BINDINGS: tuple[DeviceBinding, ...] = ("certificate", "clientId")
_CBC_OR_WEAK = ("_CBC_", "_RC4_", "_3DES_", "_NULL_", "_EXPORT_", "_anon_", "TLS_RSA_")


_secret = partial(core_check, validate_dns_subdomain)
_label = partial(core_check, validate_dns_label)
_quantity = partial(core_check, validate_quantity)
_image = partial(core_check, validate_image)
_gsa = partial(core_check, validate_service_account)
#: Keys of ``hivemq`` that moved to the ``gcp`` section (one name, one place).
_MOVED_KEYS = {
    "bridge": "gcp.bridge (image, serviceAccount, identity, shareGroup, replicas, ...)",
    "pubsub": "gcp.projectId and gcp.pubsub (telemetryTopic, bridgeSubscription)",
}


class HivemqTlsSettings(SettingsSection):
    """The device listener's TLS material, all referenced by Secret name (created beforehand).

    Default: TLS 1.3 and 1.2 with AEAD cipher suites only.
    """

    #: Secret with the broker's server keystore (PKCS#12 or JKS) under the key ``keystore``.
    server_keystore_secret: str
    #: Secret with the keystore password under the key ``keystore.password``.
    server_keystore_password_secret: str
    #: Secret with the truststore holding the fleet CA certificate(s) under the key ``truststore``.
    fleet_ca_secret: str
    #: Secret with the truststore password under the key ``truststore.password``.
    fleet_ca_password_secret: str
    #: Subject CN of every CA that issues device certificates (several during a CA rotation).
    #: Only certificates issued by one of these names get the device permissions.
    # strict=False on these lists only: HivemqSettings' key check runs "before", which
    # makes pydantic validate this subtree in Python mode, where strict refuses a JSON
    # list for a tuple. Items stay strict (a number is not a CN).
    fleet_ca_common_names: tuple[str, ...] = Field(strict=False)
    protocols: tuple[TlsProtocol, ...] = Field(
        default=ALLOWED_TLS_PROTOCOLS, min_length=1, strict=False
    )
    cipher_suites: tuple[str, ...] = Field(
        default=DEFAULT_CIPHER_SUITES, min_length=1, strict=False
    )

    @field_validator(
        "server_keystore_secret",
        "server_keystore_password_secret",
        "fleet_ca_secret",
        "fleet_ca_password_secret",
    )
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _secret(value)

    @field_validator("fleet_ca_common_names")
    @classmethod
    def _ca_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                "[] is empty; allowed: the subject CN of each CA that issues device "
                "certificates, e.g. ['Fleet Device CA 1']"
            )
        for name in value:
            core_check(validate_identity, name)
        return value

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(
                f"{list(value)!r} repeats a version; allowed: TLSv1.3, TLSv1.2 once each"
            )
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for suite in value:
            if not suite.startswith("TLS_") or any(weak in suite for weak in _CBC_OR_WEAK):
                raise ValueError(
                    f"{suite!r} is not an allowed cipher suite; allowed: TLS 1.3 suites and "
                    "TLS_ECDHE_*_GCM_* / *_CHACHA20_POLY1305_* (no CBC, RC4, 3DES, NULL, "
                    "static RSA or anonymous suites)"
                )
        return value


class HivemqNodeSettings(SettingsSection):
    """Cluster size, resources and storage of the broker.

    Default: 3 nodes, 4 CPUs and 4Gi each (HiveMQ's production minimum),
    20Gi of persistent storage per node, one node per zone required.
    """

    replicas: int = Field(default=3, ge=2, le=100)
    cpu: str = "4"
    memory: str = "4Gi"
    storage_size: str = "20Gi"
    #: StorageClass for the data volumes. Default: the cluster's default class.
    storage_class: str | None = None
    #: ``required``: never two nodes in one zone (needs as many zones as replicas);
    #: ``preferred``: spread when possible.
    zone_spread: Literal["required", "preferred"] = "required"

    @field_validator("cpu", "memory", "storage_size")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)

    @field_validator("storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        return None if value is None else _secret(value)


class HivemqListenerSettings(SettingsSection):
    """The device listener's Service. Default: an external LoadBalancer that keeps client IPs."""

    #: ``true`` for a GKE internal passthrough load balancer (devices on a private network).
    internal_load_balancer: bool = False
    #: ``Local`` keeps device source IPs (audit logs, NetworkPolicy);
    #: ``Cluster`` spreads load evenly.
    external_traffic_policy: Literal["Local", "Cluster"] = "Local"


class PubsubExtensionSettings(SettingsSection):
    """The HiveMQ Enterprise Extension for Google Cloud Pub/Sub (``integration: extension``)."""

    #: The Google service account the broker pods act as (Workload Identity).
    google_service_account: str
    #: A customization transformer class for commands (Pub/Sub -> MQTT). Default: none,
    #: so the extension forwards telemetry only (why: docs/gcp.md, "Pub/Sub extension instead").
    commands_transformer: str | None = None

    @field_validator("google_service_account")
    @classmethod
    def _gsa(cls, value: str) -> str:
        return _gsa(value)

    @field_validator("commands_transformer")
    @classmethod
    def _transformer(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+", value):
            raise ValueError(
                f"{value!r} is not a Java class name; allowed: a fully qualified name such as "
                "'com.example.CommandsTransformer'"
            )
        return value


class HivemqSettings(SettingsSection):
    """HiveMQ on GKE, hardened, bridged to Pub/Sub.

    Default: namespace ``iot``, release ``hivemq``, HiveMQ 4.54.0, Kubernetes
    1.33, the bridge (``integration: bridge``, configured in ``gcp.bridge``),
    no license (what that means: docs/gcp.md, "Known limits"), 100,000 queued messages
    per client (HiveMQ's own default is 1,000), new messages discarded when full.
    """

    namespace: str = "iot"
    #: Render a Namespace object (with Pod Security labels); off when it is managed elsewhere.
    create_namespace: bool = True
    release_name: str = "hivemq"
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    image_repository: str = "docker.io/hivemq"
    image_tag: str = DEFAULT_HIVEMQ_TAG
    #: Secret with the HiveMQ license (``*.lic``) and Enterprise Extension licenses (``*.elic``).
    license_secret: str | None = None
    integration: Literal["bridge", "extension"] = "bridge"
    #: Grant devices the certificate-rotation topics (when the rotation job runs on GCP).
    rotation_topics: bool = False
    #: What ties a device to its topics. ``certificate``: the devices realm has one user per
    #: thing, found by the certificate's subject CN, with the thing named literally in its
    #: permissions (the realm lists every device: ``gcp device-realm``). ``clientId``: one role
    #: for every certificate of a fleet CA, on ``${mqtt-clientid}``, which the client chooses,
    #: so any fleet certificate can act as any device (docs/topics-v2.md, "HiveMQ: the
    #: client-id hole"); kept for fleets that cannot list their devices yet.
    device_binding: DeviceBinding = "certificate"
    tls: HivemqTlsSettings
    nodes: HivemqNodeSettings = Field(default_factory=HivemqNodeSettings)
    listener: HivemqListenerSettings = Field(default_factory=HivemqListenerSettings)
    #: Messages the broker keeps per client (and per share group) while it is offline or
    #: slow. The bridge's shared subscription queues here during a bridge outage: size it
    #: as telemetry rate x the outage to survive (100,000 = 100 s at 1,000 msg/s).
    queued_messages_max_size: int = Field(default=100_000, ge=1000, le=100_000_000)
    #: What a full queue does: ``discard`` the new message or ``discard-oldest``.
    queued_messages_strategy: Literal["discard", "discard-oldest"] = "discard"
    extension: PubsubExtensionSettings | None = None
    #: A namespace whose pods may scrape metrics (broker 9399, bridge HTTP port). Default: none.
    monitoring_namespace: str | None = None
    #: The HiveMQ Platform Operator's namespace, if it must reach the broker pods. Default: none.
    operator_namespace: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: object) -> object:
        if isinstance(data, dict):
            for key, new in _MOVED_KEYS.items():
                if key in data:
                    raise ValueError(f"{key} moved to the gcp section; allowed: {new}")
        return data

    @field_validator("device_binding", mode="before")
    @classmethod
    def _binding(cls, value: object) -> object:
        if value not in DEVICE_BINDINGS:
            raise ValueError(
                f"{excerpt(value)} is not a device binding; allowed: 'certificate' (one realm "
                "user per thing, found by the certificate's subject CN; the default) or "
                "'clientId' (one role on ${mqtt-clientid}: any fleet certificate can act as "
                "any device)"
            )
        return value

    @field_validator("namespace", "release_name", "monitoring_namespace", "operator_namespace")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _label(value)

    @field_validator("release_name")
    @classmethod
    def _release_length(cls, value: str) -> str:
        # Service names are "<release>-mqtt-devices" and must stay within 63 characters.
        if len(value) > 40:
            raise ValueError(f"{value!r} is longer than 40 characters; allowed: at most 40")
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return core_check(validate_kubernetes_version, value)

    @field_validator("image_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        return core_check(validate_image_tag, value)

    @field_validator("image_repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        # Checked as an image with a throwaway tag: the tag is its own setting.
        _image(f"{value}/hivemq4:0")
        return value

    @field_validator("license_secret")
    @classmethod
    def _license(cls, value: str | None) -> str | None:
        return None if value is None else _secret(value)

    @model_validator(mode="after")
    def _integration(self) -> Self:
        if self.integration == "extension":
            if self.extension is None:
                raise ValueError(
                    "integration is 'extension' but extension is missing; allowed: an extension "
                    "section (googleServiceAccount) or integration: bridge"
                )
            if self.license_secret is None:
                raise ValueError(
                    "integration is 'extension' but licenseSecret is missing; allowed: the name "
                    "of a Secret with the HiveMQ and Pub/Sub extension licenses (the extension "
                    "is for licensed users; without a license it stops after a 5-hour trial)"
                )
        return self
