"""`reach --live`: confirm each witness against a live account with AWS IoT's TestAuthorization.

The analysis reads the policy (``GetPolicy``, default version) and reports its witnesses;
each HIGH witness is then asked of AWS IoT as one ``TestAuthorization`` call with the
operator's certificate as principal and the policy added (``policyNamesToAdd``), so the
answer is AWS's own evaluation of exactly that request. Read-only: TestAuthorization
changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from iot_remote_access.core.bounded_input import parse_json
from iot_remote_access.core.reach import Operation, Reach, ReachReport
from iot_remote_access.core.reach_aws import analyze_policy

ACTION_TYPES = {
    Operation.CONNECT: ("CONNECT", "client/"),
    Operation.PUBLISH: ("PUBLISH", "topic/"),
    Operation.SUBSCRIBE: ("SUBSCRIBE", "topicfilter/"),
    Operation.RECEIVE: ("RECEIVE", "topic/"),
}
_CERT_ARN = re.compile(r"\A(arn:aws[a-z-]*:iot:[a-z0-9-]+:[0-9]{12}:)cert/[0-9a-f]{64}\Z")


class LiveReachError(ValueError):
    """Bad input for a live check (names the option and what is allowed)."""


def arn_prefix_of(principal: str) -> str:
    """``arn:aws:iot:REGION:ACCOUNT:`` of a certificate ARN, or a one-line error."""
    match = _CERT_ARN.match(principal)
    if match is None:
        raise LiveReachError(
            f"--principal: {principal[:80]!r}; allowed: a certificate ARN "
            "arn:aws:iot:REGION:ACCOUNT:cert/<64 hex digits>"
        )
    return match.group(1)


def live_report(iot: Any, policy_name: str, *, principal: str, client_id: str) -> ReachReport:
    """The policy's reach, each HIGH witness confirmed or not by TestAuthorization."""
    prefix = arn_prefix_of(principal)
    policy = iot.get_policy(policyName=policy_name)
    document = policy["policyDocument"]
    if isinstance(document, str):
        document = parse_json(document, policy_name)
    report = analyze_policy(
        document, source=policy.get("policyArn", policy_name), attacker=client_id
    )
    findings = tuple(
        _confirmed(iot, found, policy_name, principal, client_id, prefix)
        if found in report.lateral
        else found
        for found in report.findings
    )
    return replace(report, findings=findings)


def _confirmed(
    iot: Any, found: Reach, policy_name: str, principal: str, client_id: str, prefix: str
) -> Reach:
    action_type, kind = ACTION_TYPES[found.operation]
    answer = iot.test_authorization(
        principal=principal,
        clientId=found.client_id or client_id,
        policyNamesToAdd=[policy_name],
        authInfos=[{"actionType": action_type, "resources": [prefix + kind + found.witness]}],
    )
    decision = answer["authResults"][0].get("authDecision", "UNKNOWN")
    verdict = "confirmed" if decision == "ALLOWED" else "not confirmed"
    return replace(found, note=f"TestAuthorization: {decision} ({verdict})")
