"""Strict, bounded JSON decoding for input that crosses a trust boundary.

Used by the command broker (request bodies), the device (command payloads) and
whoever collects responses. ``json.loads`` alone keeps the last of duplicate keys
(two readers may then disagree on what was asked), accepts ``NaN``, and recurses
once per nesting level, so a small hostile document can exhaust the stack. Here the
size is checked first, the nesting depth is counted by a linear scan before the
parser runs, duplicate keys and non-finite numbers are refused.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_BYTES = 16 * 1024
DEFAULT_MAX_DEPTH = 8


class StrictJsonError(ValueError):
    """A document that is not acceptable JSON; ``problem`` says why (no field name)."""

    def __init__(self, problem: str, *, too_large: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.too_large = too_large


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, ignoring brackets inside strings."""
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
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            shown = key if len(key) <= 40 else key[:37] + "..."
            raise StrictJsonError(f"the key {shown!r} appears twice; allowed: each key once")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number; allowed: finite numbers")


def loads(
    data: str | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Decode ``data`` or raise :class:`StrictJsonError` saying what is wrong."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise StrictJsonError(f"{size} bytes; allowed: at most {max_bytes}", too_large=True)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("not UTF-8 text; allowed: a UTF-8 JSON document") from None
    else:
        text = data
    depth = nesting_depth(text)
    if depth > max_depth:
        raise StrictJsonError(f"nested {depth} levels deep; allowed: at most {max_depth}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise StrictJsonError(
            f"not valid JSON ({error.msg} at character {error.pos}); allowed: a JSON document"
        ) from None
    except (RecursionError, ValueError) as error:
        if isinstance(error, StrictJsonError):
            raise
        # int() refuses numbers of more than 4300 digits (CVE-2020-10735 guard).
        raise StrictJsonError(f"not acceptable JSON ({type(error).__name__})") from None


def dumps(value: Any) -> str:
    """Compact, deterministic JSON (sorted keys): the form that is sent and digested."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
