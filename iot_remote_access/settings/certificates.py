"""The ``certificates`` settings section: staggered validity and rotation (AWS).

Every limit is stated once here; a bad value stops synthesis with a line naming
``iot-remote-access.certificates.<key>``, the value and what is allowed.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from iot_remote_access.core.bounded_input import excerpt
from iot_remote_access.core.rotation_plan import (
    DEFAULT_ATTEMPT_TIMEOUT_HOURS,
    DEFAULT_BACKOFF_HOURS,
    DEFAULT_GRACE_DAYS,
    DEFAULT_HOURLY_BUDGET,
    DEFAULT_LEAD_DAYS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_HOURS,
    MAX_LEAD_DAYS,
    MIN_LEAD_DAYS,
    RotationSettings,
)
from iot_remote_access.core.stagger import (
    DEFAULT_BASE_DAYS,
    DEFAULT_WINDOW_DAYS,
    MAX_VALIDITY_DAYS,
    MAX_WINDOW_DAYS,
    StaggerPolicy,
)
from iot_remote_access.settings.base import SettingsSection

_CA_ARN = re.compile(
    r"arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/[0-9a-f-]{36}"
)


class CertificateSettings(SettingsSection):
    """Staggered certificate validity and rotation.

    Default: a new ACM Private CA, validity 365 days + up to 90 days of stagger,
    rotation from 90 days before expiry, at most 500 rotations started per hour.
    """

    #: An existing ACM Private CA to issue from. Default: the stack creates one.
    ca_arn: str | None = None
    #: Common name of the CA the stack creates.
    ca_common_name: str = Field(default="iot-remote-access device CA", min_length=1, max_length=64)
    base_validity_days: int = Field(default=DEFAULT_BASE_DAYS, ge=1, le=MAX_VALIDITY_DAYS)
    stagger_window_days: int = Field(default=DEFAULT_WINDOW_DAYS, ge=1, le=MAX_WINDOW_DAYS)
    lead_time_days: int = Field(default=DEFAULT_LEAD_DAYS, ge=MIN_LEAD_DAYS, le=MAX_LEAD_DAYS)
    hourly_rotation_budget: int = Field(default=DEFAULT_HOURLY_BUDGET, ge=1, le=100_000)
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    retry_backoff_hours: int = Field(default=DEFAULT_BACKOFF_HOURS, ge=1, le=720)
    max_retry_backoff_hours: int = Field(default=DEFAULT_MAX_BACKOFF_HOURS, ge=1, le=720)
    attempt_timeout_hours: int = Field(default=DEFAULT_ATTEMPT_TIMEOUT_HOURS, ge=1, le=336)
    grace_period_days: int = Field(default=DEFAULT_GRACE_DAYS, ge=0, le=365)
    #: Hour (UTC, 0-23) of the daily plan and the Device Defender audit.
    daily_run_hour: int = Field(default=2, ge=0, le=23)

    @field_validator("ca_arn")
    @classmethod
    def _ca_arn(cls, value: str | None) -> str | None:
        if value is not None and not _CA_ARN.fullmatch(value):
            raise ValueError(
                f"{excerpt(value)} is not an ACM Private CA ARN; allowed: "
                "arn:aws:acm-pca:REGION:ACCOUNT:certificate-authority/UUID"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        validity = self.base_validity_days + self.stagger_window_days - 1
        if validity > MAX_VALIDITY_DAYS:
            raise ValueError(
                f"baseValidityDays + staggerWindowDays: {self.base_validity_days} + "
                f"{self.stagger_window_days} gives {validity} days; allowed: at most "
                f"{MAX_VALIDITY_DAYS}"
            )
        if self.lead_time_days >= self.base_validity_days:
            raise ValueError(
                f"leadTimeDays: {self.lead_time_days} is not below baseValidityDays "
                f"{self.base_validity_days}; allowed: a lead time shorter than the validity"
            )
        if self.max_retry_backoff_hours < self.retry_backoff_hours:
            raise ValueError(
                f"maxRetryBackoffHours: {self.max_retry_backoff_hours} is below "
                f"retryBackoffHours {self.retry_backoff_hours}; allowed: at least that"
            )
        return self

    def stagger_policy(self) -> StaggerPolicy:
        return StaggerPolicy(
            base_days=self.base_validity_days, window_days=self.stagger_window_days
        )

    def rotation_settings(self) -> RotationSettings:
        return RotationSettings(
            lead_days=self.lead_time_days,
            hourly_budget=self.hourly_rotation_budget,
            max_attempts=self.max_attempts,
            backoff_hours=self.retry_backoff_hours,
            max_backoff_hours=self.max_retry_backoff_hours,
            attempt_timeout_hours=self.attempt_timeout_hours,
            grace_days=self.grace_period_days,
        )
