"""Which findings fail a run: not acknowledged in the app, not in the baseline, severe enough.

Every finding is still reported (with its status), so acknowledged and
baselined findings stay visible in JSON and SARIF; only ``open`` ones at or
above the ``--fail-on`` severity make ``lint`` exit 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from iot_remote_access.core.policy_check import Finding, Severity
from iot_remote_access.guard.acknowledgements import Acknowledgement, first_covering
from iot_remote_access.guard.baseline import BaselineEntry, fingerprint, location_key
from iot_remote_access.guard.scan import PolicyResult


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    BASELINED = "baselined"


class FailOn(StrEnum):
    """The least severe open finding that fails the run."""

    MEDIUM = "medium"
    HIGH = "high"
    NONE = "none"

    def fails(self, severity: Severity) -> bool:
        if self is FailOn.NONE:
            return False
        return self is FailOn.MEDIUM or severity is Severity.HIGH


@dataclass(frozen=True)
class Reviewed:
    result: PolicyResult
    finding: Finding
    fingerprint: str
    status: Status
    acknowledgement: Acknowledgement | None = None

    def baseline_entry(self) -> BaselineEntry:
        return BaselineEntry(
            self.fingerprint,
            self.finding.rule_id,
            location_key(self.result.source),
            self.finding.action,
            self.finding.resource,
        )


def review(
    results: Iterable[PolicyResult], baseline: frozenset[str] | None = None
) -> list[Reviewed]:
    """Every finding with its fingerprint and status (an acknowledgement wins over the baseline)."""
    reviewed = []
    for result in results:
        for finding in result.findings:
            print_ = fingerprint(result.source, finding)
            ack = first_covering(result.source.acknowledgements, finding)
            if ack is not None:
                status = Status.ACKNOWLEDGED
            elif baseline is not None and print_ in baseline:
                status = Status.BASELINED
            else:
                status = Status.OPEN
            reviewed.append(Reviewed(result, finding, print_, status, ack))
    return reviewed


def failing(reviewed: Iterable[Reviewed], fail_on: FailOn = FailOn.MEDIUM) -> list[Reviewed]:
    return [r for r in reviewed if r.status is Status.OPEN and fail_on.fails(r.finding.severity)]
