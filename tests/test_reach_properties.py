"""The reachability analysis against a brute-force oracle (tests/support/reach_oracle.py).

For random AWS IoT policies and mosquitto ACLs built from a small vocabulary (every
wildcard kind, every device variable, Deny statements, conditions):

- completeness: whenever the oracle finds a topic of another device in its finite
  universe that the attacker reaches, the analysis reports that operation;
- soundness: every witness the analysis reports is checked by the oracle's own
  evaluation of that one concrete request.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core.hivemq_permissions import Activity, HivemqPermission
from iot_remote_access.core.reach import Operation, Reach, Severity, template_pattern
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.reach_hivemq import analyze_role
from iot_remote_access.core.reach_mosquitto import analyze_acl
from tests.support import reach_oracle as oracle

EXAMPLES = int(os.environ.get("IRA_FUZZ_EXAMPLES", "150"))
TEMPLATES = tuple(template_pattern(t) for t in oracle.TEMPLATES)

_SEGMENTS = (
    *oracle.LEVELS,
    "${iot:ClientId}",
    "${iot:Connection.Thing.ThingName}",
    "*",
    "?",
    "+",
    "#",
    "d*",
    "dev?ce-b",
)
_ACTIONS = ("iot:Publish", "iot:Subscribe", "iot:Receive", "iot:Connect", "iot:*", "*", "iot:P*")
_KINDS = ("topic/", "topicfilter/", "client/")


@st.composite
def resources(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return "*"
    levels = draw(st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=3))
    return oracle.PREFIX + draw(st.sampled_from(_KINDS)) + "/".join(levels)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    statements = []
    for _ in range(draw(st.integers(1, 4))):
        statement: dict[str, Any] = {
            "Effect": "Deny" if draw(st.integers(0, 3)) == 0 else "Allow",
            "Action": draw(st.lists(st.sampled_from(_ACTIONS), min_size=1, max_size=2)),
            "Resource": draw(st.lists(resources(), min_size=1, max_size=2)),
        }
        condition = draw(st.sampled_from(("none", "attached", "client")))
        if condition == "attached":
            statement["Condition"] = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
        elif condition == "client":
            statement["Condition"] = {"StringEquals": {"iot:ClientId": "device-b"}}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def _aws_witness_is_real(document: dict[str, Any], found: Reach) -> bool:
    connection = oracle.AwsConnection(found.client_id or oracle.ATTACKER)

    def allows(action: str, kind: str, text: str) -> bool:
        return oracle.aws_allows(document, action, oracle.PREFIX + kind + text, connection)

    if found.operation is Operation.CONNECT:
        witness = oracle.AwsConnection(found.witness)
        return found.witness != oracle.ATTACKER and oracle.aws_allows(
            document, "iot:connect", oracle.PREFIX + "client/" + found.witness, witness
        )
    if found.operation is Operation.PUBLISH:
        return allows("iot:publish", "topic/", found.witness) and bool(oracle.owner(found.witness))
    if found.operation is Operation.SUBSCRIBE:
        return (
            allows("iot:subscribe", "topicfilter/", found.witness)
            and oracle.mqtt_matches(found.witness, found.victim_topic)
            and bool(oracle.owner(found.victim_topic))
        )
    return (
        allows("iot:receive", "topic/", found.witness)
        and bool(oracle.owner(found.witness))
        and any(
            allows("iot:subscribe", "topicfilter/", f) for f in oracle.filters_of(found.witness)
        )
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_aws_analysis_agrees_with_the_oracle(document: dict[str, Any]) -> None:
    report = analyze_policy(document, templates=TEMPLATES, attacker=oracle.ATTACKER)
    reported = {f.operation.value for f in report.lateral}
    assert oracle.aws_reach(document) <= reported, report
    for found in report.lateral:
        assert _aws_witness_is_real(document, found), found


_ACL_LEVELS = (*oracle.LEVELS, "%u", "%c", "+", "#")


@st.composite
def acls(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(("pattern", "topic", "user device-a", "user device-b")))
        if kind.startswith("user"):
            lines.append(kind)
            continue
        levels = draw(st.lists(st.sampled_from(_ACL_LEVELS), min_size=1, max_size=3))
        access = draw(st.sampled_from(("read", "write", "readwrite", "deny")))
        lines.append(f"{kind} {access} {'/'.join(levels)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(acls())
def test_mosquitto_analysis_agrees_with_the_oracle(acl: str) -> None:
    report = analyze_acl(acl, templates=TEMPLATES, attacker=oracle.ATTACKER)
    reported = {f.operation.value for f in report.lateral}
    assert oracle.mosquitto_reach(acl) <= reported, report
    for found in report.lateral:
        access = "write" if found.operation is Operation.PUBLISH else "read"
        client_id = found.client_id or oracle.ATTACKER
        assert oracle.mosquitto_allows(acl, access, found.witness, client_id), found
        assert oracle.owner(found.witness), found
        assert found.severity is Severity.HIGH


_HIVEMQ_LEVELS = (*oracle.LEVELS, "${mqtt-clientid}", "+", "#")


@st.composite
def hivemq_roles(draw: st.DrawFn) -> list[tuple[str, str]]:
    return [
        (
            draw(st.sampled_from(("PUBLISH", "SUBSCRIBE"))),
            "/".join(draw(st.lists(st.sampled_from(_HIVEMQ_LEVELS), min_size=1, max_size=3))),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hivemq_roles())
def test_hivemq_analysis_agrees_with_the_oracle(role: list[tuple[str, str]]) -> None:
    permissions = tuple(HivemqPermission(topic, Activity(activity), "") for activity, topic in role)
    report = analyze_role(permissions, source="role", templates=TEMPLATES, attacker=oracle.ATTACKER)
    reported = {f.operation.value for f in report.lateral}
    assert oracle.hivemq_reach(role) <= reported, report
    for found in report.lateral:
        client_id = found.client_id or oracle.ATTACKER
        granted = [(a, t.replace("${mqtt-clientid}", client_id)) for a, t in role]
        topic = found.victim_topic or found.witness
        assert oracle.owner(topic), found
        if found.operation is Operation.PUBLISH:
            assert any(a == "PUBLISH" and oracle.mqtt_matches(t, topic) for a, t in granted)
        else:
            assert any(
                a == "SUBSCRIBE" and oracle.filter_within(found.witness, t) for a, t in granted
            ), found
