"""Smoke checks of the built wheel at one end of the supported versions.

Run by ``scripts/dev test`` (step "install ends") in a fresh venv holding only the
wheel and the versions of that end, never the checkout's sources:

    .venv-ends/lowest/bin/python tests/support/install_smoke.py lowest

Checks, each against the installed wheel: the import (and that it is the wheel's
copy), ``cdk synth`` of the reference app through the real cdk CLI, one construct
in a user-style stack with cdk-nag, and the cdk-nag version behaviour (cdk-nag 3:
the AwsSolutions plugin is registered and the library's acknowledgements hold;
cdk-nag 2: synthesis warns and the user's own Aspect runs, no crash). A failure
exits 1 with one line naming the end and the check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Appended, not prepended: the installed wheel must win over the checkout's sources.
sys.path.append(str(ROOT))

import aws_cdk as cdk  # noqa: E402

import iot_remote_access  # noqa: E402

NAG_WARNING = "iot-remote-access:cdk-nag"


def _nag_major() -> int:
    return int(metadata.version("cdk-nag").split(".")[0])


def check_import(work: Path) -> str:
    source = Path(iot_remote_access.__file__).resolve()
    if ROOT / "iot_remote_access" in source.parents:
        raise AssertionError(f"imported the checkout's sources ({source}), not the wheel")
    from iot_remote_access.constructs.aws import LambdaOptions, SecureTunneling

    del LambdaOptions, SecureTunneling
    return ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("iot-remote-access", "aws-cdk-lib", "constructs", "cdk-nag")
    )


def check_cli_synth(work: Path) -> str:
    app_dir = work / "reference-app"
    app_dir.mkdir()
    for name in ("app.py", "cdk.json"):
        shutil.copy2(ROOT / name, app_dir / name)
    env = {**os.environ, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}
    cdk_cli = ROOT / "node_modules" / ".bin" / "cdk"
    result = subprocess.run(
        [str(cdk_cli), "synth", "--quiet", "--no-notices", "--app", f"{sys.executable} app.py"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"cdk synth failed: {(result.stderr or result.stdout)[-1500:]}")
    metadata_file = app_dir / "cdk.out" / "IotRemoteAccess.metadata.json"
    warnings = [
        str(entry["data"])
        for entries in json.loads(metadata_file.read_text()).values()
        for entry in entries
        if entry["type"] == "aws:cdk:warning" and NAG_WARNING in str(entry["data"])
    ]
    if _nag_major() >= 3 and warnings:
        raise AssertionError(f"cdk-nag 3 is installed but synthesis warns: {warnings[0]}")
    if _nag_major() < 3 and not any("cdk-nag 2." in w for w in warnings):
        raise AssertionError("cdk-nag 2 is installed but synthesis does not say so")
    return "reference app synthesized by the cdk CLI" + (" (cdk-nag 2 warning)" * bool(warnings))


def _user_stack_with_nag3(work: Path) -> str:
    from tests.support.aws_user_stacks import PINNED, platform_stack

    app = cdk.App(outdir=str(work / "user-nag3"))
    platform_stack("SecureTunneling", PINNED)(app)
    app.synth()  # raises on any unacknowledged AwsSolutions or guard finding
    report = json.loads((work / "user-nag3" / "validation-report.json").read_text())
    found = [v["ruleName"] for p in report["pluginReports"] for v in p["violations"]]
    if found:
        raise AssertionError(f"unacknowledged findings: {found}")
    return "SecureTunneling in a user stack: cdk-nag 3 AwsSolutions clean"


def _user_stack_with_nag2(work: Path) -> str:
    # cdk-nag 2 is an Aspect the team adds itself (docs/getting-started.md); it does not
    # read cdk.Validations acknowledgements, so it reports the library's wildcards.
    from aws_cdk.assertions import Annotations, Match
    from cdk_nag import AwsSolutionsChecks

    from tests.support.aws_user_stacks import CASES, PINNED, PlatformStack

    app = cdk.App(outdir=str(work / "user-nag2"))
    stack = PlatformStack(app, "Platform", env=PINNED, checks=False)
    CASES["SecureTunneling"](stack)
    cdk.Aspects.of(app).add(AwsSolutionsChecks())
    app.synth()
    errors = Annotations.from_stack(stack).find_error(
        "*", Match.string_like_regexp("AwsSolutions-")
    )
    if not errors:
        raise AssertionError("cdk-nag 2's Aspect reported nothing: did it run?")
    return f"SecureTunneling in a user stack with cdk-nag 2's Aspect: ran ({len(errors)} findings)"


def check_user_stack(work: Path) -> str:
    return (_user_stack_with_nag3 if _nag_major() >= 3 else _user_stack_with_nag2)(work)


def check_nag_version(work: Path) -> str:
    from iot_remote_access.guard.nag import aws_solutions_plugins

    stack = cdk.Stack(cdk.App(), "S")
    plugins = aws_solutions_plugins(stack)
    if (len(plugins) == 1) != (_nag_major() >= 3):
        raise AssertionError(f"cdk-nag {metadata.version('cdk-nag')}: plugins {plugins}")
    return f"cdk-nag {metadata.version('cdk-nag')}: {len(plugins)} AwsSolutions plugin(s)"


CHECKS: dict[str, Callable[[Path], str]] = {
    "import": check_import,
    "cdk CLI synth": check_cli_synth,
    "user stack with cdk-nag": check_user_stack,
    "cdk-nag version": check_nag_version,
}


def main(end: str) -> int:
    with tempfile.TemporaryDirectory(prefix=f"ira-ends-{end}-") as folder:
        for name, check in CHECKS.items():
            started = time.monotonic()
            try:
                said = check(Path(folder))
            except Exception as error:
                print(f"FAILED [{end} end] {name}: {type(error).__name__}: {error}"[:3000])
                return 1
            print(f"ok [{end} end] {name} ({time.monotonic() - started:.0f} s): {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "unnamed"))
