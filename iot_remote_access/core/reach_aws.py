"""Reachability for AWS IoT Core policies (see :mod:`reach` for the question answered).

AWS's evaluation, as documented (AWS IoT Core policy variables; IAM policy grammar):

- A request is allowed when an Allow statement matches and no Deny statement does.
  Actions match case-insensitively with IAM wildcards; resources are ARNs matched
  case-sensitively, ``*`` any string (``/`` included), ``?`` one character. ``+`` and
  ``#`` are literal characters in a policy - also in a Deny, so ``Deny topicfilter/#``
  refuses only the filter ``#`` itself. ``${*}``, ``${?}``, ``${$}`` are the escapes.
- ``iot:Publish`` is checked on ``topic/<topic>``, ``iot:Subscribe`` on
  ``topicfilter/<filter as requested>``, ``iot:Receive`` on ``topic/<topic>`` of each
  message delivered, ``iot:Connect`` on ``client/<client id>``.
- Policy variables: ``${iot:ClientId}`` is the client id of the connection;
  ``${iot:Connection.Thing.ThingName}`` resolves to a thing attached to the
  certificate whose name is the client id, and ``iot:Connection.Thing.IsAttached``
  is true only then. So a device connecting under another device's client id has no
  thing name and is not attached.

What the analysis cannot know it treats in the direction that reports more reach, and
says so in the report's notes: a condition on a key it does not model does not stop an
Allow and does not make a Deny apply; a variable it cannot resolve (thing attributes,
thing type) makes a pattern match nothing, in an Allow and in a Deny alike.

Standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from iot_remote_access.core.reach import (
    DEFAULT_ATTACKER,
    Operation,
    Reach,
    ReachReport,
    Severity,
    model_templates,
    owned_filters,
    owned_machine,
    readable,
    victim_of,
)
from iot_remote_access.core.reach_automata import (
    SLOT,
    STAR,
    Machine,
    Pattern,
    PatternMachine,
    PrefixedMachine,
    Union,
    accepted,
    alphabet,
    glob_pattern,
    matches_nothing,
    mqtt_filter_pattern,
    shortest_accepted,
)
from iot_remote_access.core.reach_filters import Difference, TopicsCovered

THING_NAME = "iot:Connection.Thing.ThingName"
CLIENT_ID = "iot:ClientId"
COMMON_NAME = "iot:Certificate.Subject.CommonName"
IS_ATTACHED = "iot:Connection.Thing.IsAttached"
_DEVICE_VARIABLES = (THING_NAME, CLIENT_ID, COMMON_NAME)
_DEFAULT_PREFIX = "arn:aws:iot:us-east-1:123456789012:"
_RESOURCE_KIND = {
    Operation.PUBLISH: "topic/",
    Operation.RECEIVE: "topic/",
    Operation.SUBSCRIBE: "topicfilter/",
    Operation.CONNECT: "client/",
}
_ACTION = {
    Operation.PUBLISH: "iot:publish",
    Operation.RECEIVE: "iot:receive",
    Operation.SUBSCRIBE: "iot:subscribe",
    Operation.CONNECT: "iot:connect",
}


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool
    condition: Mapping[str, Any]


@dataclass(frozen=True)
class Connection:
    """Who A is on one connection: its client id, and what the variables resolve to."""

    client_id: str | None  # None: the client id being requested (the Connect check)
    thing: str | None  # None: no thing attached under this client id
    common_name: str

    def variables(self) -> dict[str, Any]:
        return {
            CLIENT_ID: STAR if self.client_id is None else self.client_id,
            THING_NAME: self.thing,
            COMMON_NAME: self.common_name,
        }

    def value(self, key: str) -> str | None:
        values = {
            CLIENT_ID.lower(): "?unknown" if self.client_id is None else self.client_id,
            THING_NAME.lower(): self.thing,
            IS_ATTACHED.lower(): "true" if self.thing is not None else "false",
        }
        return values.get(key.lower(), "?unknown")


def statements(document: Mapping[str, Any]) -> list[Statement]:
    """The document's statements, normalised (strings become one-element tuples)."""
    raw = document.get("Statement", [])
    items = raw if isinstance(raw, list) else [raw]
    result = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        actions = item.get("Action", item.get("NotAction", []))
        resources = item.get("Resource", item.get("NotResource", []))
        result.append(
            Statement(
                allow=item.get("Effect") == "Allow",
                actions=tuple(_strings(actions)),
                not_actions="NotAction" in item,
                resources=tuple(_strings(resources)),
                not_resources="NotResource" in item,
                condition=item.get("Condition") or {},
            )
        )
    return result


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _action_matches(statement: Statement, operation: Operation) -> bool:
    action = _ACTION[operation]
    hit = any(glob_match(a.lower(), action) for a in statement.actions)
    return hit != statement.not_actions


def glob_match(pattern: str, text: str) -> bool:
    """IAM's ``*``/``?`` matching of a whole string, in O(len(pattern) x len(text)).

    Not a regular expression: a policy's pattern is untrusted input, and ``.*a.*a.*…``
    built from it backtracks exponentially in Python's regex engine.
    """
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]):
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star != -1:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def condition_holds(condition: Mapping[str, Any], connection: Connection) -> bool | None:
    """True/False when every operator and key is modelled; None when one is not."""
    verdict: bool | None = True
    for operator, pairs in condition.items():
        if not isinstance(pairs, Mapping):
            return None
        for key, expected in pairs.items():
            actual = connection.value(str(key))
            result = _operator(str(operator), actual, _strings(expected) or [str(expected)])
            if result is False:
                return False
            if result is None:
                verdict = None
    return verdict


def _operator(operator: str, actual: str | None, expected: list[str]) -> bool | None:
    if actual == "?unknown" or operator.endswith("IfExists"):
        return None
    if actual is None:
        return operator.startswith("StringNot")
    base = operator.removeprefix("ForAnyValue:").removeprefix("ForAllValues:")
    checks: dict[str, Callable[[str], bool]] = {
        "Bool": lambda e: actual.lower() == e.lower(),
        "StringEquals": lambda e: actual == e,
        "StringEqualsIgnoreCase": lambda e: actual.lower() == e.lower(),
        "StringLike": lambda e: glob_match(e, actual),
    }
    negated = base.replace("Not", "", 1) if base.startswith("StringNot") else None
    if base in checks:
        return any(checks[base](e) for e in expected)
    if negated in checks:
        return not any(checks[negated](e) for e in expected)
    return None


def arn_prefix(document: Mapping[str, Any]) -> str:
    """``arn:PARTITION:iot:REGION:ACCOUNT:`` as the policy names it most often.

    A device's requests are evaluated in its own region and account, which the policy's
    resources name; a resource in another one can never match. A sample when the policy
    names none (only ``*`` or wildcards there).
    """
    found = Counter(
        match.group(1)
        for statement in statements(document)
        for resource in statement.resources
        if (match := re.match(r"(arn:aws[a-z-]*:iot:[^:*?$]+:[^:*?$]+:)", resource))
    )
    return found.most_common(1)[0][0] if found else _DEFAULT_PREFIX


class Complement:
    """Accepts what ``inner`` does not (a NotResource)."""

    def __init__(self, inner: Machine) -> None:
        self.inner = inner

    def start(self) -> tuple[Any, ...]:
        return (self.inner.start(),)

    def step(self, state: Any, char: str) -> tuple[Any, ...]:
        (inner,) = state
        return (None if inner is None else self.inner.step(inner, char),)

    def accepts(self, state: Any) -> bool:
        (inner,) = state
        return inner is None or not self.inner.accepts(inner)


@dataclass
class _Policy:
    """One policy under analysis for attacker ``attacker``."""

    statements: list[Statement]
    attacker: str
    prefix: str
    notes: set[str]

    def allowed(self, operation: Operation, connection: Connection) -> Machine:
        allows: list[Machine] = []
        denies: list[Machine] = []
        for statement in self.statements:
            if not _action_matches(statement, operation):
                continue
            condition, constraint = statement.condition, None
            if connection.client_id is None:  # the Connect check: the id is the request
                condition, constraint = _client_id_constraint(condition, self)
            holds = condition_holds(condition, connection)
            if holds is None:
                self.notes.add(f"a condition the analysis does not model: {statement.condition}")
            if (statement.allow and holds is False) or (not statement.allow and holds is not True):
                continue
            patterns = [glob_pattern(r, connection.variables()) for r in statement.resources]
            if any(matches_nothing(p) for p in patterns):
                self.notes.add("a policy variable the analysis cannot resolve matches nothing")
            prefix = self.prefix + _RESOURCE_KIND[operation]
            machine: Machine = Union(
                [_resource_machine(p, prefix, self.attacker) for p in patterns]
            )
            if statement.not_resources:
                machine = Complement(machine)
            if constraint is not None:
                machine = Intersection([machine, constraint])
            (allows if statement.allow else denies).append(machine)
        return Difference(Union(allows), Union(denies))

    def covered(self, subscribe: Machine, connection: Connection) -> Machine:
        """Topics some allowed subscription matches (a finite union when filters are exact)."""
        literal = self.literal_candidates(Operation.SUBSCRIBE, connection)
        if literal is None:
            return TopicsCovered(subscribe)
        filters = [f for f in literal if accepted([subscribe], f)]
        return Union([PatternMachine(mqtt_filter_pattern(f), self.attacker) for f in filters])

    def literal_candidates(self, operation: Operation, connection: Connection) -> list[str] | None:
        """The only strings an Allow can match, when every Allow names exact resources.

        Then the allowed set is finite, and checking each string against the product
        answers the question exactly, without a search (the library's own policies).
        None when some Allow has a wildcard or a NotResource.
        """
        prefix = self.prefix + _RESOURCE_KIND[operation]
        candidates: set[str] = set()
        for statement in self.statements:
            if not (statement.allow and _action_matches(statement, operation)):
                continue
            if statement.not_resources:
                return None
            for resource in statement.resources:
                pattern = glob_pattern(resource, connection.variables())
                if matches_nothing(pattern):
                    continue
                if not all(isinstance(t, str) for t in pattern.tokens):
                    return None
                text = "".join(str(t) for t in pattern.tokens)
                if text.startswith(prefix):
                    candidates.add(text[len(prefix) :])
        return sorted(candidates, key=lambda c: (len(c), c))

    def search(
        self,
        operation: Operation,
        connection: Connection,
        machines: list[Machine],
        chars: tuple[str, ...],
    ) -> str | None:
        """The shortest string every machine accepts (machines[0]: what ``operation`` allows)."""
        literal = self.literal_candidates(operation, connection)
        if literal is not None:
            return next((c for c in literal if accepted(machines, c)), None)
        return shortest_accepted(machines, all, chars, required=range(len(machines)))

    def templates(self) -> tuple[Pattern, ...]:
        """The topic model's templates and the policy's own per-device resources."""
        own = {SLOT: SLOT}
        found: list[Pattern] = []
        for statement in self.statements:
            for resource in statement.resources:
                kind = re.search(r":(topic|topicfilter)/", resource)
                if kind and any(f"${{{v}}}" in resource for v in _DEVICE_VARIABLES):
                    text = resource[kind.end() :]
                    variables = {v: own[SLOT] for v in _DEVICE_VARIABLES}
                    found.append(glob_pattern(text, variables))
        return (*model_templates(), *[p for p in found if not matches_nothing(p)])

    def chars(self, templates: Iterable[Pattern]) -> tuple[str, ...]:
        named = self.attacker + "".join(r for s in self.statements for r in s.resources)
        named += "".join(str(s.condition) for s in self.statements)  # values a condition names
        return alphabet(templates, extra=named)


def analyze_policy(
    document: Mapping[str, Any],
    *,
    source: str = "policy",
    attacker: str = DEFAULT_ATTACKER,
    templates: tuple[Pattern, ...] | None = None,
) -> ReachReport:
    """What a device holding this policy reaches of other devices, with witnesses."""
    policy = _Policy(statements(document), attacker, arn_prefix(document), set())
    owned_templates = templates or policy.templates()
    chars = policy.chars(owned_templates)
    findings: list[Reach] = []
    connections = [Connection(attacker, attacker, attacker)]
    impostor = _connect_as_other(policy, chars)
    if impostor is not None:
        findings.append(impostor)
        connections.append(Connection(impostor.witness, None, attacker))
    done: set[Operation] = set()
    for connection in connections:
        for found in _topic_reach(policy, connection, owned_templates, chars):
            if found.operation not in done:
                done.add(found.operation)
                findings.append(found)
    findings.extend(_own_wildcards(policy, done))
    return ReachReport(source, tuple(findings), tuple(sorted(policy.notes)))


def _connect_as_other(policy: _Policy, chars: tuple[str, ...]) -> Reach | None:
    requested = Connection(None, None, policy.attacker)
    machines = [
        policy.allowed(Operation.CONNECT, requested),
        PatternMachine(Pattern((SLOT,)), policy.attacker),
    ]
    client_id = policy.search(Operation.CONNECT, requested, machines, chars)
    if client_id is None:
        return None
    client_id, _ = readable(client_id, client_id, lambda t: accepted(machines, t))
    return Reach(Operation.CONNECT, Severity.HIGH, client_id, client_id)


def _topic_reach(
    policy: _Policy, connection: Connection, templates: tuple[Pattern, ...], chars: tuple[str, ...]
) -> list[Reach]:
    owned = owned_machine(templates, policy.attacker)
    via = "" if connection.client_id == policy.attacker else str(connection.client_id)
    subscribe = policy.allowed(Operation.SUBSCRIBE, connection)
    found: list[Reach] = []
    for operation, machines in (
        (Operation.PUBLISH, [policy.allowed(Operation.PUBLISH, connection), owned]),
        (
            Operation.RECEIVE,
            [
                policy.allowed(Operation.RECEIVE, connection),
                owned,
                policy.covered(subscribe, connection),
            ],
        ),
    ):
        topic = policy.search(operation, connection, machines, chars)
        if topic is not None:
            victim = victim_of(templates, topic, policy.attacker)
            topic, victim = readable(topic, victim, partial(accepted, machines))
            found.append(Reach(operation, Severity.HIGH, topic, victim, client_id=via))
    filters = [subscribe, owned_filters(templates, policy.attacker)]
    topic_filter = policy.search(Operation.SUBSCRIBE, connection, filters, chars)
    if topic_filter is not None:
        found.append(_subscription(policy, topic_filter, filters, owned, templates, chars, via))
    return found


def _subscription(
    policy: _Policy,
    topic_filter: str,
    filters: list[Machine],
    owned: Machine,
    templates: tuple[Pattern, ...],
    chars: tuple[str, ...],
    via: str,
) -> Reach:
    """A subscription witness: the filter, and one topic of B it matches."""

    def matched_topic(text: str) -> str | None:
        matched = PatternMachine(mqtt_filter_pattern(text), policy.attacker)
        return shortest_accepted([matched, owned], all, chars, required=(0, 1))

    topic = matched_topic(topic_filter) or ""
    victim = victim_of(templates, topic, policy.attacker)
    renamed, new_victim = readable(topic_filter, victim, lambda t: accepted(filters, t))
    if renamed != topic_filter and (new_topic := matched_topic(renamed)):
        topic_filter, topic, victim = renamed, new_topic, new_victim
    elif victim:
        topic, victim = readable(
            topic,
            victim,
            lambda t: (
                accepted([owned], t)
                and accepted(
                    [PatternMachine(mqtt_filter_pattern(topic_filter), policy.attacker)], t
                )
            ),
        )
    return Reach(Operation.SUBSCRIBE, Severity.HIGH, topic_filter, victim, topic, client_id=via)


def _own_wildcards(policy: _Policy, reached: set[Operation]) -> list[Reach]:
    """Wildcards that stay inside the device's own topics: reported, but low."""
    low: list[Reach] = []
    for operation in (Operation.PUBLISH, Operation.SUBSCRIBE, Operation.RECEIVE):
        if operation in reached:
            continue
        for statement in policy.statements:
            if not (statement.allow and _action_matches(statement, operation)):
                continue
            for resource in statement.resources:
                kind = _RESOURCE_KIND[operation]
                wild = re.sub(r"\$\{[*?$]\}", "", resource)
                if f":{kind}" in resource and ("*" in wild or "?" in wild):
                    low.append(Reach(operation, Severity.LOW, resource, ""))
    return low


class Intersection:
    """Accepts what every one of ``machines`` accepts."""

    def __init__(self, machines: list[Machine]) -> None:
        self.machines = machines

    def start(self) -> tuple[Any, ...] | None:
        states = tuple(m.start() for m in self.machines)
        return None if any(s is None for s in states) else states

    def step(self, state: Any, char: str) -> tuple[Any, ...] | None:
        states = tuple(m.step(s, char) for m, s in zip(self.machines, state, strict=True))
        return None if any(s is None for s in states) else states

    def accepts(self, state: Any) -> bool:
        return all(m.accepts(s) for m, s in zip(self.machines, state, strict=True))


def _client_id_constraint(
    condition: Mapping[str, Any], policy: _Policy
) -> tuple[dict[str, Any], Machine | None]:
    """Conditions on ``iot:ClientId`` as a machine over ``client/<id>`` ARNs, and the rest.

    In the Connect check the client id is what is being asked for, so a condition on it
    is a constraint on the resource, decided exactly instead of "unknown".
    """
    rest: dict[str, Any] = {}
    constraints: list[Machine] = []
    for operator, pairs in condition.items():
        kept = {}
        for key, expected in pairs.items() if isinstance(pairs, Mapping) else ():
            base = str(operator).replace("Not", "", 1)
            if str(key).lower() != CLIENT_ID.lower() or base not in ("StringEquals", "StringLike"):
                kept[key] = expected
                continue
            values = _strings(expected) or [str(expected)]
            literal = base == "StringEquals"
            patterns = [Pattern(tuple(v)) if literal else glob_pattern(v) for v in values]
            machine: Machine = Union([PatternMachine(p, policy.attacker) for p in patterns])
            constraints.append(Complement(machine) if "Not" in str(operator) else machine)
        if kept or not isinstance(pairs, Mapping):
            rest[operator] = kept if isinstance(pairs, Mapping) else pairs
    return rest, (Intersection(constraints) if constraints else None)


def _resource_machine(pattern: Pattern, prefix: str, attacker: str) -> Machine:
    """A resource pattern as a machine over what follows ``prefix`` (``arn:...:topic/``).

    Most resources spell the prefix out; their machine starts after it. Others
    (``*``, ``arn:aws:iot:*:*:topic/...``) read the prefix first.
    """
    head = pattern.tokens[: len(prefix)]
    if len(head) == len(prefix) and all(t == c for t, c in zip(head, prefix, strict=True)):
        return PatternMachine(Pattern(pattern.tokens[len(prefix) :]), attacker)
    return PrefixedMachine(PatternMachine(pattern, attacker), prefix)


def outside_own_namespace(
    document: Mapping[str, Any], resource: str, *, attacker: str = DEFAULT_ATTACKER
) -> str | None:
    """A string ``resource`` allows the device (as itself) that is not under its own name.

    The device's own namespace: everything under its name in each template
    (``dt/<name>/...``, ``$aws/things/<name>/...``, the policy's per-device resources).
    None when the resource stays inside it - the case the guard grades LOW.
    """
    policy = _Policy(statements(document), attacker, arn_prefix(document), set())
    kind = re.search(r":(topic|topicfilter|client)/", resource)
    if kind is None:
        return None
    prefix = policy.prefix + resource[kind.start() + 1 : kind.end()]
    me = Connection(attacker, attacker, attacker)
    machine = _resource_machine(glob_pattern(resource, me.variables()), prefix, attacker)
    templates = policy.templates()
    chars = policy.chars(templates)
    return shortest_accepted(
        [machine, _own_namespace(templates, attacker)], all, chars, required=(0,)
    )


@lru_cache(maxsize=256)
def _own_namespace(templates: tuple[Pattern, ...], attacker: str) -> Complement:
    """Everything outside the device's own subtrees; shared by documents with one model."""
    return Complement(
        Union([PatternMachine(_own_subtree(p, attacker), attacker) for p in templates])
    )


def _own_subtree(template: Pattern, attacker: str) -> Pattern:
    """``head/{thing}/...`` as ``head/<attacker>`` followed by anything."""
    tokens: list[Any] = []
    for token in template.tokens:
        if token == SLOT:
            tokens.extend(attacker)
            return Pattern((*tokens, STAR))
        tokens.append(token)
    return Pattern(tuple(tokens))
