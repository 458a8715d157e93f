"""Synthesis leaves no temporary folders behind (it left five ``/tmp/ira-*`` per synth)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from iot_remote_access.constructs.aws.library_function import stage_handler_code
from tests.support.paths import REPO_ROOT


def test_reference_app_synth_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """The reference app as `cdk synth` runs it (`python app.py`), with its own TMPDIR."""
    temp, out = tmp_path / "tmp", tmp_path / "cdk.out"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(temp), "CDK_OUTDIR": str(out)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "IotRemoteAccess.template.json").is_file()
    staged = [p for p in out.glob("asset.*") if (p / "iot_remote_access" / "core").is_dir()]
    assert len(staged) >= 5  # every handler's code made it into the cloud assembly
    leftovers = [p.name for p in temp.iterdir() if p.name.startswith("ira-")]
    assert leftovers == []


def test_a_handler_is_staged_once_per_process() -> None:
    first = stage_handler_code("tunnel_metrics")
    assert stage_handler_code("tunnel_metrics") == first
    assert (first / "iot_remote_access" / "lambdas" / "tunnel_metrics" / "handler.py").is_file()
    other = stage_handler_code("cert_signer", ("certs",))
    assert other != first and other.parent == first.parent
    assert first.parent.name.startswith("ira-assets-")
