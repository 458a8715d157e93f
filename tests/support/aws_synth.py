"""Helpers for infrastructure tests: synthesize with every check on, lint with cfn-lint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template


def synth_checked(
    build: Callable[[cdk.App], cdk.Stack], outdir: Path
) -> tuple[cdk.Stack, Template, Path]:
    """Build a stack in a fresh app and synthesize it.

    ``app.synth()`` runs the validation plugins the stack registered (cdk-nag's
    AwsSolutions pack and the IoT policy guard) and raises if any fails, so a
    test that calls this proves the stack passes them. Returns the stack, the
    assertions Template and the template file (for cfn-lint).
    """
    app = cdk.App(outdir=str(outdir))
    stack = build(app)
    assembly = app.synth()
    template_file = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
    template = Template.from_json(json.loads(template_file.read_text()))
    return stack, template, template_file


def cfn_lint_errors(template_file: Path, regions: tuple[str, ...] = ("eu-west-1",)) -> list[str]:
    """cfn-lint's errors (not warnings) for a template, as readable lines."""
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(template_file, config=ManualArgs(regions=list(regions)))
    return [
        f"{m.rule.id} {m.message} ({m.path_string})" for m in matches if m.rule.id.startswith("E")
    ]


def validation_report(outdir: Path) -> dict[str, Any]:
    """The validation report ``app.synth()`` writes (plugins with findings or acknowledgements)."""
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    return report


def unacknowledged(report: dict[str, Any]) -> list[str]:
    """Every finding a plugin reported and nobody acknowledged, as ``plugin: rule``."""
    return [
        f"{plugin['pluginName']}: {violation['ruleName']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
    ]


def acknowledged(report: dict[str, Any]) -> dict[str, str]:
    """cdk-nag's acknowledged findings (rule name -> reason)."""
    return {
        violation["ruleName"]: violation.get("reason", "")
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "AwsSolutions"
        for violation in plugin.get("suppressedViolations", [])
    }
