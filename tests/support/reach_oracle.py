"""A brute-force oracle for the reachability analysis, written from the brokers' docs.

It shares no code with ``core/reach*``: it evaluates one concrete request at a time
(AWS: IAM globs with policy variables substituted, Allow unless a Deny matches;
mosquitto: deny rules first, then read/write rules as MQTT filters) and enumerates a
finite universe of topics, filters and client ids. The property tests check that the
analysis finds reach exactly when the oracle does, and that every witness is real.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ATTACKER = "device-a"
LEVELS = ("device-a", "device-b", "dt", "cmd", "x", "d")
CLIENT_IDS = ("device-a", "device-b", "d")
#: The "topics of a device" both sides use in the property tests.
TEMPLATES = ("dt/{thing}/x", "cmd/{thing}/x", "{thing}")
PREFIX = "arn:aws:iot:us-east-1:123456789012:"
_NAME = "[A-Za-z0-9:_-]+"


def topics(depth: int = 3) -> Iterator[str]:
    for size in range(1, depth + 1):
        for levels in itertools.product(LEVELS, repeat=size):
            yield "/".join(levels)


def filters(depth: int = 3) -> Iterator[str]:
    for size in range(1, depth + 1):
        for levels in itertools.product((*LEVELS, "+"), repeat=size):
            yield "/".join(levels)
            yield "/".join((*levels, "#"))
    yield "#"


def filters_of(topic: str) -> Iterator[str]:
    """Every filter that matches ``topic``: each level itself or '+', and '#' tails."""
    levels = topic.split("/")
    for choice in itertools.product((False, True), repeat=len(levels)):
        chosen = ["+" if plus else level for plus, level in zip(choice, levels, strict=True)]
        for cut in range(len(chosen) + 1):
            candidate = "/".join([*chosen[:cut], "#"]) if cut < len(chosen) else "/".join(chosen)
            if mqtt_matches(candidate, topic):
                yield candidate
        if mqtt_matches("/".join([*chosen, "#"]), topic):
            yield "/".join([*chosen, "#"])


def owner(topic: str) -> str | None:
    """The other device whose topic this is, by :data:`TEMPLATES`."""
    for template in TEMPLATES:
        head, _, tail = template.partition("{thing}")
        match = re.fullmatch(re.escape(head) + f"({_NAME})" + re.escape(tail), topic)
        if match and match.group(1) != ATTACKER:
            return match.group(1)
    return None


def mqtt_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7, level by level."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    if any(("+" in w or "#" in w) and w not in ("+", "#") for w in wanted):
        return False  # not a valid filter: brokers never match it
    for index, part in enumerate(wanted):
        if part == "#":
            return index == len(wanted) - 1 and len(levels) >= index
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(levels) == len(wanted)


# --- AWS IoT policies -------------------------------------------------------


@dataclass(frozen=True)
class AwsConnection:
    client_id: str

    @property
    def thing(self) -> str | None:
        return ATTACKER if self.client_id == ATTACKER else None


def _resource_regex(resource: str, connection: AwsConnection) -> str | None:
    values = {
        "iot:ClientId": connection.client_id,
        "iot:Connection.Thing.ThingName": connection.thing,
        "iot:Certificate.Subject.CommonName": ATTACKER,
        "*": "*",
        "?": "?",
        "$": "$",
    }
    out = []
    for piece in re.split(r"(\$\{[^}]*\})", resource):
        if piece.startswith("${"):
            value = values.get(piece[2:-1])
            if value is None:
                return None
            out.append(re.escape(value))
        else:
            out.extend(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in piece)
    return "".join(out)


def _condition(condition: Mapping[str, Any], connection: AwsConnection) -> bool:
    for operator, pairs in condition.items():
        for key, value in pairs.items():
            if operator == "Bool" and key == "iot:Connection.Thing.IsAttached":
                attached = "true" if connection.thing else "false"
                if attached != str(value).lower():
                    return False
            elif operator == "StringEquals" and key == "iot:ClientId":
                if connection.client_id != value:
                    return False
            else:
                raise AssertionError(f"the oracle does not model {operator} {key}")
    return True


def aws_allows(
    document: Mapping[str, Any], action: str, resource: str, connection: AwsConnection
) -> bool:
    """One request, as AWS IoT evaluates it: some Allow matches and no Deny does."""
    allowed = False
    for statement in document["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        if not any(
            re.fullmatch(_resource_regex(a.lower(), connection) or "", action) for a in actions
        ):
            continue
        if not _condition(statement.get("Condition", {}), connection):
            continue
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        for pattern in resources:
            regex = _resource_regex(pattern, connection)
            if regex is not None and re.fullmatch(regex, resource, flags=re.DOTALL):
                if statement["Effect"] == "Deny":
                    return False
                allowed = True
    return allowed


def aws_connections(document: Mapping[str, Any]) -> list[AwsConnection]:
    """The attacker as itself, and under every client id it may connect with."""
    found = [AwsConnection(ATTACKER)]
    for client_id in CLIENT_IDS:
        connection = AwsConnection(client_id)
        if client_id != ATTACKER and aws_allows(
            document, "iot:connect", PREFIX + "client/" + client_id, connection
        ):
            found.append(connection)
    return found


def aws_reach(document: Mapping[str, Any]) -> set[str]:
    """The operations (publish/subscribe/receive/connect) with a witness in the universe."""
    reached: set[str] = set()
    connections = aws_connections(document)
    if len(connections) > 1:
        reached.add("connect")
    all_filters = list(filters())
    for connection in connections:

        def allows(action: str, kind: str, text: str, c: AwsConnection = connection) -> bool:
            return aws_allows(document, action, PREFIX + kind + text, c)

        subscribable = [f for f in all_filters if allows("iot:subscribe", "topicfilter/", f)]
        for topic in topics():
            if owner(topic) is None:
                continue
            if allows("iot:publish", "topic/", topic):
                reached.add("publish")
            if any(mqtt_matches(f, topic) for f in subscribable):
                reached.add("subscribe")
                if allows("iot:receive", "topic/", topic):
                    reached.add("receive")
    return reached


# --- mosquitto acl_file -----------------------------------------------------


def _rules_for(acl: str, client_id: str) -> list[tuple[str, str]]:
    """(access, topic filter) for the attacker, %u/%c substituted as mosquitto does."""
    rules: list[tuple[str, str]] = []
    user = ""
    for line in acl.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "user":
            user = words[1]
            continue
        access, topic = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
        if words[0] == "pattern":
            levels = topic.split("/")
            subs = {"%u": ATTACKER, "%c": client_id}
            topic = "/".join(subs.get(level, level) for level in levels)
        elif user != ATTACKER:
            continue
        rules.append((access, topic))
    return rules


def mosquitto_allows(acl: str, access: str, topic: str, client_id: str) -> bool:
    rules = _rules_for(acl, client_id)
    if any(a == "deny" and mqtt_matches(t, topic) for a, t in rules):
        return False
    return any(access in a and mqtt_matches(t, topic) for a, t in rules if a != "deny")


def mosquitto_reach(acl: str) -> set[str]:
    reached: set[str] = set()
    for client_id in CLIENT_IDS:
        for topic in topics():
            if owner(topic) is None:
                continue
            if mosquitto_allows(acl, "write", topic, client_id):
                reached.add("publish")
            if mosquitto_allows(acl, "read", topic, client_id):
                reached.add("receive")
    return reached


# --- HiveMQ ESE permissions -------------------------------------------------


@functools.lru_cache(maxsize=100_000)
def filter_within(requested: str, granted: str) -> bool:
    """Every topic ``requested`` matches is matched by ``granted`` (HiveMQ's subscribe check)."""
    if requested.startswith("$share/"):
        requested = requested.split("/", 2)[2]
    if "+" not in requested.split("/") and "#" not in requested.split("/"):
        return mqtt_matches(granted, requested)  # a plain topic as the filter
    return all(
        mqtt_matches(granted, topic) for topic in topics(4) if mqtt_matches(requested, topic)
    )


def hivemq_reach(permissions: list[tuple[str, str]]) -> set[str]:
    """``permissions``: (activity, topic with ${mqtt-clientid}); any client id may be sent.

    A subscription reaches B exactly when some granted filter matches a topic of B: that
    topic itself is then a filter within the permission (and any wider filter within the
    permission only matches topics the permission matches).
    """
    reached: set[str] = set()
    owned = [topic for topic in topics() if owner(topic)]
    for client_id in CLIENT_IDS:
        granted = [(a, t.replace("${mqtt-clientid}", client_id)) for a, t in permissions]
        for activity, operation in (("PUBLISH", "publish"), ("SUBSCRIBE", "subscribe")):
            filters_granted = [t for a, t in granted if a == activity]
            if any(mqtt_matches(f, topic) for f in filters_granted for topic in owned):
                reached.add(operation)
    return reached
