"""The composite GitHub Action (action.yml): its `run:` steps executed as a script.

The runner is a stand-in (tests/support/composite_action.py); so are the two
`uses:` steps: setup-python (the test's fresh virtualenv is on PATH instead) and
upload-sarif (a stand-in that checks the SARIF file it is handed). The install
step really runs `pip install <this checkout>` into a fresh virtualenv, which
sees the test environment's packages so that only this package is built.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.composite_action import (
    ActionRun,
    CompositeActionStandInRunner,
    runner_environment,
)
from tests.support.paths import REPO_ROOT
from tests.support.sarif_schema import sarif_errors

ARN = "arn:aws:iot:eu-west-1:123456789012"
WILDCARD = {"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
COMPLIANT = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{ARN}:client/${{iot:Connection.Thing.ThingName}}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        }
    ]
}
INSTALL = "Install iot-remote-access"


class UploadSarifStandIn:
    """Stands in for github/codeql-action/upload-sarif: records what it would upload."""

    def __init__(self) -> None:
        self.uploads: list[dict[str, Any]] = []

    def __call__(self, with_: Mapping[str, str]) -> None:
        path = Path(with_["sarif_file"])
        assert path.is_file(), f"upload-sarif was given {path}, which does not exist"
        self.uploads.append({"path": path, "sarif": json.loads(path.read_text()), **with_})


def _setup_python_stand_in(with_: Mapping[str, str]) -> None:
    assert with_["python-version"]  # the fresh virtualenv's python is on PATH instead


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv without this package, seeing the test environment's dependencies."""
    venv = tmp_path_factory.mktemp("action") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _workspace(root: Path) -> Path:
    workspace = root / "github_workspace"
    (workspace / "policies").mkdir(parents=True, exist_ok=True)
    (workspace / "policies" / "legacy-policy.json").write_text(json.dumps(WILDCARD))
    (workspace / "policies" / "device-policy.json").write_text(json.dumps(COMPLIANT))
    return workspace


def _run(
    venv: Path, root: Path, inputs: Mapping[str, str], *, install: bool
) -> tuple[ActionRun, UploadSarifStandIn, dict[str, str]]:
    environment = runner_environment(root, venv / "bin")
    upload = UploadSarifStandIn()
    runner = CompositeActionStandInRunner(
        action_file=REPO_ROOT / "action.yml",
        inputs=inputs,
        environment=environment,
        workspace=_workspace(root),
        stand_ins={
            "actions/setup-python": _setup_python_stand_in,
            "github/codeql-action/upload-sarif": upload,
        },
        skip=frozenset() if install else frozenset({INSTALL}),
    )
    return runner.run(), upload, environment


POLICIES = "policies/legacy-policy.json policies/device-policy.json"


def test_action_installs_lints_uploads_then_fails_on_findings(
    fresh_venv: Path, tmp_path: Path
) -> None:
    run, upload, environment = _run(fresh_venv, tmp_path, {"paths": POLICIES}, install=True)
    names = [step.name for step in run.steps]
    assert names == [
        "actions/setup-python@v6",
        INSTALL,
        "Run the guard",
        "Upload SARIF to code scanning",
        "Fail on open findings",
    ]
    assert (fresh_venv / "bin" / "iot-remote-access").is_file()  # installed by the step
    lint = run.steps[2]
    assert lint.code == 0, lint.stderr
    assert "2 findings in 2 IoT policies" in lint.stdout  # the table in the job log
    assert run.outputs["lint"]["exit-code"] == "1"
    expected = Path(environment["RUNNER_TEMP"]) / "iot-remote-access.sarif"
    assert run.outputs["lint"]["sarif-file"] == str(expected)
    (uploaded,) = upload.uploads
    assert uploaded["path"] == expected and uploaded["category"] == "iot-remote-access"
    assert sarif_errors(uploaded["sarif"]) == []
    assert {r["ruleId"] for r in uploaded["sarif"]["runs"][0]["results"]} == {"IRA001", "IRA008"}
    assert run.failed_step is run.steps[-1] and run.steps[-1].code == 1


def test_action_with_a_baseline_passes_and_uploads_unchanged_findings(
    fresh_venv: Path, tmp_path: Path
) -> None:
    _action_needs_install(fresh_venv, tmp_path)
    workspace = tmp_path / "second" / "github_workspace"
    _workspace(tmp_path / "second")
    subprocess.run(
        [
            str(fresh_venv / "bin" / "iot-remote-access"),
            "lint",
            "--write-baseline",
            "iot-guard-baseline.json",
            *POLICIES.split(),
        ],
        cwd=workspace,
        check=True,
        capture_output=True,
        timeout=120,
    )
    run, upload, _ = _run(
        fresh_venv,
        tmp_path / "second",
        {"paths": POLICIES, "baseline": "iot-guard-baseline.json", "format": "json"},
        install=False,
    )
    assert run.failed_step is None, run.steps
    assert run.outputs["lint"]["exit-code"] == "0"
    report = json.loads(run.steps[1].stdout)
    assert {f["status"] for f in report["findings"]} == {"baselined"}
    results = upload.uploads[0]["sarif"]["runs"][0]["results"]
    assert {r["baselineState"] for r in results} == {"unchanged"}


def test_action_stops_before_the_upload_on_unreadable_input(
    fresh_venv: Path, tmp_path: Path
) -> None:
    _action_needs_install(fresh_venv, tmp_path)
    run, upload, _ = _run(fresh_venv, tmp_path, {"paths": "no-such.json"}, install=False)
    assert upload.uploads == []
    assert run.failed_step is not None and run.failed_step.name == "Run the guard"
    assert run.failed_step.code == 2
    assert run.failed_step.stderr.strip() == "error: no-such.json: no such file or directory"


def _action_needs_install(venv: Path, root: Path) -> None:
    if not (venv / "bin" / "iot-remote-access").is_file():
        run, _, _ = _run(venv, root / "install", {"paths": POLICIES}, install=True)
        assert run.steps[1].code == 0, run.steps[1].stderr
