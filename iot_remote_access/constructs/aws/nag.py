"""cdk-nag acknowledgements that name the finding exactly as cdk-nag will report it.

cdk-nag 3 matches an acknowledgement by its exact id, and a finding's id quotes
the resource as synthesized: ``arn:<AWS::Partition>:iot:<AWS::Region>:...`` in a
stack without ``env``, ``arn:<AWS::Partition>:iot:eu-central-1:123456789012:...``
in one with an explicit account and region, ``<Table1234.Arn>/index/*`` for a
resource's attribute. Writing those ids by hand breaks as soon as a user pins
``env`` (the placeholders no longer match). So every acknowledgement here is
derived from the very ARN (or token) that the grant uses, resolved the way
cdk-nag's ``flattenCfnReference`` does, and must carry a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

PACK = "AwsSolutions"


def flatten(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag's ``flattenCfnReference`` writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        # Fn::Sub's ${...} becomes <...> in cdk-nag's finding ids.
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return str(delimiter).join(flatten(item) for item in items)
        if "Fn::Sub" in value:
            return flatten(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten(value['Ref'])}>"
    # cdk-nag's fallback is JSON.stringify: compact separators, like JavaScript's.
    return json.dumps(value, separators=(",", ":"))


def finding_resource(scope: IConstruct, value: str) -> str:
    """How cdk-nag names ``value`` (an ARN, possibly holding tokens) in ``scope``'s stack."""
    return flatten(cdk.Stack.of(scope).resolve(value))


def acknowledge(scope: IConstruct, rule: str, reason: str, finding: str | None = None) -> None:
    """Acknowledge AwsSolutions-``rule`` (one ``finding`` of it, if given) on ``scope``.

    Applies to ``scope`` and everything below it, as cdk-nag looks up the tree.
    """
    if not reason.strip():
        raise ValueError(f"reason: empty for {rule}; allowed: why the finding is acceptable")
    rule_id = f"{PACK}-{rule}" if finding is None else f"{PACK}-{rule}[{finding}]"
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason)
    )


def acknowledge_wildcard_resources(scope: IConstruct, reason: str, arns: Iterable[str]) -> None:
    """AwsSolutions-IAM5 for each of ``arns`` exactly as granted (tokens and env followed)."""
    for arn in arns:
        shown = finding_resource(scope, arn)
        if "*" not in shown:
            # cdk-nag reports only resources with a wildcard; acknowledging any other
            # would hide nothing now and mask a future finding of a different kind.
            raise ValueError(f"arns: {shown!r} has no wildcard; allowed: wildcard ARNs only")
        acknowledge(scope, "IAM5", reason, f"Resource::{shown}")


def acknowledge_wildcard_actions(scope: IConstruct, reason: str, actions: Iterable[str]) -> None:
    """AwsSolutions-IAM5 for wildcard actions (``kms:GenerateDataKey*``) granted by CDK."""
    for action in actions:
        if "*" not in action:
            raise ValueError(f"actions: {action!r} has no wildcard; allowed: wildcard actions")
        acknowledge(scope, "IAM5", reason, f"Action::{action}")


def acknowledge_managed_policy(scope: IConstruct, policy: iam.IManagedPolicy, reason: str) -> None:
    """AwsSolutions-IAM4 for an AWS managed policy, named by its ARN as synthesized."""
    acknowledge(
        scope, "IAM4", reason, f"Policy::{finding_resource(scope, policy.managed_policy_arn)}"
    )
