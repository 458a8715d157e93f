"""Reachability for a mosquitto ``acl_file`` (see :mod:`reach` for the question answered).

mosquitto 2.0's ``acl_file`` evaluation, from its documentation (mosquitto.conf(5),
"acl_file") and checked against the real broker in the tests:

- ``user NAME`` starts the rules of one user; ``topic [read|write|readwrite|deny] T``
  lines before any ``user`` line are for anonymous clients only; ``pattern`` lines
  apply to every client, with ``%u`` (the username) and ``%c`` (the client id)
  substituted when they are a whole topic level.
- A rule's topic is a topic *filter*: ``+``/``#`` are MQTT wildcards, and a filter
  starting with one never matches a ``$`` topic. ``deny`` rules are checked first.
- PUBLISH needs ``write``; each message delivered needs ``read`` on its topic.
  SUBSCRIBE itself is not refused by ``acl_file``, so what a device can read decides
  what it receives.

Identity: with ``use_identity_as_username`` the username is the certificate's CN
(the thing name), but the client id is whatever the client sends. So a ``%c`` rule
lets a device pick another device's name as client id and act on its topics.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from iot_remote_access.core.reach import (
    DEFAULT_ATTACKER,
    Operation,
    Reach,
    ReachReport,
    Severity,
    client_id_candidates,
    model_templates,
    owned_machine,
    readable,
    template_levels,
    victim_of,
)
from iot_remote_access.core.reach_automata import (
    NOTHING,
    SLOT,
    Machine,
    Pattern,
    PatternMachine,
    Token,
    Union,
    accepted,
    alphabet,
    mqtt_filter_pattern,
    shortest_accepted,
)
from iot_remote_access.core.reach_filters import Difference

_ACCESS = {"read": {"read"}, "write": {"write"}, "readwrite": {"read", "write"}, "deny": {"deny"}}
MAX_LINES = 100_000


class AclSyntaxError(ValueError):
    """A line mosquitto would not accept; names the line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line


@dataclass(frozen=True)
class AclRule:
    user: str | None  # None: a pattern line (every client); "" : anonymous
    pattern: bool
    access: frozenset[str]
    topic: str
    line: int


def parse_acl(text: str) -> list[AclRule]:
    """The rules of an ``acl_file``, in order."""
    rules: list[AclRule] = []
    user = ""
    for number, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "user":
            user = rest
            continue
        if keyword not in ("topic", "pattern") or not rest:
            raise AclSyntaxError(number, f"{line[:60]!r}; allowed: user, topic, pattern lines")
        first, _, tail = rest.partition(" ")
        access, topic = (
            (first, tail.strip()) if first in _ACCESS and tail.strip() else ("readwrite", rest)
        )
        rules.append(
            AclRule(
                None if keyword == "pattern" else user,
                keyword == "pattern",
                frozenset(_ACCESS[access]),
                topic,
                number,
            )
        )
    return rules


def _rule_pattern(rule: AclRule, attacker: str, *, client_id: str) -> Pattern:
    if not rule.pattern:
        return mqtt_filter_pattern(rule.topic)
    return _substitute_text(rule.topic, {"%u": attacker, "%c": client_id})


def _substitute_text(topic: str, substitutions: dict[str, Token | str]) -> Pattern:
    """An MQTT filter whose whole levels ``%u``/``%c`` become a name or a token."""
    if mqtt_filter_pattern(topic) is NOTHING:
        return NOTHING  # not a valid filter: mosquitto never matches it
    tokens: list[Token] = []
    for index, level in enumerate(topic.split("/")):
        if index:
            tokens.append("/")
        value = substitutions.get(level)
        if isinstance(value, str):
            tokens.extend(value)
        elif value is not None:
            tokens.append(value)
        else:
            tokens.extend(mqtt_filter_pattern(level).tokens)
    return Pattern(tuple(tokens), mqtt=True)


def _uses_client_id(rule: AclRule) -> bool:
    return rule.pattern and "%c" in rule.topic.split("/")


def _allowed(rules: list[AclRule], access: str, attacker: str, client_id: str) -> Machine:
    """Topics the attacker may ``access`` under ``client_id`` (deny rules first)."""
    grants: list[Machine] = []
    denials: list[Machine] = []
    for rule in rules:
        machine = PatternMachine(_rule_pattern(rule, attacker, client_id=client_id), attacker)
        if "deny" in rule.access:
            denials.append(machine)
        elif access in rule.access:
            grants.append(machine)
    return Difference(Union(grants), Union(denials))


def _client_ids(rules: list[AclRule], templates: tuple[Pattern, ...], attacker: str) -> list[str]:
    """The client ids worth trying (:func:`client_id_candidates`); only the own with no ``%c``."""
    if not any(_uses_client_id(r) for r in rules):
        return [attacker]
    levels = {level for r in rules for level in r.topic.split("/") if "%" not in level}
    return client_id_candidates(attacker, levels | template_levels(templates))


def acl_templates(rules: list[AclRule]) -> tuple[Pattern, ...]:
    """The topic model's templates and the ACL's own per-device patterns."""
    own = [
        _substitute_text(rule.topic, {"%u": SLOT, "%c": SLOT})
        for rule in rules
        if rule.pattern and {"%u", "%c"} & set(rule.topic.split("/"))
    ]
    return (*model_templates(), *own)


def analyze_acl(
    text: str,
    *,
    source: str = "acl",
    attacker: str = DEFAULT_ATTACKER,
    templates: tuple[Pattern, ...] | None = None,
) -> ReachReport:
    """What a device (username = its thing name) reaches of other devices' topics."""
    rules = parse_acl(text)
    applicable = [r for r in rules if r.pattern or r.user == attacker]
    owned_templates = templates or acl_templates(rules)
    chars = alphabet(owned_templates, extra=attacker + "".join(r.topic for r in rules))
    findings: list[Reach] = []
    client_ids = _client_ids(rules, owned_templates, attacker)
    for operation, access in ((Operation.PUBLISH, "write"), (Operation.RECEIVE, "read")):
        found = _first_reach(applicable, operation, access, client_ids, owned_templates, chars)
        findings.extend(found or _own_wildcards(applicable, operation, access))
    return ReachReport(source, tuple(findings))


def _first_reach(
    rules: list[AclRule],
    operation: Operation,
    access: str,
    client_ids: list[str],
    templates: tuple[Pattern, ...],
    chars: tuple[str, ...],
) -> list[Reach]:
    """The attacker's reach for one access, trying its own client id first."""
    attacker = client_ids[0]
    owned = owned_machine(templates, attacker)
    for client_id in client_ids:
        machines = [_allowed(rules, access, attacker, client_id), owned]
        topic = shortest_accepted(machines, all, chars + tuple(client_id), required=(0, 1))
        if topic is not None:
            victim = victim_of(templates, topic, attacker)
            topic, victim = readable(topic, victim, partial(accepted, machines))
            via = "" if client_id == attacker else client_id
            return [Reach(operation, Severity.HIGH, topic, victim, client_id=via)]
    return []


def _own_wildcards(rules: list[AclRule], operation: Operation, access: str) -> list[Reach]:
    return [
        Reach(operation, Severity.LOW, rule.topic, "", note=f"line {rule.line}")
        for rule in rules
        if access in rule.access and {"+", "#"} & set(rule.topic.split("/"))
    ]
