"""A small, safe subset of JSON Schema for command arguments, checked here.

Why not a full JSON Schema validator: core is standard library only (the
Lambda functions and the device import it), and the full language lets a
catalogue look restrictive while accepting anything (an unknown keyword is
ignored by JSON Schema). So every keyword outside this subset is refused when
the catalogue is loaded, and what the subset accepts means exactly what JSON
Schema (draft 2020-12) means by it: a document valid here is valid for any
conforming validator and the other way round (tested against ``jsonschema``).

The subset, chosen so that every accepted value is bounded:

- ``type``: one of object, string, integer, number, boolean, array (no unions).
- object: ``properties``, ``required`` (names among the properties),
  ``additionalProperties: false`` (mandatory: unknown arguments are refused).
- string: ``maxLength`` (mandatory, at most 1024), ``minLength``, ``enum``
  (strings), ``pattern`` (unanchored like JSON Schema; nested quantifiers refused).
- integer / number: ``minimum``, ``maximum``.
- array: ``items`` (mandatory), ``maxItems`` (mandatory, at most 256), ``minItems``.
- anywhere: ``title``, ``description``.

The top level is an object; schemas nest at most :data:`MAX_SCHEMA_DEPTH` levels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_SCHEMA_DEPTH = 4
MAX_STRING_LENGTH = 1024
MAX_ARRAY_ITEMS = 256
MAX_PROPERTIES = 64
MAX_ENUM = 64
MAX_PATTERN_LENGTH = 200

TYPES = ("object", "string", "integer", "number", "boolean", "array")
_ANNOTATIONS = {"title", "description"}
_KEYWORDS: dict[str, set[str]] = {
    "object": {"type", "properties", "required", "additionalProperties"},
    "string": {"type", "maxLength", "minLength", "enum", "pattern"},
    "integer": {"type", "minimum", "maximum"},
    "number": {"type", "minimum", "maximum"},
    "boolean": {"type"},
    "array": {"type", "items", "maxItems", "minItems"},
}
_PROPERTY_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# A quantified group that itself contains a quantifier, e.g. (a+)+ or (\w*x)*:
# the classic catastrophic-backtracking shape. A heuristic, on the safe side.
_NESTED_QUANTIFIER_RE = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{?]")


class SchemaError(ValueError):
    """A schema or a value that breaks the rules; ``field`` is a dotted path."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of untrusted input, shortened so a huge value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# -- checking a schema (catalogue load time) ----------------------------------------------


def check_schema(schema: object, *, field_name: str = "arguments") -> dict[str, Any]:
    """Return ``schema`` if it is in the subset and its top level is an object."""
    checked = _check(schema, field_name, depth=1)
    if checked["type"] != "object":
        raise SchemaError(
            f"{field_name}.type", f"{shown(checked['type'])}; allowed: 'object' at the top level"
        )
    return checked


def _check(schema: object, path: str, *, depth: int) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise SchemaError(path, f"{shown(schema)} is not an object; allowed: a JSON Schema object")
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaError(path, f"nests deeper than {MAX_SCHEMA_DEPTH} levels; allowed: flatter")
    kind = schema.get("type")
    if kind not in TYPES:
        raise SchemaError(f"{path}.type", f"{shown(kind)}; allowed: one of {', '.join(TYPES)}")
    for keyword in schema:
        if keyword not in _KEYWORDS[kind] | _ANNOTATIONS:
            allowed = ", ".join(sorted(_KEYWORDS[kind] | _ANNOTATIONS))
            raise SchemaError(
                f"{path}.{keyword}", f"is not supported for type {kind}; allowed: {allowed}"
            )
    for keyword in _ANNOTATIONS & set(schema):
        if not isinstance(schema[keyword], str) or len(schema[keyword]) > 512:
            raise SchemaError(f"{path}.{keyword}", "allowed: text of at most 512 characters")
    {
        "object": _check_object,
        "string": _check_string,
        "array": _check_array,
        "integer": _check_numeric,
        "number": _check_numeric,
        "boolean": lambda *_args, **_kw: None,
    }[kind](schema, path, depth=depth)
    return dict(schema)


def _check_object(schema: Mapping[str, Any], path: str, *, depth: int) -> None:
    if schema.get("additionalProperties") is not False:
        raise SchemaError(
            f"{path}.additionalProperties",
            f"{shown(schema.get('additionalProperties'))}; allowed: false "
            "(every argument must be declared)",
        )
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or len(properties) > MAX_PROPERTIES:
        raise SchemaError(
            f"{path}.properties", f"allowed: an object of at most {MAX_PROPERTIES} schemas"
        )
    for name, sub in properties.items():
        if not isinstance(name, str) or not _PROPERTY_NAME_RE.fullmatch(name):
            raise SchemaError(
                f"{path}.properties", f"{shown(name)}; allowed: names [A-Za-z_][A-Za-z0-9_-]*"
            )
        _check(sub, f"{path}.properties.{name}", depth=depth + 1)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
        raise SchemaError(f"{path}.required", f"{shown(required)}; allowed: a list of names")
    for name in required:
        if name not in properties:
            raise SchemaError(
                f"{path}.required", f"{shown(name)} is not among the properties; allowed: those"
            )


def _check_string(schema: Mapping[str, Any], path: str, *, depth: int) -> None:
    del depth
    maximum = _bound(schema, "maxLength", path, limit=MAX_STRING_LENGTH, mandatory=True)
    minimum = _bound(schema, "minLength", path, limit=MAX_STRING_LENGTH, mandatory=False)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise SchemaError(f"{path}.minLength", f"{minimum} is more than maxLength {maximum}")
    if "enum" in schema:
        enum = schema["enum"]
        if (
            not isinstance(enum, list)
            or not 1 <= len(enum) <= MAX_ENUM
            or not all(isinstance(v, str) for v in enum)
        ):
            raise SchemaError(
                f"{path}.enum", f"{shown(enum)}; allowed: a list of 1 to {MAX_ENUM} strings"
            )
    if "pattern" in schema:
        pattern = schema["pattern"]
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_LENGTH:
            raise SchemaError(
                f"{path}.pattern", f"allowed: a regular expression of {MAX_PATTERN_LENGTH} chars"
            )
        if _NESTED_QUANTIFIER_RE.search(pattern):
            raise SchemaError(
                f"{path}.pattern",
                f"{shown(pattern)} repeats a group that repeats (catastrophic backtracking); "
                "allowed: no nested quantifiers",
            )
        try:
            re.compile(pattern)
        except re.error as error:
            raise SchemaError(
                f"{path}.pattern", f"{shown(pattern)} does not compile ({error})"
            ) from None


def _check_array(schema: Mapping[str, Any], path: str, *, depth: int) -> None:
    maximum = _bound(schema, "maxItems", path, limit=MAX_ARRAY_ITEMS, mandatory=True)
    minimum = _bound(schema, "minItems", path, limit=MAX_ARRAY_ITEMS, mandatory=False)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise SchemaError(f"{path}.minItems", f"{minimum} is more than maxItems {maximum}")
    if "items" not in schema:
        raise SchemaError(f"{path}.items", "missing; allowed: the schema of every item")
    _check(schema["items"], f"{path}.items", depth=depth + 1)


def _check_numeric(schema: Mapping[str, Any], path: str, *, depth: int) -> None:
    del depth
    for keyword in ("minimum", "maximum"):
        value = schema.get(keyword)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SchemaError(f"{path}.{keyword}", f"{shown(value)}; allowed: a number")
    if "minimum" in schema and "maximum" in schema and schema["minimum"] > schema["maximum"]:
        raise SchemaError(f"{path}.minimum", "is more than maximum")


def _bound(
    schema: Mapping[str, Any], keyword: str, path: str, *, limit: int, mandatory: bool
) -> int | None:
    value = schema.get(keyword)
    if value is None and not mandatory:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise SchemaError(
            f"{path}.{keyword}",
            f"{shown(value)}; allowed: a whole number from 0 to {limit}"
            + (" (mandatory: every value is bounded)" if mandatory else ""),
        )
    return value


# -- validating a value (request time) -------------------------------------------------------


def validate(value: object, schema: Mapping[str, Any], *, field_name: str = "arguments") -> None:
    """Raise :class:`SchemaError` naming the first part of ``value`` that ``schema`` refuses.

    ``schema`` must have passed :func:`check_schema`.
    """
    kind = schema["type"]
    if not _is_type(value, kind):
        raise SchemaError(field_name, f"{shown(value)} is not of type {kind}")
    if kind == "object":
        _validate_object(value, schema, field_name)  # type: ignore[arg-type]
    elif kind == "string":
        _validate_string(value, schema, field_name)  # type: ignore[arg-type]
    elif kind == "array":
        items: list[Any] = value  # type: ignore[assignment]
        if len(items) > schema["maxItems"] or len(items) < schema.get("minItems", 0):
            raise SchemaError(
                field_name,
                f"has {len(items)} items; allowed: {schema.get('minItems', 0)} to "
                f"{schema['maxItems']}",
            )
        for index, item in enumerate(items):
            validate(item, schema["items"], field_name=f"{field_name}[{index}]")
    elif kind in ("integer", "number"):
        number: float = value  # type: ignore[assignment]
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and number < low) or (high is not None and number > high):
            raise SchemaError(
                field_name,
                f"{shown(value)} is outside {'-inf' if low is None else low}.."
                f"{'inf' if high is None else high}",
            )


def _is_type(value: object, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # JSON Schema: 1.0 is an integer (a number with a zero fractional part).
    return kind == "number" or isinstance(value, int) or value.is_integer()


def _validate_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in value:
        if name not in properties:
            allowed = ", ".join(properties) or "none"
            raise SchemaError(
                f"{path}.{shown(name, 40) if not _PROPERTY_NAME_RE.fullmatch(name) else name}",
                f"is not an argument of this command; allowed: {allowed}",
            )
    for name in schema.get("required", []):
        if name not in value:
            raise SchemaError(f"{path}.{name}", "missing; required")
    for name, item in value.items():
        validate(item, properties[name], field_name=f"{path}.{name}")


def _validate_string(value: str, schema: Mapping[str, Any], path: str) -> None:
    if not schema.get("minLength", 0) <= len(value) <= schema["maxLength"]:
        raise SchemaError(
            path,
            f"is {len(value)} characters long; allowed: {schema.get('minLength', 0)} to "
            f"{schema['maxLength']}",
        )
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"{shown(value)}; allowed: one of {', '.join(schema['enum'])}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        raise SchemaError(path, f"{shown(value)} does not match {schema['pattern']!r}")
