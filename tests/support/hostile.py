"""Hypothesis strategies for hostile input, and the contract checks every entry point shares.

What an attacker (or a broken client) sends: deep nesting, huge values, invalid
UTF-8, lone surrogates, control and bidi characters, duplicate keys, wrong types.
The example count is modest by default (CI, derandomized by the ``ci`` profile in
tests/conftest.py); ``IRA_FUZZ_EXAMPLES=2000`` runs the long campaign (see
docs/hostile-lambdas.md).
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Examples per entry point: small in CI, raised for a long run.
EXAMPLES = int(os.environ.get("IRA_FUZZ_EXAMPLES", "25"))
#: Bounds every handler call must keep (generous: the machine is shared).
TIME_BOUND_SECONDS = 5.0
MEMORY_BOUND_BYTES = 64 * 1024 * 1024

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is asserted per call below, with a bound for shared machines
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one moto world per test; refusals change nothing
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

NASTY_CHARACTERS = [
    "\x00",
    "\x1b[2J",
    "\x1b]0;owned\x07",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\ud800",
    "\udfff",
    "\r\n",
    "\x85",
    "\u2028",
    "\\",
    '"',
    "'",
    "%s",
    "{thing}",
    "${",
    "../",
    "+",
    "#",
    "/",
    "\U0001f600",
]

# Every code point, lone surrogates included (st.characters leaves them out by default).
any_character = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
hostile_text = st.one_of(
    st.text(any_character, max_size=40),
    st.lists(st.sampled_from(NASTY_CHARACTERS), max_size=8).map("".join),
    st.tuples(st.sampled_from(NASTY_CHARACTERS), st.integers(1, 200_000)).map(
        lambda pair: pair[0] * pair[1]
    ),
    st.sampled_from(["sensor-1", "SSH", "plan", "dispatch", "rot/sensor-1/csr", ""]),
)
hostile_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
hostile_json = st.recursive(
    hostile_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, kind: str = "[") -> str:
    close = "]" if kind == "[" else "}"
    opening = "[" if kind == "[" else '{"a":'
    return opening * depth + ("1" if kind == "{" else "") + close * depth


#: Raw request bodies: JSON text and things that are not quite JSON.
hostile_body = st.one_of(
    hostile_json.map(lambda value: json.dumps(value)),
    st.builds(nested, st.integers(1, 5000), st.sampled_from(["[", "{"])),
    st.dictionaries(st.sampled_from(["thing", "service", "minutes", "reason"]), hostile_json).map(
        json.dumps
    ),
    st.tuples(st.sampled_from(["thing", "reason", "minutes"]), hostile_scalar, hostile_scalar).map(
        lambda t: f'{{"{t[0]}": {json.dumps(t[1])}, "{t[0]}": {json.dumps(t[2])}}}'
    ),
    st.text(any_character, max_size=200),
    st.sampled_from(["NaN", '{"minutes": Infinity}', "", "{", '"\\ud800"', "[" * 4000]),
)
#: Bytes (a base64 function-URL body): invalid UTF-8 included.
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"\xff\xfe", b"\xc0\xaf", b'{"thing":"\xed\xa0\x80"}', b"\x00" * 5000]),
)


@dataclass
class Measured:
    result: Any
    seconds: float
    peak_bytes: int
    error: BaseException | None = None


def measured(call: Callable[[], Any]) -> Measured:
    """Run ``call`` once, with its time and peak Python memory (tracemalloc)."""
    tracemalloc.start()
    started = time.perf_counter()
    error: BaseException | None = None
    result = None
    try:
        result = call()
    except Exception as raised:
        error = raised
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measured(result, seconds, peak, error)


def within_bounds(run: Measured, what: object) -> None:
    assert run.seconds < TIME_BOUND_SECONDS, (what, run.seconds)
    assert run.peak_bytes < MEMORY_BOUND_BYTES, (what, run.peak_bytes)


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-2000:]
        assert "--- Logging error ---" not in text, text[-2000:]


@dataclass
class Tally:
    """Inputs tried per entry point (printed by the long run, for the documentation)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, entry_point: str) -> None:
        self.counts[entry_point] = self.counts.get(entry_point, 0) + 1


TALLY = Tally()


@contextmanager
def count(entry_point: str) -> Iterator[None]:
    yield
    TALLY.add(entry_point)
