"""The base of every settings group, in a module of its own.

Cloud sections (``settings_gcp``, ...) subclass it, and ``settings`` imports
those sections for ``FleetSettings``; keeping the base here means a section
module can be imported first without an import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class SettingsError(ValueError):
    """Settings that cannot be used; one line per problem, each naming its field."""


class SettingsSection(BaseModel):
    """Base of every settings group: frozen, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


def core_problem(check: Callable[[], T]) -> T:
    """Run a core rule inside a pydantic validator.

    Core errors (TopicModelError, ManifestValueError, TunnelRuleError, ...) carry
    ``problem``, the message without the core's own field name: pydantic puts
    the settings location in front instead.
    """
    try:
        return check()
    except ValueError as error:
        problem = getattr(error, "problem", None)
        if not isinstance(problem, str):
            raise
        raise ValueError(problem) from None


def core_check(check: Callable[..., T], value: object) -> T:
    """``core_problem`` for the usual core validator shape ``check(value, field_name=...)``."""
    return core_problem(lambda: check(value, field_name=""))


def compiled_pattern(value: str) -> str:
    """``value`` if it compiles as a regular expression, else a message naming it."""
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"{value!r} is not a regular expression ({error})") from None
    return value
