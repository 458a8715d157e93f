"""Field-level diff of a desired ARM body against the live one.

Only the fields this library sets are compared: Azure adds read-only and
defaulted fields to every resource, and those are not changes. Lists are
compared as a whole, without regard to order (Azure does not promise to keep
it); resource ids and locations without regard to case, as ARM treats them.
An empty desired list or object matches an absent field: ARM often leaves
empty collections out of what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class _Marker:
    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


#: A field that is not live (yet).
ABSENT: Any = _Marker("(absent)")
#: A desired value that depends on another resource not deployed yet.
KNOWN_AFTER_DEPLOY: Any = _Marker("(known after deploy)")


@dataclass(frozen=True)
class FieldChange:
    path: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        if self.live is ABSENT:
            return f"+ {self.path}: {_show(self.desired)}"
        return f"~ {self.path}: {_show(self.live)} -> {_show(self.desired)}"


def diff(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[FieldChange]:
    """Every desired field whose live value differs (all of them when ``live`` is None)."""
    changes: list[FieldChange] = []
    _walk(desired, live if live is not None else {}, "", changes)
    return changes


def matches(desired: Any, live: Any, key: str = "") -> bool:
    """Whether ``live`` already satisfies ``desired`` (extra live fields allowed)."""
    if desired is KNOWN_AFTER_DEPLOY:
        return False
    if live is None and _is_empty(desired):
        return True
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            matches(v, live[k], k) if k in live else _is_empty(v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        remaining = list(live)
        for item in desired:
            found = next((i for i, cand in enumerate(remaining) if matches(item, cand, key)), None)
            if found is None:
                return False
            remaining.pop(found)
        return True
    if isinstance(desired, str) and isinstance(live, str):
        return _normal(key, desired) == _normal(key, live)
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(desired == live)


def _walk(
    desired: Mapping[str, Any], live: Mapping[str, Any], prefix: str, out: list[FieldChange]
) -> None:
    for key, want in desired.items():
        path = f"{prefix}.{key}" if prefix else key
        have = live.get(key, ABSENT) if isinstance(live, Mapping) else ABSENT
        if isinstance(want, Mapping) and want and isinstance(have, Mapping):
            _walk(want, have, path, out)
        elif isinstance(want, Mapping) and want and have is ABSENT:
            _walk(want, {}, path, out)
        elif _is_empty(want) and (have is ABSENT or have is None):
            continue
        elif have is ABSENT or not matches(want, have, key):
            out.append(FieldChange(path, have, want))


def _is_empty(value: Any) -> bool:
    return isinstance(value, list | Mapping) and len(value) == 0


def _normal(key: str, value: str) -> str:
    if key.lower() == "location":
        return value.replace(" ", "").lower()
    if value.lower().startswith("/subscriptions/"):
        return value.lower()
    return value


def _show(value: Any) -> str:
    if isinstance(value, _Marker):
        return repr(value)
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def overlay(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """``live`` with every desired field put over it: the body of a full PUT that changes only ours.

    Objects merge key by key; a desired list replaces the live one (this library
    owns the whole list, e.g. the hub's routes).
    """
    result = dict(live)
    for key, want in desired.items():
        have = result.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            result[key] = overlay(have, want)
        else:
            result[key] = want
    return result
