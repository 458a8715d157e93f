"""The ``gcp.accessProxy`` section: interactive device access on GCP through Teleport.

Read with the rest of ``gcp`` from the one settings file of ``gcp plan|deploy|manifests``.
Every limit is checked by the rules the AWS tunnel broker enforces
(:mod:`iot_remote_access.core.tunnel_rules`, through
:mod:`iot_remote_access.core.teleport_access`), before anything renders; a bad
value is one line naming the field.
"""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from iot_remote_access.core.gcp_rules import validate_service_account
from iot_remote_access.core.kubernetes_names import split_image, validate_dns_label, validate_image
from iot_remote_access.core.teleport_access import (
    DEFAULT_DEVICE_LOGIN,
    DEFAULT_IDLE_TIMEOUT_MINUTES,
    DEFAULT_JOIN_TOKEN_TTL_MINUTES,
    MAX_JOIN_TOKEN_TTL_MINUTES,
    TELEPORT_SERVICES,
    AccessProxyPolicy,
    user_resources,
    validate_extra_roles,
    validate_identities,
    validate_login,
    validate_role_name,
    validate_selector,
    validate_services,
)
from iot_remote_access.core.tunnel_rules import DEFAULT_LIFETIME_MINUTES
from iot_remote_access.settings.base import SettingsSection, core_problem

#: The teleport-cluster chart version the values are written for (its schema is in shared/).
DEFAULT_CHART_VERSION = "15.3.1"
_SEMVER_RE = re.compile(r"\A[0-9]+\.[0-9]+\.[0-9]+\Z")
_HOST_RE = re.compile(r"\A(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")
_BUCKET_RE = re.compile(r"\A[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]\Z")
_COLLECTION_RE = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}\Z")
_SINK_RE = re.compile(
    r"\A(pubsub\.googleapis\.com/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}"
    r"|storage\.googleapis\.com/[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]"
    r"|bigquery\.googleapis\.com/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/datasets/\w{1,1024}"
    r"|logging\.googleapis\.com/projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]{1,64}"
    r"/buckets/[A-Za-z0-9_-]{1,100})\Z",
    re.ASCII,
)
_CHANNEL_RE = re.compile(
    r"\Aprojects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]{1,30}\Z"
)


class DeviceSelectorSettings(SettingsSection):
    """Which devices operators may reach: node labels (exact values) and/or thing groups."""

    labels: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    thing_groups: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _names_devices(self) -> Self:
        core_problem(lambda: validate_selector(self.labels, self.thing_groups))
        return self


class GcpAccessProxySettings(SettingsSection):
    """Teleport on GKE in front of the devices (``gcp.accessProxy``).

    Default: SSH only, at most 60 minutes per request (720 at most), a reason on every request,
    one approval, 15-minute idle timeout, 15-minute join tokens, chart 15.3.1,
    namespace and release ``teleport``, Firestore collections ``teleport-backend``
    and ``teleport-events``. Required: ``clusterName``, ``image`` (tag and digest),
    ``serviceAccount``, ``recordingsBucket``, ``requesters``, ``approvers``,
    ``deviceSelector``.
    """

    #: The proxy's public DNS name (TLS via ACME or your certificate); agents dial out to it.
    cluster_name: str
    #: ``REPOSITORY:TAG@sha256:DIGEST``; the tag must equal ``chartVersion``.
    image: str
    chart_version: str = DEFAULT_CHART_VERSION
    namespace: str = "teleport"
    release_name: str = "teleport"
    #: The Google service account Teleport runs as (Workload Identity): Firestore and GCS.
    service_account: str
    backend_collection: str = "teleport-backend"
    audit_collection: str = "teleport-events"
    recordings_bucket: str
    allowed_services: tuple[str, ...] = TELEPORT_SERVICES
    #: The longest an access request (and so every session under it) may last: 1..720
    #: minutes, as the AWS broker's lifetime. An operator asks for less with
    #: ``tsh request create --max-duration``.
    max_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES
    #: Must stay true: a request without a reason is refused by Teleport.
    require_reason: bool = True
    requesters: tuple[str, ...]
    approvers: tuple[str, ...]
    #: Extra Teleport roles for requesters; never one with standing node access.
    requester_extra_roles: tuple[str, ...] = ()
    approvals_required: int = Field(default=1, ge=1, le=5)
    device_selector: DeviceSelectorSettings
    device_login: str = DEFAULT_DEVICE_LOGIN
    idle_timeout_minutes: int = DEFAULT_IDLE_TIMEOUT_MINUTES
    join_token_ttl_minutes: int = Field(
        default=DEFAULT_JOIN_TOKEN_TTL_MINUTES, ge=1, le=MAX_JOIN_TOKEN_TTL_MINUTES
    )
    requester_role: str = "iot-device-requester"
    access_role: str = "iot-device-access"
    approver_role: str = "iot-device-approver"
    #: Cloud Monitoring notification channels (full names) for the three alert policies.
    notification_channels: tuple[str, ...] = ()
    #: Namespace of the Prometheus/monitoring scraper allowed to reach the metrics port.
    monitoring_namespace: str | None = None
    #: Where a Cloud Logging sink exports every session and access-request event (the SIEM
    #: path), e.g. ``pubsub.googleapis.com/projects/P/topics/siem``. Default: none (the
    #: events stay in Cloud Logging and the Firestore audit collection).
    audit_sink_destination: str | None = None

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        if not _HOST_RE.match(value):
            raise ValueError(
                f"{value[:60]!r} is not a DNS name; allowed: e.g. teleport.example.com"
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        core_problem(lambda: validate_image(value, field_name=""))
        _, tag, digest = split_image(value)
        if tag is None or digest is None:
            raise ValueError(
                f"{value[:80]!r} is not pinned by tag and digest; allowed: "
                "REPOSITORY:TAG@sha256:DIGEST (the tag names the version, the digest pins it)"
            )
        return value

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, value: str) -> str:
        if not _SEMVER_RE.match(value):
            raise ValueError(f"{value[:40]!r} is not an exact chart version; allowed: e.g. 15.3.1")
        return value

    @field_validator("namespace", "release_name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        return core_problem(lambda: validate_dns_label(value, field_name=""))

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        return core_problem(lambda: validate_service_account(value, field_name=""))

    @field_validator("backend_collection", "audit_collection")
    @classmethod
    def _collection(cls, value: str) -> str:
        if not _COLLECTION_RE.match(value):
            raise ValueError(
                f"{value[:60]!r} is not a Firestore collection id; allowed: [a-zA-Z0-9_-]"
            )
        return value

    @field_validator("recordings_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET_RE.match(value) or ".." in value or value.startswith("goog"):
            raise ValueError(f"{value[:70]!r} is not a bucket name; allowed: [a-z0-9_.-], 3-63")
        return value

    @field_validator("allowed_services")
    @classmethod
    def _services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return core_problem(lambda: validate_services(value))

    @field_validator("require_reason")
    @classmethod
    def _reason(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false is not allowed; allowed: true (every access request carries a reason, "
                "as every AWS tunnel does)"
            )
        return value

    @field_validator("requesters", "approvers")
    @classmethod
    def _identities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return core_problem(lambda: validate_identities(value, field_name=""))

    @field_validator("device_login")
    @classmethod
    def _login(cls, value: str) -> str:
        return core_problem(lambda: validate_login(value))

    @field_validator("requester_role", "access_role", "approver_role")
    @classmethod
    def _role(cls, value: str) -> str:
        return core_problem(lambda: validate_role_name(value, field_name=""))

    @field_validator("notification_channels")
    @classmethod
    def _channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not _CHANNEL_RE.match(channel):
                raise ValueError(
                    f"{channel[:80]!r} is not a channel name; allowed: "
                    "projects/PROJECT/notificationChannels/ID"
                )
        return value

    @field_validator("monitoring_namespace")
    @classmethod
    def _monitoring_namespace(cls, value: str | None) -> str | None:
        return (
            None
            if value is None
            else core_problem(lambda: validate_dns_label(value, field_name=""))
        )

    @field_validator("audit_sink_destination")
    @classmethod
    def _sink(cls, value: str | None) -> str | None:
        if value is not None and not _SINK_RE.match(value):
            raise ValueError(
                f"{value[:80]!r} is not a sink destination; allowed: "
                "pubsub.googleapis.com/projects/P/topics/T, storage.googleapis.com/BUCKET, "
                "bigquery.googleapis.com/projects/P/datasets/D, "
                "logging.googleapis.com/projects/P/locations/L/buckets/B"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.policy()  # first: the lifetimes, services and selector by the tunnel rules
        _, tag, _ = split_image(self.image)
        if tag != self.chart_version:
            raise ValueError(
                f"image: tag {tag!r} differs from chartVersion {self.chart_version!r}; allowed: "
                "the image of the chart's own Teleport version"
            )
        if self.backend_collection == self.audit_collection:
            raise ValueError("auditCollection: equals backendCollection; allowed: two collections")
        # Model-level rules name their own field: pydantic's location here is the section.
        validate_extra_roles(
            self.requester_extra_roles,
            field_name="requesterExtraRoles",
            forbidden={self.access_role, self.approver_role},
        )
        overlap = sorted(set(self.requesters) & set(self.approvers))
        if overlap:
            raise ValueError(
                f"approvers: {overlap[0]!r} is also a requester; allowed: separate people "
                "(no one approves their own access)"
            )
        return self

    def resources(self) -> list[dict[str, Any]]:
        """Everything ``tctl create -f`` needs: the three roles, then the users."""
        policy = self.policy()
        users = user_resources(policy, self.requesters, self.approvers, self.requester_extra_roles)
        return [*policy.roles(), *users]

    def policy(self) -> AccessProxyPolicy:
        """The rules Teleport enforces, as :class:`AccessProxyPolicy`."""
        return AccessProxyPolicy(
            requester_role=self.requester_role,
            access_role=self.access_role,
            approver_role=self.approver_role,
            allowed_services=self.allowed_services,
            max_lifetime_minutes=self.max_lifetime_minutes,
            idle_timeout_minutes=self.idle_timeout_minutes,
            device_login=self.device_login,
            selector_labels=self.device_selector.labels,
            thing_groups=self.device_selector.thing_groups,
            approvals_required=self.approvals_required,
        )
