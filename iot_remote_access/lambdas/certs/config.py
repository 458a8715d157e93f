"""Settings of the rotation Lambdas, read once from their environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from iot_remote_access.core.rotation_plan import RotationSettings
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.core.topics import TopicModel


class ConfigError(RuntimeError):
    """The function's environment is incomplete (a deployment defect, not bad input)."""


@dataclass(frozen=True)
class RotationConfig:
    table_name: str
    ca_arn: str
    policy_name: str
    topics: TopicModel
    stagger: StaggerPolicy
    plan: RotationSettings
    queue_url: str | None = None
    iot_data_endpoint: str | None = None
    #: Above this many actions the planner fans out through SQS instead of looping.
    inline_limit: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RotationConfig:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name)
            if not value:
                raise ConfigError(f"environment variable {name} is not set")
            return value

        def number(name: str, default: int) -> int:
            raw = env.get(name)
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ConfigError(
                    f"environment variable {name}: {raw!r} is not an integer"
                ) from None

        defaults = RotationSettings()
        stagger = StaggerPolicy()
        return cls(
            table_name=need("INVENTORY_TABLE"),
            ca_arn=env.get("CA_ARN", ""),
            policy_name=env.get("DEVICE_POLICY_NAME", ""),
            topics=TopicModel(
                commands=env.get("COMMANDS_TOPIC", TopicModel.commands),
                rotation_csr=env.get("ROTATION_CSR_TOPIC", TopicModel.rotation_csr),
                rotation_certificate=env.get(
                    "ROTATION_CERTIFICATE_TOPIC", TopicModel.rotation_certificate
                ),
                rotation_confirm=env.get("ROTATION_CONFIRM_TOPIC", TopicModel.rotation_confirm),
            ),
            stagger=StaggerPolicy(
                base_days=number("BASE_VALIDITY_DAYS", stagger.base_days),
                window_days=number("STAGGER_WINDOW_DAYS", stagger.window_days),
            ),
            plan=RotationSettings(
                lead_days=number("LEAD_DAYS", defaults.lead_days),
                hourly_budget=number("HOURLY_BUDGET", defaults.hourly_budget),
                max_attempts=number("MAX_ATTEMPTS", defaults.max_attempts),
                backoff_hours=number("BACKOFF_HOURS", defaults.backoff_hours),
                max_backoff_hours=number("MAX_BACKOFF_HOURS", defaults.max_backoff_hours),
                attempt_timeout_hours=number(
                    "ATTEMPT_TIMEOUT_HOURS", defaults.attempt_timeout_hours
                ),
                grace_days=number("GRACE_DAYS", defaults.grace_days),
            ),
            queue_url=env.get("WORK_QUEUE_URL") or None,
            iot_data_endpoint=env.get("IOT_DATA_ENDPOINT") or None,
            inline_limit=number("INLINE_LIMIT", 100),
        )
