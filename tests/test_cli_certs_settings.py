"""`certs plan` plans with the deployment's settings (cdk.json or --settings), via the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CLI = str(Path(sys.executable).parent / "iot-remote-access")
NOW = datetime(2026, 3, 1, 9, 20, tzinfo=UTC)
DEPLOYED = {"certificates": {"leadTimeDays": 45, "hourlyRotationBudget": 2}}


def _inventory(folder: Path) -> Path:
    """Ten certificates expire in 20 days, ten in 60: the lead time decides who is due."""
    rows = [
        {
            "thing": f"dev-{days}-{index}",
            "certificateId": f"c{days}{index}",
            "notAfter": (NOW + timedelta(days=days)).isoformat(),
        }
        for days in (20, 60)
        for index in range(10)
    ]
    path = folder / "inventory.json"
    path.write_text(json.dumps(rows))
    return path


def _cdk_json(folder: Path, settings: object) -> None:
    context: dict[str, Any] = {"@aws-cdk/core:stackRelativeExports": True}
    if settings is not None:
        context["iot-remote-access"] = settings
    (folder / "cdk.json").write_text(json.dumps({"app": "python app.py", "context": context}))


def _plan(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "certs", "plan", "--inventory", "inventory.json", "--now", NOW.isoformat(), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_uses_the_cdk_json_context_the_app_deploys(tmp_path: Path) -> None:
    _inventory(tmp_path)
    _cdk_json(tmp_path, DEPLOYED)
    result = _plan(tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    plan = json.loads(result.stdout)
    assert plan["settings"]["source"] == "cdk.json context.iot-remote-access"
    assert (plan["settings"]["leadDays"], plan["settings"]["hourlyBudget"]) == (45, 2)
    assert plan["pending"] == 10  # only the 20-day certificates are inside 45 days
    assert max(plan["perHour"].values()) == 2
    table = _plan(tmp_path)
    assert "settings from cdk.json context.iot-remote-access" in table.stdout


def test_settings_file_wins_over_cdk_json(tmp_path: Path) -> None:
    _inventory(tmp_path)
    _cdk_json(tmp_path, DEPLOYED)
    (tmp_path / "fleet.yaml").write_text(
        "iot-remote-access:\n  certificates:\n    leadTimeDays: 90\n    hourlyRotationBudget: 7\n"
    )
    plan = json.loads(_plan(tmp_path, "--settings", "fleet.yaml", "--format", "json").stdout)
    assert plan["settings"]["source"] == "fleet.yaml"
    assert (plan["pending"], max(plan["perHour"].values())) == (20, 7)


def test_a_flag_replaces_one_value_and_says_so(tmp_path: Path) -> None:
    _inventory(tmp_path)
    _cdk_json(tmp_path, DEPLOYED)
    result = _plan(tmp_path, "--hourly-budget", "5", "--format", "json")
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "note: --hourly-budget 5 replaces hourlyRotationBudget 2 of cdk.json context.iot-remote-access"
    ]
    plan = json.loads(result.stdout)
    assert (plan["settings"]["leadDays"], plan["settings"]["hourlyBudget"]) == (45, 5)
    assert plan["settings"]["overridden"] == ["--hourly-budget"]
    assert max(plan["perHour"].values()) == 5


def test_without_settings_the_plan_says_it_uses_the_defaults(tmp_path: Path) -> None:
    _inventory(tmp_path)
    plan = json.loads(_plan(tmp_path, "--format", "json").stdout)
    assert plan["settings"]["source"].startswith("the library's defaults (no cdk.json here")
    assert (plan["settings"]["leadDays"], plan["pending"]) == (90, 20)
    _cdk_json(tmp_path, None)  # another app's cdk.json
    other = json.loads(_plan(tmp_path, "--format", "json").stdout)
    assert other["settings"]["source"] == (
        "the library's defaults (cdk.json has no context.iot-remote-access)"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"telemetryTopic": "dt/{thing}/telemetry"},
            "error: cdk.json: cdk.json context.iot-remote-access.certificates: not set, so the "
            "stack rotates no certificates; allowed: a certificates section (an empty object "
            "for the defaults)",
        ),
        (
            {"certificates": {"leadTimeDays": "45"}},
            "error: invalid settings: cdk.json context.iot-remote-access.certificates."
            "leadTimeDays: '45' is a string; allowed: an integer (a number, not a string)",
        ),
        (
            {"certificates": {"hourlyBudget": 5}},
            "error: invalid settings: cdk.json context.iot-remote-access.certificates."
            "hourlyBudget: unknown setting; allowed:",
        ),
    ],
)
def test_unusable_settings_are_one_line_exit_2(
    tmp_path: Path, settings: object, message: str
) -> None:
    _inventory(tmp_path)
    _cdk_json(tmp_path, settings)
    result = _plan(tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(message), line


def test_unreadable_cdk_json_and_settings_file_are_one_line(tmp_path: Path) -> None:
    _inventory(tmp_path)
    (tmp_path / "cdk.json").write_text("{not json")
    broken = _plan(tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.splitlines() == [
        f"error: {tmp_path / 'cdk.json'}: not valid JSON: Expecting property name enclosed "
        "in double quotes at line 1 column 2"
    ]
    missing = _plan(tmp_path, "--settings", "nope.yaml")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: --settings: nope.yaml: cannot read settings")
    (tmp_path / "cdk.json").unlink()
    bad_flag = _plan(tmp_path, "--lead-days", "20")
    assert bad_flag.stderr.splitlines() == [
        "error: --lead-days: 20 is not allowed; allowed: an integer 30..3652"
    ]
