"""The built wheel works on its own: a CDK app outside the repo imports and synthesizes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.paths import REPO_ROOT

OUTSIDE_APP = """\
import aws_cdk as cdk
from iot_remote_access.constructs import DevicePolicy
from iot_remote_access.stacks import IotRemoteAccessStack

app = cdk.App(outdir="cdk.out")
IotRemoteAccessStack(app, "FromWheel")
own = cdk.Stack(app, "OwnStack")
DevicePolicy(own, "Devices").enable_tunneling()
app.synth()
"""


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_wheel_installs_into_a_new_venv_and_synthesizes_outside_the_repo(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        dist,
        REPO_ROOT,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("iot_remote_access-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "iot_remote_access/py.typed" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    ]
    # A library declares compatible ranges; exact pins make users' installs impossible.
    assert requires and not [r for r in requires if "==" in r or "<" not in r], requires
    lambda_folders = {
        p.parent.name for p in (REPO_ROOT / "iot_remote_access/lambdas").glob("*/handler.py")
    }
    for folder in lambda_folders:  # LibraryFunction stages these from the installed package
        assert f"iot_remote_access/lambdas/{folder}/handler.py" in names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--constraint",  # the project's CI is reproducible: the locked versions
        REPO_ROOT / "constraints.txt",
        wheel,
        cwd=tmp_path,
    )

    app_dir = tmp_path / "someone-elses-app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(OUTSIDE_APP)
    # Node comes from PATH (this repo's venv has Node 24); Python packages only from the new venv.
    env = {**os.environ, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}
    _run(venv / "bin" / "python", "app.py", cwd=app_dir, env=env)
    for stack in ("FromWheel", "OwnStack"):
        template = json.loads((app_dir / "cdk.out" / f"{stack}.template.json").read_text())
        assert [r["Type"] for r in template["Resources"].values()].count("AWS::IoT::Policy") == 1
    console = _run(venv / "bin" / "iot-remote-access", "lint", "cdk.out", cwd=app_dir, env=env)
    assert "no findings" in console
