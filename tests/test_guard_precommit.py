"""The pre-commit hook, run by the real `pre-commit` tool against a temporary repository.

`pre-commit try-repo` clones this checkout (with uncommitted changes), builds the
hook's virtualenv and installs this package into it, as a user's first commit
would; that install is most of the test's time. pre-commit-uv (dev extra) makes
pre-commit build it with uv from uv's cache: 23 s here on a loaded machine, where
pip took 174 s.
try-repo uses a store of its own each time, so one run checks both policies: the
compliant one must be read and pass, the wildcard one must fail the hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.paths import REPO_ROOT

THING = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:eu-west-1:123456789012"
COMPLIANT = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{ARN}:client/{THING}",
            "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
        }
    ],
}
WILDCARD = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}
PRE_COMMIT = str(Path(sys.executable).parent / "pre-commit")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def _user_repository(root: Path) -> Path:
    repo = root / "user-repo"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies" / "device-policy.json").write_text(json.dumps(COMPLIANT, indent=2))
    (repo / "policies" / "legacy-policy.json").write_text(json.dumps(WILDCARD, indent=2))
    # Not matched by the hook's files pattern, so never read as a policy.
    (repo / "package.json").write_text('{"name": "app"}')
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    return repo


def test_hook_definition_is_what_pre_commit_expects() -> None:
    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "iot-remote-access-lint"
    assert hook["language"] == "python"
    assert hook["entry"].split()[:2] == ["iot-remote-access", "lint"]


def test_pre_commit_try_repo_passes_the_compliant_policy_and_fails_the_wildcard(
    tmp_path: Path,
) -> None:
    repo = _user_repository(tmp_path)
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PRE_COMMIT_COLOR": "never",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    started = time.monotonic()
    result = subprocess.run(
        [PRE_COMMIT, "try-repo", str(REPO_ROOT), "iot-remote-access-lint", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(f"pre-commit try-repo took {elapsed:.1f} s")  # shown with -rA / -s
    assert result.returncode == 1, output[-3000:]
    assert "IoT policy guard (iot-remote-access lint)" in output
    assert "Failed" in output and "- exit code: 1" in output
    # Both policies were read (package.json was not); only the wildcard one has findings.
    assert "2 findings in 2 IoT policies" in output, output[-3000:]
    finding_rows = [line for line in output.splitlines() if "IRA0" in line]
    assert finding_rows and all("legacy-policy" in row for row in finding_rows)
    assert {"IRA001", "IRA008"} <= {word for row in finding_rows for word in row.split()}
    assert "device-policy (" not in output
