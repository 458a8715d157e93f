"""SARIF for code scanning: schema-valid, security-severity and a docs page per rule."""

from __future__ import annotations

import json
import re
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.core.policy_check import RULES, Severity, check_policy
from iot_remote_access.guard import sarif as sarif_module
from iot_remote_access.guard.review import review
from iot_remote_access.guard.scan import scan_documents
from iot_remote_access.guard.sources import read_policies
from tests.support.cli_runner import run_cli
from tests.support.paths import REPO_ROOT
from tests.support.sarif_schema import sarif_errors

DOCS = "https://docs.example.org/iot-remote-access/"
STAR = {"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
JSON_BLOCK = re.compile(r"```json\n(.*?)\n```", re.S)


def _sarif_of(tmp_path: Path, docs: str | None) -> dict[str, Any]:
    (tmp_path / "star.json").write_text(json.dumps(STAR))
    results = scan_documents(read_policies([tmp_path / "star.json"]))
    return sarif_module.to_sarif(review(results), docs=docs)


def test_every_rule_has_security_severity_and_a_help_page(tmp_path: Path) -> None:
    document = _sarif_of(tmp_path, DOCS)
    assert sarif_errors(document) == []
    driver = document["runs"][0]["tool"]["driver"]
    assert driver["informationUri"] == DOCS
    assert [rule["id"] for rule in driver["rules"]] == sorted(RULES)
    nav = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text().replace("!!python/name:", ""))[
        "nav"
    ]
    rule_pages = next(entry["Guard rules"] for entry in nav if "Guard rules" in entry)
    for rule in driver["rules"]:
        severity = RULES[rule["id"]].severity
        score = float(rule["properties"]["security-severity"])
        assert (7.0 <= score < 9.0) if severity is Severity.HIGH else (4.0 <= score < 7.0)
        assert rule["helpUri"] == f"{DOCS}rules/{rule['id']}/"
        page = REPO_ROOT / "docs" / "rules" / f"{rule['id']}.md"
        assert page.read_text().startswith(f"# {rule['id']} {rule['name']}\n")
        assert {f"{rule['id']} {rule['name']}": f"rules/{rule['id']}.md"} in rule_pages


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_each_rule_page_example_is_reported_and_its_fix_is_clean(rule_id: str) -> None:
    """The page's first JSON block triggers its rule; the second (the fix) triggers nothing."""
    page = (REPO_ROOT / "docs" / "rules" / f"{rule_id}.md").read_text()
    reported, fixed = (json.loads(block) for block in JSON_BLOCK.findall(page)[:2])
    assert rule_id in {f.rule_id for f in check_policy({"Statement": [reported]})}
    assert check_policy({"Statement": [fixed]}) == []


def test_without_a_project_url_no_page_is_invented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyproject names no documentation URL yet: no informationUri or helpUri is made up."""
    document = _sarif_of(tmp_path, None)
    if sarif_module.docs_url() is None:
        driver = document["runs"][0]["tool"]["driver"]
        assert "informationUri" not in driver
        assert all("helpUri" not in rule for rule in driver["rules"])
    assert sarif_errors(document) == []


def test_docs_url_comes_from_the_package_project_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for the installed package's metadata, as setuptools writes Project-URL."""
    stand_in = Message()
    stand_in["Project-URL"] = "Source, https://git.example.org/iot-remote-access"
    stand_in["Project-URL"] = "Documentation, https://docs.example.org/iot-remote-access"
    monkeypatch.setattr(sarif_module.metadata, "metadata", lambda name: stand_in)
    sarif_module.docs_url.cache_clear()
    try:
        assert sarif_module.docs_url() == DOCS
    finally:
        sarif_module.docs_url.cache_clear()


def test_sarif_output_file_next_to_a_table(tmp_path: Path) -> None:
    (tmp_path / "star.json").write_text(json.dumps(STAR))
    target = tmp_path / "out.sarif"
    result = run_cli("lint", "--sarif-output", str(target), str(tmp_path / "star.json"))
    assert result.code == 1
    assert result.stdout.startswith("2 findings in 1 IoT policies")
    written = json.loads(target.read_text())
    assert sarif_errors(written) == []
    assert written == json.loads(run_cli("lint", "-f", "sarif", str(tmp_path / "star.json")).stdout)
    (finding, _) = written["runs"][0]["results"]
    assert set(finding["partialFingerprints"]) == {"iotRemoteAccess/v1"}
    nowhere = tmp_path / "missing" / "out.sarif"
    unwritable = run_cli("lint", "--sarif-output", str(nowhere), str(tmp_path / "star.json"))
    assert (unwritable.code, unwritable.stderr.splitlines()) == (
        2,
        [f"error: --sarif-output: cannot write {nowhere} (No such file or directory)"],
    )


def test_skip_unrecognized_passes_over_other_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "app"}')
    (tmp_path / "workflow.yml").write_text("on: push\njobs: {}\n")
    (tmp_path / "star-policy.json").write_text(json.dumps(STAR))
    files = [str(tmp_path / n) for n in ("package.json", "workflow.yml", "star-policy.json")]
    strict = run_cli("lint", *files)
    assert strict.code == 2 and "neither a CloudFormation template" in strict.stderr
    skipping = run_cli("lint", "--skip-unrecognized", "-f", "json", *files)
    assert skipping.code == 1
    assert json.loads(skipping.stdout)["policiesChecked"] == 1
    (tmp_path / "broken.json").write_text("{broken")
    broken = run_cli("lint", "--skip-unrecognized", str(tmp_path / "broken.json"))
    assert broken.code == 2  # unparseable input is never skipped
