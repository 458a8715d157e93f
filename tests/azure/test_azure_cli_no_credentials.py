"""`azure plan|deploy` without credentials: the project's one line only (issue 14, item 11).

Run as a user runs it: the installed console script in a subprocess, with no
Azure credentials in the environment and a HOME without an Azure CLI login.
In-process, pytest captures logging, which is how azure-identity's ~16 lines
of diagnostics went unnoticed. Managed identity is pointed at a closed loopback
port (AZURE_POD_IDENTITY_AUTHORITY_HOST) so that nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.hostile_cli import run_script
from tests.support.paths import REPO_ROOT
from tests.support.processes import free_port

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def _env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AZURE_", "MSI_", "IDENTITY_", "IMDS_"))
    }
    env["HOME"] = str(home)
    env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = f"http://127.0.0.1:{free_port()}"
    return env


@pytest.mark.parametrize("command", ["plan", "deploy"])
def test_no_credentials_prints_only_the_projects_line(tmp_path: Path, command: str) -> None:
    for name in ("azure-settings.yaml", "azure-fleet-ca.pem"):
        shutil.copy(REPO_ROOT / "examples" / name, tmp_path)
    result, _ = run_script(
        "azure",
        command,
        "--settings",
        "azure-settings.yaml",
        "--subscription",
        SUBSCRIPTION,
        "--resource-group",
        "rg",
        cwd=tmp_path,
        env=_env(tmp_path),
        timeout=180,
    )
    assert result.code == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: no usable Azure credentials: sign in with 'az login' (or set AZURE_TENANT_ID, "
        "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or run with a managed identity), then run again"
    ]
    assert result.stdout == ""
