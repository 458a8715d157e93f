"""Find wildcard and overly permissive statements in an AWS IoT policy.

Pure Python, no AWS calls: the same checker serves the CDK validation plugin,
``iot-remote-access lint`` (templates in CI) and ``audit`` (a live account).
The rules follow Device Defender's IOT_POLICY_OVERLY_PERMISSIVE_CHECK and go
further where this project's policy is stricter (no wildcard in any resource).
Deny statements are never findings: in a Deny, a wide resource narrows access.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from iot_remote_access.core.cfn_intrinsics import is_unresolved, list_items, string_alternatives

THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
IS_ATTACHED_KEY = "iot:connection.thing.isattached"


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    #: Only given by the reachability grading (guard.reach_grading): a wildcard that
    #: provably stays inside the device's own topics. Never fails ``lint`` by default.
    LOW = "low"


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name: str
    severity: Severity
    summary: str


RULES: dict[str, Rule] = {
    rule.rule_id: rule
    for rule in (
        Rule(
            "IRA001",
            "wildcard-action",
            Severity.HIGH,
            "An Allow statement grants a wildcard action such as '*' or 'iot:*'.",
        ),
        Rule(
            "IRA002",
            "topic-wildcard",
            Severity.HIGH,
            "Publish, Receive or Subscribe is allowed on a topic or topic filter "
            "containing '*', '?', '+' or '#'.",
        ),
        Rule(
            "IRA003",
            "client-wildcard",
            Severity.HIGH,
            "Connect is allowed on a wildcard client id such as 'client/*'.",
        ),
        Rule(
            "IRA004",
            "connect-not-bound-to-thing",
            Severity.MEDIUM,
            "Connect is allowed on a client id other than "
            "'client/${iot:Connection.Thing.ThingName}', so a certificate can "
            "connect under a name that is not its own thing.",
        ),
        Rule(
            "IRA005",
            "connect-without-isattached",
            Severity.MEDIUM,
            "Connect is allowed without the condition 'iot:Connection.Thing.IsAttached: true'.",
        ),
        Rule(
            "IRA006",
            "thing-wildcard",
            Severity.HIGH,
            "A shadow or job action is allowed on a wildcard thing such as 'thing/*'.",
        ),
        Rule(
            "IRA007",
            "allow-with-not",
            Severity.HIGH,
            "An Allow statement uses NotAction or NotResource, which grants everything not listed.",
        ),
        Rule(
            "IRA008",
            "resource-wildcard",
            Severity.HIGH,
            "An Allow statement grants an IoT action on '*' or on an ARN with a "
            "wildcard in its partition, region, account or resource type.",
        ),
        Rule(
            "IRA009",
            "unverifiable",
            Severity.MEDIUM,
            "An action or resource is only known at deployment (a parameter, an "
            "attribute, an import), so it cannot be proven free of wildcards.",
        ),
    )
}

_TOPIC_ACTIONS = {"iot:publish", "iot:receive", "iot:retainpublish"}
_TOPICFILTER_ACTIONS = {"iot:subscribe"}
_CLIENT_ACTIONS = {"iot:connect"}
_THING_ACTIONS = {
    "iot:getthingshadow",
    "iot:updatethingshadow",
    "iot:deletethingshadow",
    "iot:listnamedshadowsforthing",
    "iot:describejobexecution",
    "iot:getpendingjobexecutions",
    "iot:startnextpendingjobexecution",
    "iot:updatejobexecution",
}
_WILDCARD_CHARS = ("*", "?")
_MQTT_WILDCARD_CHARS = ("+", "#")


class PolicyDocumentError(ValueError):
    """A policy document that is not a valid IAM-style policy."""


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    statement: int
    action: str
    resource: str
    message: str

    @property
    def rule(self) -> Rule:
        return RULES[self.rule_id]


def check_policy(document: Mapping[str, Any] | str) -> list[Finding]:
    """Findings for one IoT policy document, in statement order.

    ``document`` is a dict or JSON text; CloudFormation intrinsics in actions and
    resources are resolved as far as possible. Raises :class:`PolicyDocumentError`
    naming the location when the document is not a policy at all.
    """
    statements = _statements(_parse(document))
    findings: list[Finding] = []
    for index, statement in enumerate(statements):
        findings.extend(_check_statement(index, statement))
    return list(dict.fromkeys(findings))


def _parse(document: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(document, str):
        try:
            parsed = json.loads(document)
        except json.JSONDecodeError as error:
            raise PolicyDocumentError(
                f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from None
        document = parsed
    if not isinstance(document, Mapping):
        raise PolicyDocumentError(
            f"policy document: expected a JSON object, got {type(document).__name__}"
        )
    return document


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "Statement" not in document:
        raise PolicyDocumentError("policy document: no 'Statement'")
    raw = document["Statement"]
    statements = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(statements, list):
        raise PolicyDocumentError(
            f"Statement: expected an object or a list, got {type(raw).__name__}"
        )
    for index, statement in enumerate(statements):
        if not isinstance(statement, Mapping):
            raise PolicyDocumentError(
                f"Statement[{index}]: expected an object, got {type(statement).__name__}"
            )
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyDocumentError(
                f"Statement[{index}].Effect: {effect!r}; allowed: 'Allow' or 'Deny'"
            )
        if not any(key in statement for key in ("Action", "NotAction")):
            raise PolicyDocumentError(f"Statement[{index}]: no 'Action' or 'NotAction'")
        if not any(key in statement for key in ("Resource", "NotResource")):
            raise PolicyDocumentError(f"Statement[{index}]: no 'Resource' or 'NotResource'")
    return statements


def _strings_of(statement: Mapping[str, Any], key: str, index: int) -> list[str]:
    value = statement.get(key)
    if value is not None and not isinstance(value, str | list | Mapping):
        raise PolicyDocumentError(
            f"Statement[{index}].{key}: expected a string or a list, got {type(value).__name__}"
        )
    strings: list[str] = []
    for item in list_items(value):
        strings.extend(string_alternatives(item))
    return strings


def _check_statement(index: int, statement: Mapping[str, Any]) -> list[Finding]:
    if statement["Effect"] == "Deny":
        return []
    findings: list[Finding] = []

    def add(rule_id: str, action: str, resource: str, why: str) -> None:
        findings.append(Finding(rule_id, RULES[rule_id].severity, index, action, resource, why))

    for key in ("NotAction", "NotResource"):
        if key in statement:
            add("IRA007", key, key, f"Allow with {key} grants everything it does not list")
    actions = _strings_of(statement, "Action", index)
    resources = _strings_of(statement, "Resource", index)
    is_attached = _has_is_attached(statement.get("Condition"))

    for action in actions:
        if is_unresolved(action):
            add("IRA009", action, "", f"action {action!r} is only known at deployment")
        elif any(ch in action for ch in _WILDCARD_CHARS):
            add(
                "IRA001",
                action,
                ", ".join(resources) or "*",
                f"action {action!r} is a wildcard; name each iot: action",
            )
    iot_actions = [a.lower() for a in actions if a.lower().startswith("iot:")]
    for action in iot_actions:
        for resource in resources:
            findings.extend(_check_pair(index, action, resource, is_attached=is_attached))
    return findings


def _check_pair(index: int, action: str, resource: str, *, is_attached: bool) -> list[Finding]:
    def finding(rule_id: str, why: str) -> Finding:
        return Finding(rule_id, RULES[rule_id].severity, index, action, resource, why)

    if is_unresolved(resource):
        prefix_findings = _check_pair(
            index, action, resource.split("<unresolved:", 1)[0], is_attached=True
        )
        wildcard_prefix = [f for f in prefix_findings if f.rule_id != "IRA004"]
        return [*wildcard_prefix, finding("IRA009", "resource is only known at deployment")]
    if resource == "*":
        return [finding("IRA008", f"{action} on every resource")]
    parts = resource.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        if any(ch in resource for ch in _WILDCARD_CHARS):
            return [finding("IRA008", f"{action} on wildcard resource {resource!r}")]
        return []
    head, tail = ":".join(parts[:5]), parts[5]
    if any(ch in head for ch in _WILDCARD_CHARS):
        return [finding("IRA008", f"wildcard in the ARN's partition, region or account: {head!r}")]
    resource_type, _, name = tail.partition("/")
    if any(ch in resource_type for ch in _WILDCARD_CHARS):
        return [finding("IRA008", f"wildcard resource type {resource_type!r}")]
    wildcard = next((ch for ch in _WILDCARD_CHARS if ch in name), None)
    mqtt_wildcard = next((ch for ch in _MQTT_WILDCARD_CHARS if ch in name), None)

    if (resource_type == "topic" and action in _TOPIC_ACTIONS) or (
        resource_type == "topicfilter" and action in _TOPICFILTER_ACTIONS
    ):
        found = wildcard or mqtt_wildcard
        if found:
            return [finding("IRA002", f"{action} on {resource_type} {name!r} contains {found!r}")]
        return []
    if resource_type == "client" and action in _CLIENT_ACTIONS:
        if wildcard:
            return [finding("IRA003", f"connect as any client id matching {name!r}")]
        results = []
        if name != THING_NAME_VARIABLE:
            results.append(
                finding(
                    "IRA004",
                    f"client id {name!r} is not bound to the thing name; use {THING_NAME_VARIABLE}",
                )
            )
        if not is_attached:
            results.append(
                finding(
                    "IRA005",
                    "no condition iot:Connection.Thing.IsAttached: true",
                )
            )
        return results
    if resource_type == "thing" and action in _THING_ACTIONS and wildcard:
        return [finding("IRA006", f"{action} on any thing matching {name!r}")]
    return []


def _has_is_attached(condition: Any) -> bool:
    if not isinstance(condition, Mapping):
        return False
    for operator, clauses in condition.items():
        if not isinstance(operator, str) or operator.split(":")[-1] not in ("Bool", "StringEquals"):
            continue
        if not isinstance(clauses, Mapping):
            continue
        for key, value in clauses.items():
            if isinstance(key, str) and key.lower() == IS_ATTACHED_KEY:
                values = value if isinstance(value, list) else [value]
                if values and all(str(v).lower() == "true" for v in values):
                    return True
    return False
