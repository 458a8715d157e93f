"""Validate raw settings (cdk.json context or a file's content) into a section model.

Both sources are JSON-shaped, so they are validated in pydantic's JSON mode
with the models' strict rule: a list is a valid tuple and a string a valid
path, but ``"no"`` is never a boolean nor ``"365"`` a number. Problems become
one :class:`SettingsError` line each (at most ``MAX_PROBLEMS``), naming the
field, a short excerpt of the value and what is allowed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from iot_remote_access.core.bounded_input import BoundedInputError, excerpt, one_line
from iot_remote_access.settings.base import SettingsError
from iot_remote_access.settings.files import check_settings_shape

M = TypeVar("M", bound=BaseModel)

MAX_PROBLEMS = 5
MAX_PROBLEM_CHARS = 300

#: What each strict type error allows, in the words of a settings file.
_ALLOWED = {
    "bool_type": "true or false (a boolean, not a string)",
    "int_type": "an integer (a number, not a string)",
    "int_from_float": "an integer",
    "float_type": "a number (not a string)",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def validate_settings(model: type[M], raw: object, source: str) -> M:
    """``model`` from ``raw``; SettingsError naming ``source.field`` on any problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SettingsError(
            f"{source}: expected an object of settings, got {_json_type(raw)}; "
            "allowed: an object (keys such as tunneling, gcp, azure)"
        )
    try:
        check_settings_shape(raw, source)
        text = json.dumps(raw, allow_nan=False, default=_not_json(source))
    except BoundedInputError as error:
        raise SettingsError(str(error)) from None
    except ValueError:  # NaN or Infinity
        raise SettingsError(
            f"{source}: NaN or Infinity in a number; allowed: finite numbers"
        ) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        raise SettingsError(format_validation_error(error, source, model)) from None


def _not_json(source: str) -> Any:
    def refuse(value: object) -> Any:
        raise BoundedInputError(
            source,
            f"{excerpt(value)} ({type(value).__name__}) is not a JSON value; "
            "allowed: strings, numbers, booleans, null, lists and objects",
        )

    return refuse


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel]) -> str:
    """One line per problem: ``source.fieldAlias: value problem; allowed: ...``."""
    items = error.errors(include_url=False)
    lines = [_problem_line(item, source, model) for item in items[:MAX_PROBLEMS]]
    if len(items) > MAX_PROBLEMS:
        # First, so that the count survives when the CLI cuts its one line short.
        lines.insert(0, f"{source}: {len(items)} problems, the first {MAX_PROBLEMS}:")
    return "\n".join(lines)


def _problem_line(item: ErrorDetails, source: str, model: type[BaseModel]) -> str:
    location = ".".join([source, *(_part(part) for part in item["loc"])])
    message = item["msg"].removeprefix("Value error, ")
    kind = item["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_aliases(_model_at(model, item["loc"][:-1])))
        message = f"unknown setting; allowed: {allowed}"
    elif kind == "missing":
        message = "missing; required"
    elif kind in _ALLOWED:
        value = item.get("input")
        message = f"{excerpt(value)} is {_json_type(value)}; allowed: {_ALLOWED[kind]}"
    elif kind != "value_error":
        message = f"{excerpt(item.get('input'))}: {message}"
    # The cap is for the problem: a section's own message may quote a value in full.
    return f"{one_line(location, MAX_PROBLEM_CHARS)}: {one_line(message, MAX_PROBLEM_CHARS)}"


def _part(part: int | str) -> str:
    # A key from the file is untrusted text: quoted, and short, when it is odd.
    text = str(part)
    return text if text.isidentifier() or text.isdigit() else excerpt(text, 30)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _model_at(model: type[BaseModel], location: tuple[int | str, ...]) -> type[BaseModel]:
    """The (nested) settings group that ``location`` points into."""
    for part in location:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        annotation = field.annotation if field else None
        # An optional group (``X | None``) is a union: look inside it for the group.
        candidates = get_args(annotation) or (annotation,)
        group = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if group is None:
            return model
        model = group
    return model


def _aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]
