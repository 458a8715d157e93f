"""Read the default version of every IoT policy in a live AWS account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iot_remote_access.guard.sources import PolicyDocumentSource


@dataclass(frozen=True)
class PolicySummary:
    name: str
    arn: str


def list_policies(iot_client: Any) -> list[PolicySummary]:
    """Every IoT policy of the account and region, following ``ListPolicies`` pages."""
    return [
        PolicySummary(summary["policyName"], summary.get("policyArn", summary["policyName"]))
        for page in iot_client.get_paginator("list_policies").paginate()
        for summary in page.get("policies", [])
    ]


def fetch_policy(iot_client: Any, summary: PolicySummary) -> PolicyDocumentSource:
    """The policy's default version: ``GetPolicy`` returns its document, and
    non-default versions are never in effect, so one call per policy suffices."""
    policy = iot_client.get_policy(policyName=summary.name)
    return PolicyDocumentSource(
        file=summary.arn, name=summary.name, document=policy["policyDocument"]
    )
