"""Run the checker over policy documents from any source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iot_remote_access.core.policy_check import Finding, PolicyDocumentError, check_policy
from iot_remote_access.guard.reach_grading import grade
from iot_remote_access.guard.sources import GuardInputError, PolicyDocumentSource


@dataclass(frozen=True)
class PolicyResult:
    source: PolicyDocumentSource
    findings: tuple[Finding, ...]


def scan_documents(sources: Iterable[PolicyDocumentSource]) -> list[PolicyResult]:
    """Check every document; a document that is not a policy stops the scan.

    Raises GuardInputError naming the file and the resource: a guard that
    skipped what it cannot read would pass what it never checked.
    """
    results = []
    for source in sources:
        try:
            findings = grade(source.document, check_policy(source.document))
        except PolicyDocumentError as error:
            raise GuardInputError(source.file, f"{source.name}: {error}") from None
        results.append(PolicyResult(source, findings))
    return results
