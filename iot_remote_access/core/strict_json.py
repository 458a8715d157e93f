"""JSON from untrusted callers, parsed with limits. Standard library only.

``json.loads`` alone accepts what a request body must not carry: duplicate keys
(the last one silently wins, so ``{"thing": "busy-1", "thing": "sensor-1"}``
reads as sensor-1 while a log or a proxy may read busy-1), ``NaN`` and
``Infinity``, and nesting deep enough to raise ``RecursionError`` (a few KB of
``[``). Here size and depth are bounded *before* parsing, with one linear scan,
and every refusal is a :class:`JsonInputError` naming the field and what is allowed.
"""

from __future__ import annotations

import json
from typing import Any

#: Nesting any request of this library needs is 3 or less; 32 leaves room and stays
#: far below the interpreter's recursion limit.
DEFAULT_MAX_DEPTH = 32


class JsonInputError(ValueError):
    """Untrusted JSON refused; ``field`` is the request field (or ``body``) at fault."""

    def __init__(self, field_name: str, problem: str, *, too_large: bool = False) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem
        #: The input is over the size bound (an HTTP API answers 413, not 400).
        self.too_large = too_large


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of untrusted input, shortened so a huge value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """The deepest ``[``/``{`` nesting outside strings; one pass, stops early when deeper
    than ``stop_above``."""
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        elif character in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise JsonInputError("body", f"{name} is not JSON; allowed: finite numbers")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            name = key if len(key) <= 40 and key.isprintable() else shown(key, 40)
            raise JsonInputError(
                name, "appears more than once in one object; allowed: each field once"
            )
        result[key] = value
    return result


def loads(
    text: str | bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "body",
) -> object:
    """Parse ``text`` with a size bound, a depth bound, unique keys and finite numbers."""
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise JsonInputError(
                what, f"{len(text)} bytes; allowed: at most {max_bytes}", too_large=True
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError(what, "not UTF-8 text; allowed: JSON in UTF-8") from None
    # A lone surrogate cannot be encoded; it is counted as the 3 bytes it would take.
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise JsonInputError(what, f"{size} bytes; allowed: at most {max_bytes}", too_large=True)
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise JsonInputError(
            what, f"nested deeper than {max_depth} levels; allowed: at most {max_depth}"
        )
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise JsonInputError(
            what, f"not valid JSON ({error.msg} at character {error.pos})"
        ) from None
    except (ValueError, RecursionError) as error:
        if isinstance(error, JsonInputError):
            raise
        # e.g. an integer longer than Python converts (sys.int_info.default_max_str_digits)
        raise JsonInputError(what, f"not usable JSON ({shown(str(error))})") from None
