"""The bridge's settings, from ``BRIDGE_*`` environment variables, validated at start.

A problem stops the bridge before it connects anywhere, with one line per
variable naming it, the value and what is allowed. A ``BRIDGE_*`` variable the
bridge does not know is such a problem too: a misspelt name must never fall
back, silently, to a default (a share group the broker does not allow, say).
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot_remote_access.core.gcp_rules import validate_project_id
from iot_remote_access.core.shared_subscription import (
    DEFAULT_SHARE_GROUP,
    shared_subscription,
    validate_share_group,
)
from iot_remote_access.core.topics import (
    DEFAULT_COMMAND_RESPONSES_TOPIC,
    DEFAULT_COMMANDS_TOPIC,
    DEFAULT_TELEMETRY_TOPIC,
    THING_NAME_RULE,
    validate_topic_template,
)
from iot_remote_access.settings.base import compiled_pattern, core_check
from iot_remote_access.settings.gcp import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_BRIDGE_SUBSCRIPTION_ID,
    DEFAULT_COMMANDS_TOPIC_ID,
    DEFAULT_TELEMETRY_TOPIC_ID,
    validate_resource_id,
)

ENV_PREFIX = "BRIDGE_"
_CLIENT_ID_RE = re.compile(r"\A[a-zA-Z0-9._:-]{1,128}\Z")


class BridgeSettingsError(ValueError):
    """Unusable settings; one line per problem, each naming its environment variable."""


class BridgeSettings(BaseSettings):
    """Every setting of the bridge. Each field is the variable ``BRIDGE_<NAME>``.

    Default: broker port 8883, share group ``pubsub-bridge``, the topic model's
    default topics, the Pub/Sub names that ``gcp deploy`` creates by default,
    1000 telemetry messages in flight (the MQTT receive maximum), 100 commands
    in flight, health and metrics on port 8080, 20 s to drain on shutdown, 30 s
    stall bound (readiness, parking; at most 1000 parked), 1 s of quiet ends a
    drain, repeating warnings at most every 10 s.
    """

    # Unknown BRIDGE_* variables are refused by from_environment (pydantic-settings'
    # "forbid" does not apply to environment variables); others are none of ours.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    project: str
    mqtt_host: str
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    mqtt_ca_file: Path
    mqtt_cert_file: Path
    mqtt_key_file: Path
    #: Keep it stable per replica (e.g. a StatefulSet pod name): the broker keeps
    #: the session, with the messages not yet acknowledged, under this id.
    mqtt_client_id: str = Field(default_factory=socket.gethostname)
    mqtt_keepalive_seconds: int = Field(default=30, ge=5, le=3600)
    # At least a minute: a replacement replica (same client id) resumes the session after
    # SIGKILL; 0 would drop what the broker queued for it. A clean drain sets 0 itself.
    mqtt_session_expiry_seconds: int = Field(default=3600, ge=60, le=4_294_967_295)
    share_group: str = DEFAULT_SHARE_GROUP
    telemetry_topic: str = DEFAULT_TELEMETRY_TOPIC
    commands_topic: str = DEFAULT_COMMANDS_TOPIC
    #: Where devices answer remote commands (the topic model's responses template).
    responses_topic: str = DEFAULT_COMMAND_RESPONSES_TOPIC
    thing_name_pattern: str = THING_NAME_RULE
    pubsub_telemetry_topic: str = DEFAULT_TELEMETRY_TOPIC_ID
    pubsub_telemetry_dead_letter_topic: str = DEFAULT_TELEMETRY_TOPIC_ID + DEAD_LETTER_SUFFIX
    pubsub_commands_subscription: str = DEFAULT_BRIDGE_SUBSCRIPTION_ID
    pubsub_commands_dead_letter_topic: str = DEFAULT_COMMANDS_TOPIC_ID + DEAD_LETTER_SUFFIX
    #: The Pub/Sub topic command responses go to; empty: the responses path is off (the
    #: bridge does not subscribe to responses). Its dead-letter topic is this id plus
    #: ``-dead-letter``.
    pubsub_responses_topic: str = ""
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    max_inflight_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_inflight_commands: int = Field(default=100, ge=1, le=10_000)
    http_host: str = "0.0.0.0"  # noqa: S104  # probes and scrapes come from outside the pod
    http_port: int = Field(default=8080, ge=0, le=65535)
    drain_timeout_seconds: float = Field(default=20.0, ge=0, le=600)
    reconnect_min_seconds: int = Field(default=1, ge=1, le=60)
    reconnect_max_seconds: int = Field(default=30, ge=1, le=600)
    publish_timeout_seconds: float = Field(default=30.0, ge=1, le=600)
    #: A message unconfirmed this long makes /readyz fail; one that holds back later
    #: PUBACKs this long is parked (acknowledged, kept in memory, retried).
    stall_seconds: float = Field(default=30.0, ge=1, le=3600)
    max_parked_messages: int = Field(default=1000, ge=0, le=100_000)
    #: On SIGTERM, after unsubscribing: the broker is done sending when nothing came this long.
    drain_quiet_seconds: float = Field(default=1.0, ge=0.1, le=60)
    #: A repeating warning (same event, same cause) is logged at most once per interval.
    log_interval_seconds: float = Field(default=10.0, ge=1, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return core_check(validate_project_id, value)

    @field_validator("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{str(value)!r} is not a file; allowed: a readable PEM file")
        try:
            with value.open("rb"):
                pass
        except OSError as error:
            raise ValueError(f"{str(value)!r} cannot be read ({error.strerror})") from None
        return value

    @field_validator("mqtt_client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if not _CLIENT_ID_RE.match(value):
            raise ValueError(f"{value!r} is not a client id; allowed: [a-zA-Z0-9._:-]{{1,128}}")
        return value

    @field_validator("share_group")
    @classmethod
    def _share_group(cls, value: str) -> str:
        return core_check(validate_share_group, value)

    @field_validator("telemetry_topic", "commands_topic", "responses_topic")
    @classmethod
    def _template(cls, value: str) -> str:
        return core_check(validate_topic_template, value)

    @field_validator("thing_name_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return compiled_pattern(value)

    @field_validator(
        "pubsub_telemetry_topic",
        "pubsub_telemetry_dead_letter_topic",
        "pubsub_commands_subscription",
        "pubsub_commands_dead_letter_topic",
    )
    @classmethod
    def _pubsub_id(cls, value: str) -> str:
        return validate_resource_id(value)

    @field_validator("pubsub_responses_topic")
    @classmethod
    def _responses_id(cls, value: str) -> str:
        # Leaves room for the dead-letter suffix within Pub/Sub's 255 characters.
        if value and len(value) > 255 - len(DEAD_LETTER_SUFFIX):
            raise ValueError(
                f"{value[:40]!r}... is {len(value)} characters; allowed: at most "
                f"{255 - len(DEAD_LETTER_SUFFIX)} (room for {DEAD_LETTER_SUFFIX!r})"
            )
        return validate_resource_id(value) if value else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise ValueError(
                f"BRIDGE_RECONNECT_MIN_SECONDS {self.reconnect_min_seconds} is above "
                f"BRIDGE_RECONNECT_MAX_SECONDS {self.reconnect_max_seconds}; allowed: min <= max"
            )
        named = {
            "BRIDGE_TELEMETRY_TOPIC": self.telemetry_topic,
            "BRIDGE_COMMANDS_TOPIC": self.commands_topic,
            "BRIDGE_RESPONSES_TOPIC": self.responses_topic,
        }
        seen: dict[str, str] = {}
        for name, topic in named.items():
            if topic in seen:
                raise ValueError(
                    f"{seen[topic]} and {name} are both {topic!r}; allowed: distinct topics"
                )
            seen[topic] = name
        return self

    # -- derived -------------------------------------------------------------

    @property
    def subscription(self) -> str:
        """The shared subscription, e.g. ``$share/pubsub-bridge/dt/+/telemetry``."""
        return shared_subscription(self.telemetry_topic, self.share_group)

    @property
    def responses_on(self) -> bool:
        """The responses path (MQTT -> Pub/Sub) is on: a Pub/Sub topic is set for it."""
        return bool(self.pubsub_responses_topic)

    @property
    def responses_subscription(self) -> str:
        """The shared subscription on every responses topic, e.g.
        ``$share/pubsub-bridge/cmd/+/responses``."""
        return shared_subscription(self.responses_topic, self.share_group)

    @property
    def responses_dead_letter_topic(self) -> str:
        return self.pubsub_responses_topic + DEAD_LETTER_SUFFIX

    def topic_path(self, topic_id: str) -> str:
        return f"projects/{self.project}/topics/{topic_id}"

    @property
    def commands_subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.pubsub_commands_subscription}"

    @classmethod
    def variable_names(cls) -> frozenset[str]:
        """Every ``BRIDGE_*`` variable the bridge reads."""
        return frozenset(ENV_PREFIX + name.upper() for name in cls.model_fields)

    @classmethod
    def from_environment(cls) -> BridgeSettings:
        """Read and validate ``BRIDGE_*``; raise :class:`BridgeSettingsError` naming each one."""
        unknown = unknown_variables(os.environ)
        if unknown:
            raise BridgeSettingsError(unknown)
        try:
            return cls()  # type: ignore[call-arg]  # required values come from the environment
        except ValidationError as error:
            raise BridgeSettingsError(_describe(error)) from None


def unknown_variables(environ: Mapping[str, str]) -> str:
    """One line naming every ``BRIDGE_*`` variable in ``environ`` the bridge does not read
    (with the closest known name), or ``""`` when there is none."""
    known = BridgeSettings.variable_names()
    names = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if not names:
        return ""
    described = []
    for name in names:
        shown = name if len(name) <= 60 else name[:57] + "..."
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        described.append(f"{shown} (did you mean {close[0]}?)" if close else shown)
    return (
        f"unknown variable{'s' if len(names) > 1 else ''} {', '.join(described)}; "
        "allowed: the BRIDGE_* variables the bridge reads (docs/bridge-deploy.md)"
    )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        name = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(message)
        elif item["type"] == "missing":
            lines.append(f"{name}: not set; required")
        elif item["type"] == "value_error":
            lines.append(f"{name}: {message}")
        else:
            lines.append(f"{name}: {item['input']!r}: {message}")
    return "\n".join(lines)
