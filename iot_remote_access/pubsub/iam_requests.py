"""The IAM requests a deploy sends: add the desired members, keep everything else.

Built as plain request objects so that they can be checked without a server (the
Pub/Sub emulator has no IAM). A policy is read, the missing members are added to
their role's binding and the policy is written back with the etag it was read
with, so a concurrent change makes the write fail instead of being overwritten.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from google.iam.v1 import iam_policy_pb2, policy_pb2

from iot_remote_access.constructs.gcp.iam_grant import IamGrant


def grants_by_resource(grants: Iterable[IamGrant]) -> dict[str, dict[str, set[str]]]:
    """resource -> role -> members."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for grant in grants:
        out[grant.resource][grant.role].add(grant.member)
    return {resource: dict(roles) for resource, roles in out.items()}


def missing_members(live: policy_pb2.Policy, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
    """role -> members that ``wanted`` has and ``live`` lacks (unconditional bindings only)."""
    have: dict[str, set[str]] = defaultdict(set)
    for binding in live.bindings:
        if not binding.HasField("condition"):
            have[binding.role].update(binding.members)
    missing = {role: members - have[role] for role, members in wanted.items()}
    return {role: members for role, members in missing.items() if members}


def set_policy_request(
    resource: str, live: policy_pb2.Policy, wanted: dict[str, set[str]]
) -> iam_policy_pb2.SetIamPolicyRequest | None:
    """The request adding what is missing to ``live``, or None when nothing is."""
    missing = missing_members(live, wanted)
    if not missing:
        return None
    policy = policy_pb2.Policy()
    policy.CopyFrom(live)
    for role, members in sorted(missing.items()):
        binding = next(
            (b for b in policy.bindings if b.role == role and not b.HasField("condition")), None
        )
        if binding is None:
            binding = policy.bindings.add(role=role)
        binding.members.extend(sorted(members))
    return iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
