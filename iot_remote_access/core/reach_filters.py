"""MQTT subscriptions on top of :mod:`reach_automata`: filters that match topics, and back.

Two questions the analysis asks about subscriptions, each answered by an automaton:

- :class:`FiltersMatching` - over *filter* strings: the filters (valid MQTT syntax)
  that match at least one topic a given topic automaton accepts. "May A subscribe to
  a filter that matches a topic of B?" is then an intersection with the filters A
  may subscribe to.
- :class:`TopicsCovered` - over *topic* strings: the topics that at least one filter
  accepted by a given filter automaton matches. "Would A receive a topic of B?" needs
  a subscription that covers it.

Both follow MQTT 3.1.1/5 matching: ``+`` is exactly one level (possibly empty), ``#``
is the last level and also matches the parent (``a/#`` matches ``a``), and a filter
starting with a wildcard never matches a topic starting with ``$``.

Standard library only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any, cast

from iot_remote_access.core.reach_automata import MAX_STATES, Machine, ReachLimitError

_START, _LITERAL, _PLUS, _HASH = "start", "literal", "plus", "hash"


class FiltersMatching:
    """Filters that match at least one topic accepted by ``topics`` (a :class:`Machine`)."""

    def __init__(self, topics: Machine, chars: Sequence[str]) -> None:
        self.topics = topics
        self.chars = chars
        self._level: dict[tuple[Hashable, bool], frozenset[Hashable]] = {}
        self._suffix: dict[tuple[Hashable, bool], bool] = {}

    def start(self) -> tuple[Any, ...] | None:
        first = self.topics.start()
        return None if first is None else (frozenset([first]), _START, False, True)

    def step(self, state: Hashable, char: str) -> tuple[Any, ...] | None:
        topic_states, mode, parent_ok, at_start = cast("tuple[Any, ...]", state)
        if mode == _HASH or (char in "+#" and mode != _START):
            return None  # '#' must be last; '+' and '#' must fill a whole level
        if char == "+":
            reached = frozenset().union(*(self._level_reach(t, at_start) for t in topic_states))
            return (reached, _PLUS, False, False) if reached else None
        if char == "#":
            matched = parent_ok or any(self._any_suffix(t, at_start) for t in topic_states)
            return (frozenset(), _HASH, True, False) if matched else None
        if mode == _PLUS and char != "/":
            return None  # "+a" is not a filter
        moved = frozenset(s for t in topic_states if (s := self.topics.step(t, char)) is not None)
        if char == "/":
            parent = any(self.topics.accepts(t) for t in topic_states)
            return (moved, _START, parent, False) if moved or parent else None
        return (moved, _LITERAL, False, False) if moved else None

    def accepts(self, state: Hashable) -> bool:
        topic_states, mode, parent_ok, _ = cast("tuple[Any, ...]", state)
        if mode == _HASH:
            return bool(parent_ok)
        return any(self.topics.accepts(t) for t in topic_states)

    def _level_reach(self, state: Hashable, at_start: bool) -> frozenset[Hashable]:
        """Every state ``topics`` reaches from ``state`` by one level's characters (or none)."""
        key = (state, at_start)
        if key not in self._level:
            chars = [c for c in self.chars if c != "/"]
            self._level[key] = frozenset(_reachable(self.topics, state, chars, no_dollar=at_start))
        return self._level[key]

    def _any_suffix(self, state: Hashable, at_start: bool) -> bool:
        """Whether ``topics`` accepts from ``state`` after some string (the '#' level)."""
        key = (state, at_start)
        if key not in self._suffix:
            reached = _reachable(self.topics, state, self.chars, no_dollar=at_start)
            self._suffix[key] = any(self.topics.accepts(s) for s in reached)
        return self._suffix[key]


def _reachable(
    machine: Machine, state: Hashable, chars: Sequence[str], *, no_dollar: bool
) -> set[Hashable]:
    seen = {state}
    queue = deque([(state, True)])
    while queue:
        current, first = queue.popleft()
        for char in chars:
            if first and no_dollar and char == "$":
                continue
            nxt = machine.step(current, char)
            if nxt is None or nxt in seen:
                continue
            if len(seen) >= MAX_STATES:
                raise ReachLimitError(f"more than {MAX_STATES} states")
            seen.add(nxt)
            queue.append((nxt, False))
    return seen


class TopicsCovered:
    """Topics matched by at least one filter accepted by ``filters`` (a :class:`Machine`)."""

    def __init__(self, filters: Machine) -> None:
        self.filters = filters

    def start(self) -> tuple[Any, ...] | None:
        first = self.filters.start()
        if first is None:
            return None
        return self._open_level(frozenset([(first, _LITERAL, True)]))

    def _open_level(self, items: frozenset[tuple[Any, str, bool]]) -> tuple[Any, ...] | None:
        """At a level start a filter may also read '+' or '#' for the whole level."""
        opened = set(items)
        for f_state, mode, at_start in items:
            if mode != _LITERAL:
                continue
            for wildcard, new_mode in (("+", _PLUS), ("#", _HASH)):
                nxt = self.filters.step(f_state, wildcard)
                if nxt is not None:
                    opened.add((nxt, new_mode, at_start))
        return (frozenset(opened),) if opened else None

    def step(self, state: Hashable, char: str) -> tuple[Any, ...] | None:
        (items,) = cast("tuple[Any, ...]", state)
        moved: set[tuple[Any, str, bool]] = set()
        for f_state, mode, at_start in items:
            if at_start and char == "$" and mode != _LITERAL:
                continue  # a leading wildcard never matches a '$' topic
            if mode == _HASH or (mode == _PLUS and char != "/"):
                moved.add((f_state, mode, False))
            elif (nxt := self.filters.step(f_state, char)) is not None:
                moved.add((nxt, _LITERAL, False))
        if not moved:
            return None
        return self._open_level(frozenset(moved)) if char == "/" else (frozenset(moved),)

    def accepts(self, state: Hashable) -> bool:
        (items,) = cast("tuple[Any, ...]", state)
        for f_state, mode, _ in items:
            if self.filters.accepts(f_state):
                return True
            if mode == _LITERAL:  # "a/#" matches "a"
                slash = self.filters.step(f_state, "/")
                tail = None if slash is None else self.filters.step(slash, "#")
                if tail is not None and self.filters.accepts(tail):
                    return True
        return False


class Difference:
    """Accepts what ``kept`` accepts and ``removed`` does not (an Allow minus a Deny)."""

    def __init__(self, kept: Machine, removed: Machine) -> None:
        self.kept = kept
        self.removed = removed

    def start(self) -> tuple[Any, ...] | None:
        kept = self.kept.start()
        return None if kept is None else (kept, self.removed.start())

    def step(self, state: Hashable, char: str) -> tuple[Any, ...] | None:
        kept, removed = cast("tuple[Any, ...]", state)
        nxt = self.kept.step(kept, char)
        if nxt is None:
            return None
        return nxt, (None if removed is None else self.removed.step(removed, char))

    def accepts(self, state: Hashable) -> bool:
        kept, removed = cast("tuple[Any, ...]", state)
        return self.kept.accepts(kept) and not (
            removed is not None and self.removed.accepts(removed)
        )
