"""add_to_key_policy: a key-policy statement, or a warning when the key's policy is not ours.

A key the user imports (``kms.Key.from_key_arn``) keeps its policy where it is
managed: CDK silently drops statements added to it. Without them the services
this library wires (CloudWatch Logs, CloudTrail, SNS publishers) fail at run
time, with nothing at synthesis. So a dropped statement becomes a synthesis
warning that quotes the statement the user must add to the key policy.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import IConstruct

WARNING_ID = "iot-remote-access:ImportedKeyPolicy"


def add_to_key_policy(key: kms.IKey, scope: IConstruct, statement: iam.PolicyStatement) -> bool:
    """Add ``statement`` to ``key``'s policy; warn on ``scope`` if the key is imported.

    Returns whether the statement was added.
    """
    if key.add_to_resource_policy(statement).statement_added:
        return True
    stack = cdk.Stack.of(scope)
    shown = json.dumps(stack.resolve(statement.to_statement_json()), separators=(",", ":"))
    cdk.Annotations.of(scope).add_warning_v2(
        f"{WARNING_ID}:{statement.sid or 'statement'}",
        f"key {key.node.path} is imported, so its key policy cannot be changed here; "
        f"add this grant to that key's policy yourself, or the service fails at run time: "
        f"{shown}",
    )
    return False
