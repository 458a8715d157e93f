"""The guard's wildcard rules graded by the reachability analysis (issue 19).

Rule ids never change and no finding disappears (acknowledgements and baselines keep
working); only IRA002's severity follows what the wildcard lets a device reach.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from iot_remote_access.core.policy_check import Severity, check_policy
from iot_remote_access.guard.reach_grading import grade
from tests.support.cli_runner import run_cli
from tests.support.reach_strategies import EXAMPLES, policies

ARN = "arn:aws:iot:eu-west-1:123456789012:"
THING = "${iot:Connection.Thing.ThingName}"


def _lint(tmp_path: Path, resource: str, action: str = "iot:Publish") -> tuple[int, dict[str, Any]]:
    policy = {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}
    (tmp_path / "p.json").write_text(json.dumps(policy))
    result = run_cli("lint", "-f", "json", str(tmp_path / "p.json"))
    (finding,) = json.loads(result.stdout)["findings"]
    return result.code, finding


def test_a_wildcard_under_the_devices_own_name_is_low_and_passes(tmp_path: Path) -> None:
    code, finding = _lint(tmp_path, f"{ARN}topic/dt/{THING}/*")
    assert (code, finding["ruleId"], finding["severity"]) == (0, "IRA002", "low")
    assert "stays inside the device's own topics" in finding["message"]


def test_a_wildcard_into_another_devices_topics_is_high_with_the_witness(tmp_path: Path) -> None:
    code, finding = _lint(tmp_path, f"{ARN}topicfilter/cmd/*", "iot:Subscribe")
    assert (code, finding["severity"]) == (1, "high")
    assert "Witness: can subscribe 'cmd/#' matching 'cmd/device-b/" in finding["message"]


def test_a_wildcard_outside_any_device_namespace_stays_high(tmp_path: Path) -> None:
    code, finding = _lint(tmp_path, f"{ARN}topic/debug/*")
    assert (code, finding["severity"]) == (1, "high")
    assert "outside the device's own namespace, e.g. 'debug/'" in finding["message"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_grading_keeps_every_finding_and_rule_id(document: dict[str, Any]) -> None:
    found = check_policy(document)
    graded = grade(document, found)
    assert [(f.rule_id, f.statement, f.action, f.resource) for f in graded] == [
        (f.rule_id, f.statement, f.action, f.resource) for f in found
    ]
    for before, after in zip(found, graded, strict=True):
        if after.severity is not before.severity:
            assert (after.rule_id, after.severity) == ("IRA002", Severity.LOW)
