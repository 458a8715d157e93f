"""The guard's wildcard rules, graded by the reachability analysis.

A wildcard is a problem because of what it lets a device reach. So where a rule is
about reach (IRA002 topic wildcards, IRA003/IRA004 client ids), the finding keeps its
rule id - acknowledgements and baselines keep working - but its severity and message
follow the analysis (``core.reach_aws``):

- IRA002 whose wildcard stays under the device's own name (a
  ``dt/${iot:Connection.Thing.ThingName}/*`` publish, say) and reaches no other device: LOW;
- IRA002 that reaches outside the device's own namespace (``debug/*``): stays HIGH,
  with an example topic;
- IRA002 that does reach: stays HIGH, with the witness in the message;
- IRA003/IRA004 where a device can connect as another: the witness is added.

The analysis runs only for documents that have such a finding, once per document.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from iot_remote_access.core.policy_check import Finding, Severity
from iot_remote_access.core.reach import Operation, ReachReport
from iot_remote_access.core.reach_automata import ReachLimitError
from iot_remote_access.core.reach_aws import analyze_policy, outside_own_namespace
from iot_remote_access.guard.reach_scan import plain_document

GRADED_RULES = frozenset({"IRA002", "IRA003", "IRA004"})
_OPERATIONS = {
    "iot:publish": (Operation.PUBLISH,),
    "iot:retainpublish": (Operation.PUBLISH,),
    "iot:receive": (Operation.RECEIVE,),
    "iot:subscribe": (Operation.SUBSCRIBE,),
}
_TOPIC_OPERATIONS = (Operation.PUBLISH, Operation.SUBSCRIBE, Operation.RECEIVE)


def grade(document: Any, findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """``findings`` with reach-based severity and witnesses (unchanged when none applies)."""
    if not any(f.rule_id in GRADED_RULES for f in findings):
        return tuple(findings)
    plain = plain_document(document)
    try:
        report = _analysis(json.dumps(plain, sort_keys=True))
        return tuple(_graded(f, report, plain) for f in findings)
    except ReachLimitError:
        return tuple(findings)  # too large to analyse: keep the pattern rules' verdict


@lru_cache(maxsize=4096)
def _analysis(document: str) -> ReachReport:
    """One analysis per distinct document: a fleet's policies repeat (cached by content)."""
    return analyze_policy(json.loads(document))


def _graded(finding: Finding, report: ReachReport, document: dict[str, Any]) -> Finding:
    reached = {f.operation: f for f in report.lateral}
    if finding.rule_id in ("IRA003", "IRA004"):
        impostor = reached.get(Operation.CONNECT)
        if impostor is None:
            return finding
        return replace(finding, message=f"{finding.message} Witness: {impostor.describe()}.")
    if finding.rule_id != "IRA002":
        return finding
    operations = _OPERATIONS.get(finding.action.lower(), _TOPIC_OPERATIONS)
    witnesses = [reached[op] for op in operations if op in reached]
    if witnesses:
        return replace(finding, message=f"{finding.message} Witness: {witnesses[0].describe()}.")
    outside = outside_own_namespace(document, finding.resource)
    if outside is not None:
        return replace(
            finding,
            message=f"{finding.message} It reaches topics outside the device's own namespace, "
            f"e.g. {outside!r}.",
        )
    return replace(
        finding,
        severity=Severity.LOW,
        message=f"{finding.message} It stays inside the device's own topics: "
        "the reachability analysis finds no other device's topic it reaches.",
    )
