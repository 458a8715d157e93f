"""Settings of the GCP rotation service and its planner, from ``ROTATION_*`` variables.

Validated at start: a problem stops the process before it connects anywhere, one line
per variable naming it, the value and what is allowed (exit 2). An unknown
``ROTATION_*`` variable is a problem too (a misspelt name must not fall back to a default).

The hourly budget respects Google Cloud Certificate Authority Service's issuance
quota: CreateCertificate is limited to 7 requests per second per CA on the Enterprise
tier (the tier that can revoke; DevOps allows 25 but cannot revoke), so
``ROTATION_CA_CREATE_QPS`` defaults to 7 and the budget may use at most half of an
hour of it (``budget_ceiling``: 12,600 rotations started per hour), leaving room for
retries and the pool's other users. Default budget: 500 an hour, as on AWS.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot_remote_access.core.gcp_rules import GcpRuleError, validate_project_id, validate_pubsub_id
from iot_remote_access.core.ledger import DEFAULT_LEDGER_ID, ledger_id_problem
from iot_remote_access.core.rotation_plan import (
    DEFAULT_ATTEMPT_TIMEOUT_HOURS,
    DEFAULT_BACKOFF_HOURS,
    DEFAULT_GRACE_DAYS,
    DEFAULT_HOURLY_BUDGET,
    DEFAULT_LEAD_DAYS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_HOURS,
    RotationSettings,
)
from iot_remote_access.core.stagger import DEFAULT_BASE_DAYS, DEFAULT_WINDOW_DAYS, StaggerPolicy
from iot_remote_access.core.topics import TopicModel

ENV_PREFIX = "ROTATION_"
#: CA Service CreateCertificate requests per second per CA, Enterprise tier (docs:
#: "Quotas and limits"); the tier that can revoke certificates.
CA_SERVICE_ENTERPRISE_CREATE_QPS = 7
#: Share of an hour of the CA's quota the planned rotations may use.
QUOTA_SHARE = 0.5
#: The commands topic ``gcp deploy`` creates by default (settings.gcp's default too).
DEFAULT_COMMANDS_TOPIC_ID = "iot-commands"
DEFAULT_CSR_TOPIC_ID = "iot-rotation-csr"
DEFAULT_CSR_SUBSCRIPTION_ID = "iot-rotation-csr-service"
DEFAULT_CONFIRM_TOPIC_ID = "iot-rotation-confirm"
DEFAULT_CONFIRM_SUBSCRIPTION_ID = "iot-rotation-confirm-service"
DEFAULT_CERTIFICATE_TOPIC_ID = "iot-rotation-certificates"
DEFAULT_CERTIFICATE_SUBSCRIPTION_ID = "iot-rotation-certificates-bridge"


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]")
_POOL_RE = re.compile(
    r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]{1,63}/caPools/[a-zA-Z0-9_-]{1,63}"
)


class RotationSettingsError(ValueError):
    """Unusable settings; one line per problem, each naming its environment variable."""


class GcpRotationSettings(BaseSettings):
    """Every setting of the rotation service and planner; each field is ``ROTATION_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    project: str
    #: ``ca-service`` (Certificate Authority Service, ``gcp_ca/rotation_issuer.py``), or
    #: ``module`` / ``module:callable`` returning a ``core.certificate_issuer.CertificateIssuer``.
    issuer: str = "ca-service"
    #: The CA Service issuer's pool, ``projects/P/locations/L/caPools/POOL``.
    ca_pool: str = ""
    #: The pool's maximum certificate lifetime (the issuer refuses longer requests).
    ca_maximum_lifetime_days: int = Field(default=454, ge=1, le=3650)
    #: Empty: Google's endpoint. A loopback ``HOST:PORT``: a local stand-in (tests).
    ca_endpoint: str = ""
    firestore_database: str = "(default)"
    inventory_collection: str = "iot-device-inventory"
    ledger_collection: str = "iot-stagger-ledger"
    csr_subscription: str = DEFAULT_CSR_SUBSCRIPTION_ID
    confirm_subscription: str = DEFAULT_CONFIRM_SUBSCRIPTION_ID
    certificate_topic: str = DEFAULT_CERTIFICATE_TOPIC_ID
    commands_topic: str = DEFAULT_COMMANDS_TOPIC_ID
    base_validity_days: int = Field(default=DEFAULT_BASE_DAYS, ge=1, le=3650)
    stagger_window_days: int = Field(default=DEFAULT_WINDOW_DAYS, ge=1, le=365)
    lead_days: int = Field(default=DEFAULT_LEAD_DAYS, ge=30, le=3652)
    hourly_budget: int = Field(default=DEFAULT_HOURLY_BUDGET, ge=1, le=1_000_000)
    ca_create_qps: int = Field(default=CA_SERVICE_ENTERPRISE_CREATE_QPS, ge=1, le=1000)
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    backoff_hours: int = Field(default=DEFAULT_BACKOFF_HOURS, ge=1, le=720)
    max_backoff_hours: int = Field(default=DEFAULT_MAX_BACKOFF_HOURS, ge=1, le=720)
    attempt_timeout_hours: int = Field(default=DEFAULT_ATTEMPT_TIMEOUT_HOURS, ge=1, le=336)
    grace_days: int = Field(default=DEFAULT_GRACE_DAYS, ge=0, le=365)
    issuing_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    retry_seconds: float = Field(default=30.0, ge=1, le=600)
    max_inflight: int = Field(default=10, ge=1, le=1000)
    #: Seconds per lease extension: a dead replica's messages come back this soon.
    lease_extension_seconds: int = Field(default=10, ge=10, le=600)
    http_host: str = "0.0.0.0"  # noqa: S104  # probes come from outside the pod
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: The access ledger's anchor bucket (``ledger.gcp.bucket``): the chain of certificate
    #: decisions is kept there, one write-once object per record. Empty: no ledger.
    access_ledger_bucket: str = ""
    access_ledger_id: str = DEFAULT_LEDGER_ID

    @field_validator("access_ledger_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if value and not _BUCKET_RE.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is not a Cloud Storage bucket name; allowed: 3-63 of a-z, "
                "0-9, '-', '_', '.', starting and ending with a letter or digit"
            )
        return value

    @field_validator("access_ledger_id")
    @classmethod
    def _ledger_id(cls, value: str) -> str:
        problem = ledger_id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return _checked(validate_project_id, value)

    @field_validator(
        "csr_subscription", "confirm_subscription", "certificate_topic", "commands_topic"
    )
    @classmethod
    def _pubsub_id(cls, value: str) -> str:
        return _checked(validate_pubsub_id, value)

    @field_validator("ca_pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if value and not _POOL_RE.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is not a CA pool; allowed: projects/P/locations/L/caPools/POOL"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.issuer == "ca-service" and not self.ca_pool:
            raise ValueError("ROTATION_CA_POOL: not set; required with ROTATION_ISSUER ca-service")
        if self.hourly_budget > self.budget_ceiling:
            raise ValueError(
                f"ROTATION_HOURLY_BUDGET {self.hourly_budget} is above "
                f"{self.budget_ceiling} (half an hour of ROTATION_CA_CREATE_QPS "
                f"{self.ca_create_qps}); allowed: at most {self.budget_ceiling}"
            )
        self.rotation_settings()  # the planner's own cross-checks
        return self

    @property
    def budget_ceiling(self) -> int:
        return int(self.ca_create_qps * 3600 * QUOTA_SHARE)

    def rotation_settings(self) -> RotationSettings:
        return RotationSettings(
            lead_days=self.lead_days,
            hourly_budget=self.hourly_budget,
            max_attempts=self.max_attempts,
            backoff_hours=self.backoff_hours,
            max_backoff_hours=self.max_backoff_hours,
            attempt_timeout_hours=self.attempt_timeout_hours,
            grace_days=self.grace_days,
        )

    def stagger_policy(self) -> StaggerPolicy:
        return StaggerPolicy(
            base_days=self.base_validity_days, window_days=self.stagger_window_days
        )

    def topics(self) -> TopicModel:
        return TopicModel()

    def topic_path(self, topic_id: str) -> str:
        return f"projects/{self.project}/topics/{topic_id}"

    def subscription_path(self, subscription_id: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription_id}"

    @classmethod
    def from_environment(cls) -> GcpRotationSettings:
        known = {ENV_PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(n for n in os.environ if n.startswith(ENV_PREFIX) and n not in known)
        if unknown:
            hints = [
                f"{name[:60]} (did you mean {close[0]}?)" if close else name[:60]
                for name in unknown
                for close in [difflib.get_close_matches(name, sorted(known), n=1)]
            ]
            raise RotationSettingsError(
                f"unknown variable(s) {', '.join(hints)}; allowed: the ROTATION_* variables "
                "of docs/gcp-rotation.md"
            )
        try:
            return cls()  # type: ignore[call-arg]  # required values come from the environment
        except ValidationError as error:
            raise RotationSettingsError(_describe(error)) from None


def _checked(check: Callable[..., str], value: str) -> str:
    """A core rule inside a validator: its problem without the core's field name."""
    try:
        return check(value, field_name="")
    except GcpRuleError as error:
        raise ValueError(error.problem) from None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        name = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(message)
        elif item["type"] == "missing":
            lines.append(f"{name}: not set; required")
        else:
            lines.append(f"{name}: {str(item['input'])[:60]!r}: {message}")
    return "\n".join(lines)
