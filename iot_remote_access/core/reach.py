"""Lateral movement as a property: can one device reach another device's topics?

Given an authorization document and a device identity A (the attacker), the analysis
answers for every other identity B at once: can A connect as B, publish to a topic
of B, subscribe to a filter that matches a topic of B, or receive a topic of B - and
for each "yes" it gives a witness, a concrete topic (or filter, or client id) that A
reaches. The engine (:mod:`reach_automata`, :mod:`reach_filters`) decides this
exactly for the matching rules of each broker; :mod:`reach_aws` and
:mod:`reach_mosquitto` read the documents.

"A topic of B" is defined by templates whose ``{thing}`` slot is B's name: the topic
model's templates (every capability switched on), everything under AWS's
``$aws/things/{thing}/``, and the document's own per-device resources (a resource
that names the device by a variable - ``${iot:Connection.Thing.ThingName}``,
``${iot:ClientId}``, ``%u``, ``%c`` - is that device's namespace).

Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from iot_remote_access.core.reach_automata import (
    READABLE_NAME,
    SLOT,
    STAR,
    THING_NAME_CHARS,
    Machine,
    Pattern,
    PatternMachine,
    Union,
    accepted,
    alphabet,
)
from iot_remote_access.core.reach_filters import FiltersMatching
from iot_remote_access.core.topics import THING_PLACEHOLDER, DeviceAccess

#: The attacker's name in reports; any valid thing name gives the same answers
#: (the analysis never depends on which name, only on "A" versus "not A").
DEFAULT_ATTACKER = "device-a"


class Operation(StrEnum):
    CONNECT = "connect"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


class Severity(StrEnum):
    HIGH = "high"  # a reach into another device's topics or identity
    LOW = "low"  # a wildcard that stays inside the device's own namespace


@dataclass(frozen=True)
class Reach:
    """One finding, with its witness: what A does to reach B."""

    operation: Operation
    severity: Severity
    witness: str  # the topic, filter or client id A uses
    victim: str  # B's thing name in the witness ("" for LOW findings)
    victim_topic: str = ""  # for a subscription: a topic of B the witness filter matches
    client_id: str = ""  # set when A must connect under another client id first
    note: str = ""

    def describe(self) -> str:
        via = f" (connected as client id {self.client_id!r})" if self.client_id else ""
        if self.operation is Operation.CONNECT:
            return f"can connect as {self.victim!r} (client id {self.witness!r})"
        if self.severity is Severity.LOW:
            return f"{self.operation} wildcard inside its own namespace: {self.witness!r}"
        target = f" matching {self.victim_topic!r}" if self.victim_topic else ""
        return f"can {self.operation} {self.witness!r}{target} of {self.victim!r}{via}"


@dataclass(frozen=True)
class ReachReport:
    """The findings for one document, and what the analysis could not evaluate."""

    source: str
    findings: tuple[Reach, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def lateral(self) -> tuple[Reach, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.HIGH)


@lru_cache(maxsize=8)
def model_templates(access: DeviceAccess | None = None) -> tuple[Pattern, ...]:
    """Topics of a device by the topic model (default: every capability on)."""
    access = access or DeviceAccess(
        tunneling=True, rotation=True, jobs=True, command_responses=True
    )
    templates = {grant.template for grant in access.grants()}
    patterns = [template_pattern(t) for t in sorted(templates)]
    patterns.append(Pattern((*"$aws/things/", SLOT, "/", STAR)))  # shadows, jobs, tunnels
    return tuple(patterns)


def template_pattern(template: str) -> Pattern:
    """``cmd/{thing}/commands`` as a pattern whose slot is any name but the attacker's."""
    head, _, tail = template.partition(THING_PLACEHOLDER)
    if not _:
        return Pattern(tuple(template))
    rest = template_pattern(tail).tokens
    return Pattern((*head, SLOT, *rest))


def owned_machine(templates: tuple[Pattern, ...], attacker: str) -> Machine:
    """ "A topic of another device": the shared part (the topic model) built once per process."""
    base, extra = _split(templates)
    shared = _shared_owned(base, attacker)
    if not extra:
        return shared
    return Union([shared, *[PatternMachine(p, attacker) for p in extra]])


def owned_filters(templates: tuple[Pattern, ...], attacker: str) -> Machine:
    """Filters matching a topic of another device (a union distributes over templates)."""
    base, extra = _split(templates)
    shared = _shared_filters(base, attacker)
    if not extra:
        return shared
    own = Union([PatternMachine(p, attacker) for p in extra])
    return Union([shared, FiltersMatching(own, alphabet(extra, extra=attacker))])


def _split(templates: tuple[Pattern, ...]) -> tuple[tuple[Pattern, ...], tuple[Pattern, ...]]:
    """(the topic model's templates, the document's own ones not already among them)."""
    model = model_templates()
    if templates[: len(model)] != model:
        return templates, ()
    return model, tuple(dict.fromkeys(p for p in templates[len(model) :] if p not in model))


@lru_cache(maxsize=64)
def _shared_owned(templates: tuple[Pattern, ...], attacker: str) -> Union:
    return Union([PatternMachine(p, attacker) for p in templates])


@lru_cache(maxsize=64)
def _shared_filters(templates: tuple[Pattern, ...], attacker: str) -> FiltersMatching:
    # Its own alphabet (the templates' characters) suffices: characters the templates
    # do not name behave like the fresh representatives inside this automaton.
    return FiltersMatching(_shared_owned(templates, attacker), alphabet(templates, extra=attacker))


def victim_of(templates: Iterable[Pattern], topic: str, attacker: str) -> str:
    """B's name in ``topic``: a level that, put in a template's slot, makes it match.

    Each candidate is checked with the template's own automaton (linear time), not a
    regular expression built from the template: templates come from untrusted documents.
    """
    levels = [lv for lv in dict.fromkeys(topic.split("/")) if lv != attacker]
    names = [lv for lv in levels if lv and set(lv) <= THING_NAME_CHARS]
    for pattern in templates:
        if SLOT not in pattern.tokens:
            continue
        for name in names:
            filled = Pattern(_fill(pattern.tokens, name), mqtt=pattern.mqtt)
            if accepted([PatternMachine(filled, attacker)], topic):
                return name
    return ""


def _fill(tokens: tuple[Any, ...], name: str) -> tuple[Any, ...]:
    return tuple(c for t in tokens for c in ((*name,) if t == SLOT else (t,)))


#: The name a witness gives the other device when the policy allows it.
READABLE_VICTIM = READABLE_NAME


def readable(text: str, victim: str, still_reaches: Callable[[str], bool]) -> tuple[str, str]:
    """``text`` with the victim's level renamed ``device-b`` when that still reaches."""
    if not victim or victim == READABLE_VICTIM:
        return text, victim
    renamed = "/".join(READABLE_VICTIM if level == victim else level for level in text.split("/"))
    return (renamed, READABLE_VICTIM) if still_reaches(renamed) else (text, victim)


def client_id_candidates(attacker: str, levels: Iterable[str]) -> list[str]:
    """The client ids worth trying when a rule substitutes the client's own client id.

    A client id changes such a rule only through which literal levels it equals, so the
    attacker's own name, every literal level of the rules and templates (``levels``), and
    one name equal to none of them cover every case - exactly, however many levels of a
    rule take the (one) client id.
    """
    named = sorted({v for v in levels if v and not {"\0", "+", "#"} & set(v)})
    fresh = next(f"device-{n}" for n in range(len(named) + 2) if f"device-{n}" not in named)
    return list(dict.fromkeys([attacker, READABLE_VICTIM, *named, fresh]))


def template_levels(templates: Iterable[Pattern]) -> set[str]:
    """The literal levels of ``templates`` (a level holding a wildcard or slot is left out)."""
    levels: set[str] = set()
    for template in templates:
        text = "".join(t if isinstance(t, str) else "\0" for t in template.tokens)
        levels |= set(text.split("/"))
    return levels
