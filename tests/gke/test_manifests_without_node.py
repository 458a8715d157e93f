"""`gcp manifests` on a machine without Node.js: exit 2, one line saying what to install.

cdk8s runs its charts in Node.js (jsii), so this command keeps needing it; the
check comes before jsii is loaded, so there is no traceback and nothing is written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.no_node import CONSOLE_SCRIPT, env_without_node
from tests.support.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gcp-settings.yaml"


@pytest.mark.parametrize(
    ("jsii_node", "says"),
    [
        (None, "no 'node' is on PATH"),
        ("/nonexistent/node", "$JSII_NODE ('/nonexistent/node') is not executable"),
    ],
)
def test_manifests_without_node_exit_2_with_one_line(
    tmp_path: Path, jsii_node: str | None, says: str
) -> None:
    env = env_without_node(os.environ, tmp_path / "bin")
    if jsii_node is not None:
        env["JSII_NODE"] = jsii_node
    out = tmp_path / "out"
    result = subprocess.run(  # our own console script
        [str(CONSOLE_SCRIPT), "gcp", "manifests", "--settings", str(EXAMPLE), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: gcp manifests needs Node.js (cdk8s renders the charts in it)")
    assert says in line
    assert "install Node.js 22 or newer (https://nodejs.org" in line
    assert "azure plan|deploy and gcp plan|deploy do not need Node.js" in line
    assert not out.exists()
