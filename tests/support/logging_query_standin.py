"""STAND-INS for two Google query languages, for the subsets the project renders.

No emulator exists for Cloud Logging or Cloud Monitoring, so these evaluate, on this
machine, exactly the shapes ``core/teleport_audit.py`` renders, and refuse anything
else (a rendered query outside these shapes fails the tests instead of passing
unevaluated):

* Logging query language: ``path="value"`` comparisons joined by ``AND``/``OR`` with
  parentheses; ``path`` is dotted, a segment may be double-quoted. ``=`` is equality
  on the field's text, a missing field never matches (as in Cloud Logging).
* ``EXTRACT(path)`` label extractors.
* PromQL: ``sum by (L..) (increase(M[Nm] [offset Om])) > K``, combined with
  ``and on (L..)`` / ``unless on (L..)``. ``increase`` counts the samples (log entries)
  in ``(t - N - O, t - O]``: exact counts, as a delta log-based metric reports them,
  without Prometheus's extrapolation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

_TOKEN = re.compile(
    r'\s*(\(|\)|AND\b|OR\b|((?:"[^"]*"|[A-Za-z_][\w-]*)(?:\.(?:"[^"]*"|[A-Za-z_][\w-]*))*)="([^"]*)")'
)


class UnsupportedQuery(AssertionError):
    """A rendered query outside what the stand-in evaluates."""


def _lookup(entry: Mapping[str, Any], path: str) -> Any:
    value: Any = entry
    for part in re.findall(r'"[^"]*"|[^.]+', path):
        key = part.strip('"')
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def matches(log_filter: str, entry: Mapping[str, Any]) -> bool:
    """Whether ``entry`` (a LogEntry as a dict) matches ``log_filter``."""
    tokens: list[tuple[str, str, str]] = []
    position = 0
    text = log_filter.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise UnsupportedQuery(f"cannot read the filter at {text[position : position + 40]!r}")
        word = found.group(1)
        tokens.append(("cmp", found.group(2), found.group(3)) if found.group(2) else (word, "", ""))
        position = found.end()
    result, rest = _expression(tokens, entry)
    if rest:
        raise UnsupportedQuery(f"trailing tokens {rest[:3]}")
    return result


def _expression(
    tokens: list[tuple[str, str, str]], entry: Mapping[str, Any]
) -> tuple[bool, list[Any]]:
    value, tokens = _term(tokens, entry)
    while tokens and tokens[0][0] in ("AND", "OR"):
        operator = tokens[0][0]
        right, tokens = _term(tokens[1:], entry)
        value = (value and right) if operator == "AND" else (value or right)
    return value, tokens


def _term(tokens: list[tuple[str, str, str]], entry: Mapping[str, Any]) -> tuple[bool, list[Any]]:
    kind, path, expected = tokens[0]
    if kind == "(":
        value, rest = _expression(tokens[1:], entry)
        if not rest or rest[0][0] != ")":
            raise UnsupportedQuery("unbalanced parentheses")
        return value, rest[1:]
    if kind != "cmp":
        raise UnsupportedQuery(f"unexpected {kind!r}")
    actual = _lookup(entry, path)
    return actual is not None and str(actual) == expected, tokens[1:]


def extract(extractor: str, entry: Mapping[str, Any]) -> str | None:
    found = re.fullmatch(r"EXTRACT\(([\w.\"-]+)\)", extractor)
    if found is None:
        raise UnsupportedQuery(f"extractor {extractor!r}")
    value = _lookup(entry, found.group(1))
    return None if value is None else str(value)


# -- PromQL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One log entry counted by a log-based metric: when, and its extracted labels."""

    metric: str
    at: datetime
    labels: Mapping[str, str]


_SELECTOR = re.compile(
    r"\(sum by \(([\w, ]+)\) \(increase\(logging_googleapis_com:user_(\w+)\[(\d+)(m|d)\]"
    r"(?: offset (\d+)m)?\)\) > (\d+)\)"
)
_COMBINED = re.compile(
    rf"\A{_SELECTOR.pattern}(?: (and|unless) on \(([\w, ]+)\) {_SELECTOR.pattern})?\Z"
)


def _series(
    samples: Iterable[Sample],
    groups: Sequence[str],
    metric: str,
    window: timedelta,
    offset: timedelta,
    threshold: int,
    now: datetime,
) -> set[tuple[tuple[str, str], ...]]:
    counts: dict[tuple[tuple[str, str], ...], int] = {}
    for sample in samples:
        if sample.metric == metric and now - offset - window < sample.at <= now - offset:
            key = tuple((label, sample.labels.get(label, "")) for label in groups)
            counts[key] = counts.get(key, 0) + 1
    return {key for key, count in counts.items() if count > threshold}


def fires(query: str, samples: Sequence[Sample], now: datetime) -> set[tuple[tuple[str, str], ...]]:
    """The label sets for which ``query`` returns a value at ``now`` (the alerting series)."""
    text = query if query.startswith("(") else f"({query})"
    found = _COMBINED.match(text)
    if found is None:
        raise UnsupportedQuery(f"query shape not evaluated by the stand-in: {query}")
    parts = found.groups()

    def side(
        groups: str, metric: str, amount: str, unit: str, offset: str | None, threshold: str
    ) -> set[Any]:
        window = timedelta(minutes=int(amount)) if unit == "m" else timedelta(days=int(amount))
        labels = [label.strip() for label in groups.split(",")]
        return _series(
            samples,
            labels,
            metric,
            window,
            timedelta(minutes=int(offset or 0)),
            int(threshold),
            now,
        )

    left = side(*parts[0:6])
    if parts[6] is None:
        return left
    on = [label.strip() for label in parts[7].split(",")]
    right = {tuple(pair for pair in key if pair[0] in on) for key in side(*parts[8:14])}
    keep = (lambda key: key in right) if parts[6] == "and" else (lambda key: key not in right)
    return {key for key in left if keep(tuple(pair for pair in key if pair[0] in on))}
