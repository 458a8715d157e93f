"""cdk.json's ``iot-remote-access:builtinCloudFormationValidation``: read before the App
exists, honoured by the reference app, default on, a bad value refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iot_remote_access.stacks.builtin_validation import (
    CONTEXT_KEY,
    BuiltinValidationSettingError,
    builtin_validation_enabled,
)
from tests.support.paths import REPO_ROOT

BUILTIN_PLUGIN = "CloudFormation Validate"


def _context(value: object) -> dict[str, str]:
    return {"CDK_CONTEXT_JSON": json.dumps({CONTEXT_KEY: value})}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, True),
        ({"CDK_CONTEXT_JSON": json.dumps({"other": 1})}, True),
        (_context(True), True),
        (_context(False), False),
        (_context("false"), False),  # `cdk synth -c key=false` passes a string
        (_context("true"), True),
        ({"CDK_CONTEXT_JSON": "{not json"}, True),  # cdk.App reports that one itself
    ],
)
def test_the_setting_is_read_from_the_cli_context(environ: dict[str, str], expected: bool) -> None:
    assert builtin_validation_enabled(environ) is expected


def test_the_overflow_file_wins_like_in_cdk_app(tmp_path: Path) -> None:
    overflow = tmp_path / "context.json"
    overflow.write_text(json.dumps({CONTEXT_KEY: False}))
    environ = {**_context(True), "CONTEXT_OVERFLOW_LOCATION_ENV": str(overflow)}
    assert builtin_validation_enabled(environ) is False


@pytest.mark.parametrize("value", [0, "no", None, ["false"], "x" * 500])
def test_anything_but_a_boolean_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(BuiltinValidationSettingError) as caught:
        builtin_validation_enabled(_context(value))
    message = str(caught.value)
    assert CONTEXT_KEY in message and "allowed: true or false" in message
    assert len(message) < 200  # the value is shortened


def test_the_reference_app_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={**os.environ, **_context("off"), "CDK_OUTDIR": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: invalid settings: context {CONTEXT_KEY}: 'off' is not allowed; "
        "allowed: true or false"
    ]
    assert "Traceback" not in done.stderr


# A template aws-cdk-lib's built-in validation refuses (an unknown property) and
# nothing else objects to: whether synthesis fails shows whether it ran.
USER_APP = """
import aws_cdk as cdk
from iot_remote_access.stacks.builtin_validation import new_app
app = new_app()
stack = cdk.Stack(app, "User")
cdk.CfnResource(stack, "Queue", type="AWS::SQS::Queue", properties={"NoSuchProperty": 1})
app.synth()
"""


@pytest.mark.parametrize("setting", [None, False])
def test_new_app_honours_the_setting(tmp_path: Path, setting: bool | None) -> None:
    context = {"@aws-cdk/core:validateAgainstDefaultRules": True}  # errors stay errors
    if setting is not None:
        context[CONTEXT_KEY] = setting
    done = subprocess.run(
        [sys.executable, "-c", USER_APP],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "CDK_CONTEXT_JSON": json.dumps(context),
            "CDK_OUTDIR": str(tmp_path / "out"),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Written only when a plugin has something to report.
    written = tmp_path / "out" / "validation-report.json"
    report = json.loads(written.read_text()) if written.exists() else {"pluginReports": []}
    plugins = {plugin["pluginName"] for plugin in report["pluginReports"]}
    if setting is None:
        assert done.returncode != 0 and BUILTIN_PLUGIN in plugins
        assert "NoSuchProperty" in done.stdout + done.stderr
    else:
        assert done.returncode == 0, done.stderr[-2000:]
        assert BUILTIN_PLUGIN not in plugins


def test_cdk_synth_with_the_setting_off_still_runs_cdk_nag_and_says_so(tmp_path: Path) -> None:
    """The real cdk CLI, cdk.json's context (certificates on) and ``-c key=false``."""
    outdir = tmp_path / "cdk.out"
    done = subprocess.run(
        [
            str(REPO_ROOT / "node_modules" / ".bin" / "cdk"),
            "synth",
            "--no-notices",
            "--context",
            f"{CONTEXT_KEY}=false",
            "--output",
            str(outdir),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built-in CloudFormation validation is off" in done.stdout + done.stderr
    report = json.loads((outdir / "validation-report.json").read_text())
    plugins = {plugin["pluginName"] for plugin in report["pluginReports"]}
    # cdk-nag ran: its report carries the library's acknowledged findings.
    assert "AwsSolutions" in plugins and BUILTIN_PLUGIN not in plugins


def test_on_an_aws_cdk_lib_without_the_keyword_the_environment_variable_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aws-cdk-lib 2.269.0 (the range's floor) has no ``builtin_cloud_formation_validation``."""
    from types import SimpleNamespace

    from iot_remote_access.stacks import builtin_validation

    class OldApp:
        def __init__(self, *, outdir: str | None = None) -> None: ...

    monkeypatch.setattr(builtin_validation, "cdk", SimpleNamespace(App=OldApp))
    monkeypatch.delenv("CDK_VALIDATION", raising=False)
    assert builtin_validation.validation_props(True) == {}
    assert "CDK_VALIDATION" not in os.environ
    assert builtin_validation.validation_props(False) == {}
    assert os.environ["CDK_VALIDATION"] == "false"
