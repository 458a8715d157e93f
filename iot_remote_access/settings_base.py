"""The base every settings group derives from (kept apart so sections and
``settings.FleetSettings`` can import it without importing each other)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SettingsError(ValueError):
    """Settings that cannot be used; one line per problem, each naming its field."""


class SettingsSection(BaseModel):
    """Base of every settings group: frozen, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )
