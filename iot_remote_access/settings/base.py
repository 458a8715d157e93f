"""The base of every settings group, in a module of its own.

Sections (``settings.gcp``, ...) subclass it, and ``settings.fleet`` imports
those sections for ``FleetSettings``; keeping the base here means a section
module (the bridge's, say) can be imported without loading every other section.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from iot_remote_access.core.bounded_input import excerpt, one_line

T = TypeVar("T")

#: The CDK context key (``cdk.json``) and the top-level key of a settings file.
CONTEXT_KEY = "iot-remote-access"


class SettingsError(ValueError):
    """Settings that cannot be used; one line per problem, each naming its field."""


class SettingsSection(BaseModel):
    """Base of every settings group: frozen, camelCase keys, unknown keys rejected, strict.

    Strict: ``"no"`` is not a boolean and ``"365"`` not a number, in every
    section. Settings from files and cdk.json are validated as JSON (see
    ``validate_json_like``), where a list is a valid tuple and a string a valid
    path; from Python, values must have the annotated types.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, strict=True
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


_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def email_address(value: object) -> str:
    """``value`` if it looks like an e-mail address (SNS confirms it), else a message."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL_RE.fullmatch(value):
        raise ValueError(f"{excerpt(value)} is not an e-mail address; allowed: name@example.com")
    return value


def compiled_pattern(value: str) -> str:
    """``value`` if it compiles as a regular expression, else a message naming it."""
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as error:
        raise ValueError(
            f"{excerpt(value)} is not a regular expression ({one_line(str(error), 80)})"
        ) from None
    return value
