"""Settings of the device topic model v2 (``topics`` in ``cdk.json``): what else a device uses.

Declared per-device topics (any number, each a template over ``{thing}``), the
device's own Device Shadows, and AWS IoT Jobs. Every value is checked by the
same core rules as the renderers use (:mod:`iot_remote_access.core.topics`), so
a setting accepted here renders the same on AWS, mosquitto and HiveMQ.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import field_validator, model_validator

from iot_remote_access.core.topics import (
    Access,
    CustomTopic,
    ShadowOperation,
    Shadows,
    validate_job_id,
    validate_topic_template,
)
from iot_remote_access.settings.base import SettingsSection, core_check, core_problem


class CustomTopicSettings(SettingsSection):
    """One declared topic: ``name``, ``template`` (over ``{thing}``) and ``access``."""

    name: str
    template: str
    access: Literal["publish", "subscribe"]

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return core_check(validate_topic_template, value)

    def topic(self) -> CustomTopic:
        return core_problem(lambda: CustomTopic(self.name, self.template, Access(self.access)))

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.topic()
        return self


class ShadowSettings(SettingsSection):
    """The device's own shadows. Default: none; ``operations`` default get, update and delete."""

    classic: bool = False
    named: tuple[str, ...] = ()
    operations: tuple[Literal["get", "update", "delete"], ...] = ("get", "update", "delete")

    def shadows(self) -> Shadows:
        return core_problem(
            lambda: Shadows(
                classic=self.classic,
                named=self.named,
                operations=tuple(ShadowOperation(o) for o in self.operations),
            )
        )

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.shadows()
        return self


class JobsSettings(SettingsSection):
    """AWS IoT Jobs for each device's own thing. Default: off.

    ``anyJobId``: the update topics work for every job id (the policy names the
    job-id level with ``*``, under the device's own ``$aws/things/<thing>/jobs/``);
    otherwise only the ``jobIds`` listed get update topics.
    """

    enabled: bool = False
    any_job_id: bool = False
    job_ids: tuple[str, ...] = ()

    @field_validator("job_ids")
    @classmethod
    def _ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for job_id in value:
            core_check(validate_job_id, job_id)
        return value

    @model_validator(mode="after")
    def _needs_enabled(self) -> Self:
        if (self.any_job_id or self.job_ids) and not self.enabled:
            raise ValueError("anyJobId/jobIds given while enabled is false; allowed: enabled true")
        return self


class TopicsSettings(SettingsSection):
    """The topic model v2. Default: no declared topics, no shadows, no jobs."""

    custom: tuple[CustomTopicSettings, ...] = ()
    shadows: ShadowSettings = ShadowSettings()
    jobs: JobsSettings = JobsSettings()

    def custom_topics(self) -> tuple[CustomTopic, ...]:
        return tuple(c.topic() for c in self.custom)
