"""The base of every settings group, in a module of its own.

Cloud sections (``settings_gcp``, ...) subclass it, and ``settings`` imports
those sections for ``FleetSettings``; keeping the base here means a section
module can be imported first without an import cycle.
"""

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
