"""Finite automata over topic strings: the engine behind the reachability analysis.

Every authorization language the analysis reads is regular: IAM resource patterns
(``*`` any string, ``?`` one character, everything else literal - including MQTT's
``+`` and ``#``), MQTT topic filters (``+`` one level, ``#`` the rest, and the rule
that a filter starting with a wildcard never matches a topic starting with ``$``),
and "a topic of another device" (a template whose ``{thing}`` slot is any thing name
other than the attacker's). So "can device A reach a topic of another device?" is the
emptiness of an intersection of regular languages, decided exactly by a breadth-first
search over the product of deterministic (subset-construction) automata; the path
found is the witness - the shortest concrete topic.

The alphabet is made finite without losing anything: characters that no pattern
names behave alike, so one fresh representative stands for each class of them.

Standard library only.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

#: Token kinds. A literal character is a 1-character ``str``; the others are below.
STAR: Final = ("*",)  # IAM: any string, '/' included
QMARK: Final = ("?",)  # IAM: exactly one character
PLUS: Final = ("+",)  # MQTT: any string without '/' (one level; may be empty)
HASH: Final = ("#",)  # MQTT: the rest of the topic, and the parent level ("a/#" matches "a")
SLOT: Final = ("slot",)  # a thing name other than the attacker's
Token = str | tuple[str]

THING_NAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-"
)
_SPECIAL = frozenset("/$+#")
#: The name witnesses give another device (its letters are always in the alphabet, so a
#: witness renamed to it can also be extended by later searches).
READABLE_NAME: Final = "device-b"
#: Bounded time and memory whatever the input: a search that needs more states stops.
MAX_STATES = 200_000


class ReachLimitError(ValueError):
    """The search needed more than :data:`MAX_STATES` states (never seen on real policies)."""


class Machine(Protocol):
    """A deterministic automaton; ``None`` is the dead state."""

    def start(self) -> Hashable | None: ...

    def step(self, state: Hashable, char: str) -> Hashable | None: ...

    def accepts(self, state: Hashable) -> bool: ...


@dataclass(frozen=True)
class Pattern:
    """One pattern as tokens; ``mqtt`` turns on the '$' rule for leading wildcards."""

    tokens: tuple[Token, ...]
    mqtt: bool = False

    def literal_chars(self) -> set[str]:
        return {t for t in self.tokens if isinstance(t, str)}


def glob_pattern(text: str, variables: Mapping[str, Token | str | None] | None = None) -> Pattern:
    """An IAM pattern: ``*``/``?`` are wildcards; ``${name}`` is looked up in ``variables``.

    A variable mapped to ``None`` (not resolvable) makes the pattern match nothing:
    returned as ``Pattern(())`` flagged by :func:`matches_nothing`.
    """
    tokens: list[Token] = []
    for piece in re.split(r"(\$\{[^}]*\})", text):
        if piece.startswith("${") and piece.endswith("}"):
            name = piece[2:-1]
            if name in ("*", "?", "$"):  # AWS's escapes for the special characters
                tokens.append(name)
                continue
            value = (variables or {}).get(name)
            if value is None:
                return NOTHING
            tokens.extend([value] if isinstance(value, tuple) else list(value))
            continue
        tokens.extend(STAR if c == "*" else QMARK if c == "?" else c for c in piece)
    return Pattern(tuple(tokens))


def mqtt_filter_pattern(text: str, substitutions: dict[str, Token] | None = None) -> Pattern:
    """An MQTT topic filter; a whole level equal to a key of ``substitutions`` is replaced.

    An invalid filter ('#' not last, a wildcard sharing its level) matches nothing, as
    brokers treat it (mosquitto's topic matching answers "invalid", never "match").
    """
    levels = text.split("/")
    if any(("+" in lv or "#" in lv) and lv not in ("+", "#") for lv in levels) or (
        "#" in levels[:-1]
    ):
        return NOTHING
    tokens: list[Token] = []
    for index, level in enumerate(levels):
        if index:
            tokens.append("/")
        if level in ("+", "#"):
            tokens.append(PLUS if level == "+" else HASH)
        elif substitutions and level in substitutions:
            tokens.append(substitutions[level])
        else:
            tokens.extend(level)
    return Pattern(tuple(tokens), mqtt=True)


NOTHING: Final = Pattern((("nothing",),))


def matches_nothing(pattern: Pattern) -> bool:
    return pattern is NOTHING


class PatternMachine:
    """The subset automaton of one :class:`Pattern` (positions, plus slot progress)."""

    def __init__(self, pattern: Pattern, attacker: str) -> None:
        self.tokens = pattern.tokens
        self.mqtt = pattern.mqtt
        self.attacker = attacker
        self.dead = pattern is NOTHING
        # Searches revisit the same states many times: each transition is computed once.
        self._steps: dict[tuple[Hashable, str], Any] = {}
        ends_in_hash = len(self.tokens) >= 2 and self.tokens[-2:] == ("/", HASH)
        self.parent_accept = len(self.tokens) - 2 if ends_in_hash else -1

    def start(self) -> tuple[frozenset[tuple[int, int]], bool] | None:
        """(positions, whether a character has been read: the '$' rule needs the first)."""
        return None if self.dead else (self._closure({(0, 0)}), False)

    def _slot_done(self, progress: int) -> bool:
        return progress == -1 or 0 < progress < len(self.attacker)

    def _closure(self, items: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        stack = list(items)
        while stack:
            index, progress = stack.pop()
            if index >= len(self.tokens):
                continue
            token = self.tokens[index]
            skip = token in (STAR, PLUS, HASH) or (token == SLOT and self._slot_done(progress))
            if skip and (index + 1, 0) not in items:
                items.add((index + 1, 0))
                stack.append((index + 1, 0))
        return frozenset(items)

    def _advance(self, index: int, progress: int, char: str, first: bool) -> tuple[int, int] | None:
        token = self.tokens[index]
        if isinstance(token, str):
            return (index + 1, 0) if char == token else None
        if token == QMARK:
            return index + 1, 0
        if token == STAR:
            return index, 0
        if token in (PLUS, HASH):
            if self.mqtt and first and index == 0 and char == "$":
                return None  # MQTT: a leading wildcard never matches a '$' topic
            return (index, 0) if token == HASH or char != "/" else None
        if token == SLOT:
            if char not in THING_NAME_CHARS:
                return None
            a = self.attacker
            same = 0 <= progress < len(a) and a[progress] == char
            return index, (progress + 1 if same else -1)
        return None  # the "nothing" token

    def step(self, state: Hashable, char: str) -> tuple[frozenset[tuple[int, int]], bool] | None:
        key = (state, char)
        if key not in self._steps:
            self._steps[key] = self._step(state, char)
        result: tuple[frozenset[tuple[int, int]], bool] | None = self._steps[key]
        return result

    def _step(self, state: Hashable, char: str) -> tuple[frozenset[tuple[int, int]], bool] | None:
        items, started = cast("tuple[Any, ...]", state)
        moved = {
            nxt
            for index, progress in items
            if index < len(self.tokens)
            and (nxt := self._advance(index, progress, char, not started)) is not None
        }
        return (self._closure(moved), True) if moved else None

    def accepts(self, state: Hashable) -> bool:
        items, _ = cast("tuple[Any, ...]", state)
        return any(i == len(self.tokens) or i == self.parent_accept for i, _ in items)


class Union:
    """Accepts what any of ``machines`` accepts (a tuple of their states)."""

    def __init__(self, machines: Sequence[Machine]) -> None:
        self.machines = [m for m in machines if m.start() is not None]
        self._steps: dict[tuple[Hashable, str], tuple[Any, ...] | None] = {}

    def start(self) -> tuple[Any, ...] | None:
        states = tuple(m.start() for m in self.machines)
        return states if any(s is not None for s in states) else None

    def step(self, state: Hashable, char: str) -> tuple[Any, ...] | None:
        key = (state, char)
        if key not in self._steps:
            states = tuple(
                None if s is None else m.step(s, char)
                for m, s in zip(self.machines, state, strict=True)  # type: ignore[call-overload]
            )
            self._steps[key] = states if any(s is not None for s in states) else None
        return self._steps[key]

    def accepts(self, state: Hashable) -> bool:
        return any(
            s is not None and m.accepts(s)
            for m, s in zip(self.machines, state, strict=True)  # type: ignore[call-overload]
        )


def alphabet(patterns: Iterable[Pattern], extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The named characters, the specials, and one fresh representative per class."""
    named = set(extra) | _SPECIAL | set(READABLE_NAME)
    for pattern in patterns:
        named |= pattern.literal_chars()
    fresh_name = next(c for c in "qzxjkvwyQZXJKVWY0123456789abc" if c not in named)
    fresh_other = next(c for c in ".~!@%^&()=,;'<>[]|`\u00e9" if c not in named)
    # Letters first: the breadth-first search then finds readable witnesses.
    return tuple(sorted(named | {fresh_name, fresh_other}, key=lambda c: (not c.isalnum(), c)))


def accepted(machines: Sequence[Machine], text: str) -> bool:
    """Whether every machine accepts ``text`` (a witness re-checked after rewriting)."""
    for machine in machines:
        state = machine.start()
        for char in text:
            if state is None:
                return False
            state = machine.step(state, char)
        if state is None or not machine.accepts(state):
            return False
    return True


def shortest_accepted(
    machines: Sequence[Machine],
    accept: Callable[[tuple[bool, ...]], bool],
    chars: Sequence[str],
    *,
    required: Sequence[int] = (),
) -> str | None:
    """The shortest string the product accepts, or None; ``required`` components must live."""
    start = tuple(m.start() for m in machines)
    if any(start[i] is None for i in required):
        return None
    parents: dict[tuple[Any, ...], tuple[tuple[Any, ...], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        flags = tuple(s is not None and m.accepts(s) for m, s in zip(machines, state, strict=True))
        if accept(flags):
            return _path(parents, state)
        for char in chars:
            nxt = tuple(
                None if s is None else m.step(s, char) for m, s in zip(machines, state, strict=True)
            )
            if any(nxt[i] is None for i in required) or nxt in parents:
                continue
            if len(parents) >= MAX_STATES:
                raise ReachLimitError(f"more than {MAX_STATES} states")
            parents[nxt] = (state, char)
            queue.append(nxt)
    return None


def _path(parents: dict[tuple[Any, ...], tuple[tuple[Any, ...], str] | None], state: Any) -> str:
    chars: list[str] = []
    link = parents[state]
    while link is not None:
        state, char = link
        chars.append(char)
        link = parents[state]
    return "".join(reversed(chars))


class PrefixedMachine:
    """``machine`` after it has read ``prefix`` (an ARN's ``arn:...:topic/``)."""

    def __init__(self, machine: Machine, prefix: str) -> None:
        self.machine = machine
        state = machine.start()
        for char in prefix:
            if state is None:
                break
            state = machine.step(state, char)
        self._start = state

    def start(self) -> Hashable | None:
        return self._start

    def step(self, state: Hashable, char: str) -> Hashable | None:
        return self.machine.step(state, char)

    def accepts(self, state: Hashable) -> bool:
        return self.machine.accepts(state)
