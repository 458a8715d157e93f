"""FleetSettings: the one typed settings model of the library.

Read from the CDK context key ``iot-remote-access`` (``cdk.json``) for the AWS
stacks, or from a JSON/YAML settings file for the Azure and GCP CLI. Keys are
camelCase in files (the cdk.json convention) and snake_case in Python.

Every value is validated once, here; a bad value raises :class:`SettingsError`
whose lines name the field, the value received and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import field_validator, model_validator

from iot_remote_access.core.aws_policy import check_policy_size
from iot_remote_access.core.bounded_input import BoundedInputError
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.core.topics import (
    DEFAULT_COMMAND_RESPONSES_TOPIC,
    DEFAULT_COMMANDS_TOPIC,
    DEFAULT_ROTATION_CERTIFICATE_TOPIC,
    DEFAULT_ROTATION_CONFIRM_TOPIC,
    DEFAULT_ROTATION_CSR_TOPIC,
    DEFAULT_TELEMETRY_TOPIC,
    THING_NAME_RULE,
    DeviceAccess,
    TopicModel,
    TopicModelError,
    validate_topic_template,
)
from iot_remote_access.settings.azure import AzureSettings
from iot_remote_access.settings.base import (
    CONTEXT_KEY,
    SettingsError,
    SettingsSection,
    compiled_pattern,
    core_check,
)
from iot_remote_access.settings.certificates import CertificateSettings
from iot_remote_access.settings.commands import CommandsSettings
from iot_remote_access.settings.files import read_settings_file
from iot_remote_access.settings.gcp import GcpSettings
from iot_remote_access.settings.hivemq import HivemqSettings
from iot_remote_access.settings.ledger import LedgerSettings
from iot_remote_access.settings.loading import format_validation_error, validate_settings
from iot_remote_access.settings.monitoring import MonitoringSettings
from iot_remote_access.settings.topics import TopicsSettings
from iot_remote_access.settings.tunnel_alarms import TunnelAlarmsSettings
from iot_remote_access.settings.tunneling import TunnelingSettings

__all__ = [
    "CONTEXT_KEY",
    "FleetSettings",
    "SettingsError",
    "SettingsSection",
    "format_validation_error",
]


class FleetSettings(SettingsSection):
    """Settings shared by every cloud.

    Default: the topic layout ``dt/{thing}/telemetry`` and ``cmd/{thing}/commands``
    and AWS IoT's thing-name rule.
    """

    telemetry_topic: str = DEFAULT_TELEMETRY_TOPIC
    commands_topic: str = DEFAULT_COMMANDS_TOPIC
    rotation_csr_topic: str = DEFAULT_ROTATION_CSR_TOPIC
    rotation_certificate_topic: str = DEFAULT_ROTATION_CERTIFICATE_TOPIC
    rotation_confirm_topic: str = DEFAULT_ROTATION_CONFIRM_TOPIC
    #: Where a device answers remote commands (granted only with commands on).
    command_responses_topic: str = DEFAULT_COMMAND_RESPONSES_TOPIC
    #: A regular expression every thing name must match in full, on top of AWS's
    #: own rule; narrow it to your naming scheme (e.g. ``sensor-[0-9]{6}``).
    thing_name_pattern: str = THING_NAME_RULE
    #: HiveMQ on GKE (``gcp manifests``, with the ``gcp`` section). Default: none.
    hivemq: HivemqSettings | None = None
    #: The Azure deployment (``iot-remote-access azure plan|deploy``). Default: none.
    azure: AzureSettings | None = None
    #: Security monitoring and SIEM export (AWS); see MonitoringSettings.
    monitoring: MonitoringSettings = MonitoringSettings()
    #: Staggered certificate validity and rotation (AWS). Default: none (off).
    certificates: CertificateSettings | None = None
    #: Secure Tunneling: broker limits, sweeper, audit trail (``SecureTunneling``).
    tunneling: TunnelingSettings = TunnelingSettings()
    #: Tunnel metrics, alarms and dashboard (the ``TunnelAlarms`` construct). Default: on.
    tunnel_alarms: TunnelAlarmsSettings = TunnelAlarmsSettings()
    #: Google Cloud: the project, the Pub/Sub topology and the bridge
    #: (``iot-remote-access gcp plan|deploy|manifests``).
    gcp: GcpSettings | None = None
    #: The tamper-evident access ledger (``AccessLedger``): retention, anchor interval.
    ledger: LedgerSettings = LedgerSettings()
    #: Remote commands: the catalogue the ``CommandBroker`` enforces. Default: off.
    commands: CommandsSettings = CommandsSettings()
    #: Topic model v2: declared per-device topics, Device Shadows, Jobs. Default: none.
    topics: TopicsSettings = TopicsSettings()

    @field_validator(
        "telemetry_topic",
        "commands_topic",
        "rotation_csr_topic",
        "rotation_certificate_topic",
        "rotation_confirm_topic",
        "command_responses_topic",
    )
    @classmethod
    def _topic_template(cls, value: str) -> str:
        return core_check(validate_topic_template, value)

    @field_validator("thing_name_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        compiled_pattern(value)
        if not value:
            raise ValueError("'' is empty; allowed: a regular expression such as 'sensor-[0-9]+'")
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Self:
        try:
            self.device_access(
                tunneling=True, rotation=True, command_responses=self.commands.enabled
            )
        except TopicModelError as error:
            raise ValueError(str(error)) from None
        return self

    @model_validator(mode="after")
    def _policy_fits(self) -> Self:
        """The AWS device policy with every switch the settings can turn on fits AWS's limit.

        Checked for every cloud: like the thing-name rule, AWS's limits hold everywhere
        so that one fleet can move between clouds (docs/topics-v2.md).
        """
        access = self.device_access(
            tunneling=True,
            rotation=self.certificates is not None,
            command_responses=self.commands.enabled,
        )
        try:
            check_policy_size(access)
        except TopicModelError as error:
            raise ValueError(str(error)) from None
        return self

    @model_validator(mode="after")
    def _gcp_ca_fits_stagger(self) -> Self:
        """CA Service's pool maximum never cuts a staggered validity short (that would pile
        the cut certificates onto one expiry day)."""
        authority = None if self.gcp is None else self.gcp.certificate_authority
        if authority is None:
            return self
        policy = self.stagger_policy()
        longest = policy.base_days + policy.window_days - 1
        maximum = authority.certificate_lifetime_days(longest)
        if maximum < longest:
            raise ValueError(
                f"gcp.certificateAuthority.maximumCertificateLifetimeDays: {maximum} is below "
                f"the longest staggered validity {longest} (certificates.baseValidityDays + "
                f"staggerWindowDays - 1); allowed: at least {longest}"
            )
        if authority.ca_lifetime_days <= maximum:
            raise ValueError(
                f"gcp.certificateAuthority.caLifetimeDays: {authority.ca_lifetime_days} is not "
                f"above the certificates' maximum lifetime {maximum}; allowed: more than {maximum}"
            )
        return self

    def stagger_policy(self) -> StaggerPolicy:
        """The staggered validity of every cloud: ``certificates`` or its defaults."""
        if self.certificates is None:
            return StaggerPolicy()
        return self.certificates.stagger_policy()

    @model_validator(mode="after")
    def _gcp_for_hivemq(self) -> Self:
        """HiveMQ on GKE takes its Pub/Sub names and its bridge from the ``gcp`` section."""
        if self.hivemq is None:
            return self
        if self.gcp is None:
            raise ValueError(
                "gcp: missing; required with hivemq (projectId, projectNumber, pubsub, bridge: "
                "see examples/gcp-settings.yaml)"
            )
        if self.gcp.project_id is None:
            raise ValueError(
                "gcp.projectId: missing; required with hivemq (the project the bridge or the "
                "Pub/Sub extension publishes to)"
            )
        if self.hivemq.integration == "bridge" and self.gcp.bridge.image is None:
            raise ValueError(
                "gcp.bridge.image: missing; required with hivemq.integration 'bridge' "
                "(a pinned image such as 'REGISTRY/pubsub-bridge:0.1.0')"
            )
        return self

    def topic_model(self) -> TopicModel:
        return TopicModel(
            telemetry=self.telemetry_topic,
            commands=self.commands_topic,
            rotation_csr=self.rotation_csr_topic,
            rotation_certificate=self.rotation_certificate_topic,
            rotation_confirm=self.rotation_confirm_topic,
            responses=self.command_responses_topic,
        )

    def device_access(
        self, *, tunneling: bool = False, rotation: bool = False, command_responses: bool = False
    ) -> DeviceAccess:
        """Every topic a device may use: the topic model, ``topics`` and the given switches."""
        jobs = self.topics.jobs
        return DeviceAccess(
            topics=self.topic_model(),
            tunneling=tunneling,
            rotation=rotation,
            jobs=jobs.enabled,
            job_ids=jobs.job_ids,
            any_job_id=jobs.any_job_id,
            command_responses=command_responses,
            shadows=self.topics.shadows.shadows(),
            custom=self.topics.custom_topics(),
        )

    def thing_name_matches(self, thing: str) -> bool:
        """Whether ``thing`` satisfies the fleet's pattern (AWS's rule is checked separately)."""
        return re.fullmatch(self.thing_name_pattern, thing) is not None

    # -- loading -------------------------------------------------------------

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, *, source: str = CONTEXT_KEY) -> Self:
        """Validate ``raw`` (e.g. the cdk.json context); SettingsError naming ``source.field``."""
        return validate_settings(cls, raw, source)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Settings from a JSON or YAML file (the Azure/GCP CLI's ``--settings``).

        Read within limits (size, depth, no YAML aliases, no duplicate keys; see
        ``settings.files``); the settings may sit under the ``iot-remote-access`` key.
        """
        path = Path(path)
        try:
            raw = read_settings_file(path)
        except BoundedInputError as error:
            raise SettingsError(str(error)) from None
        if isinstance(raw, Mapping) and CONTEXT_KEY in raw:
            raw = raw[CONTEXT_KEY]
        return cls.parse(raw, source=str(path))
