"""Hypothesis strategies for the reachability tests: policies, ACLs and HiveMQ roles
built from a small vocabulary (every wildcard kind, device variables, Deny, conditions)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st

from tests.support import reach_oracle as oracle

EXAMPLES = int(os.environ.get("IRA_FUZZ_EXAMPLES", "150"))

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
