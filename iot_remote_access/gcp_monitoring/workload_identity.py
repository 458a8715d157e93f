"""Workload Identity for Teleport: the Kubernetes service account may act as the Google one.

GKE gives a pod the Google service account named in its Kubernetes service account's
``iam.gke.io/gcp-service-account`` annotation (rendered by ``gcp manifests``) only
when the Google service account's own IAM policy lets that Kubernetes service account
(``serviceAccount:PROJECT.svc.id.goog[NAMESPACE/NAME]``) use it
(``roles/iam.workloadIdentityUser``). ``gcp deploy`` adds exactly that member and
leaves every other binding of the policy as it is; the write carries the etag it
read, so a concurrent change makes it fail instead of being overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.iam.v1 import iam_policy_pb2, policy_pb2

ROLE = "roles/iam.workloadIdentityUser"


@dataclass(frozen=True)
class WorkloadIdentityBinding:
    """One Google service account that one Kubernetes service account may use."""

    service_account: str
    project: str
    namespace: str
    kubernetes_service_account: str

    @property
    def resource(self) -> str:
        return f"projects/-/serviceAccounts/{self.service_account}"

    @property
    def member(self) -> str:
        where = f"{self.namespace}/{self.kubernetes_service_account}"
        return f"serviceAccount:{self.project}.svc.id.goog[{where}]"

    def members_now(self, live: policy_pb2.Policy) -> list[str]:
        """The role's unconditional members in ``live`` (what the plan shows)."""
        return sorted(
            member
            for binding in live.bindings
            if binding.role == ROLE and not binding.HasField("condition")
            for member in binding.members
        )

    def request(self, live: policy_pb2.Policy) -> iam_policy_pb2.SetIamPolicyRequest | None:
        """``live`` with the member added, or None when it is there already."""
        if self.member in self.members_now(live):
            return None
        policy = policy_pb2.Policy()
        policy.CopyFrom(live)
        unconditional = [
            b for b in policy.bindings if b.role == ROLE and not b.HasField("condition")
        ]
        binding = unconditional[0] if unconditional else policy.bindings.add(role=ROLE)
        binding.members.append(self.member)
        return iam_policy_pb2.SetIamPolicyRequest(resource=self.resource, policy=policy)
