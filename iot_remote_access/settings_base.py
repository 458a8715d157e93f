"""SettingsSection, the base of every settings group.

In its own module so that section modules (``settings_<name>.py``) and
``settings.py``, which imports them for FleetSettings' fields, do not import
each other in a cycle. ``iot_remote_access.settings`` re-exports it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SettingsSection(BaseModel):
    """Base of every settings group: frozen, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )
