"""Render guard results: a table for people, JSON and SARIF 2.1.0 for machines."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from iot_remote_access import __version__
from iot_remote_access.core.policy_check import RULES, Severity
from iot_remote_access.guard.scan import PolicyResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/iot-remote-access/"


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


def render(results: list[PolicyResult], output_format: OutputFormat, console: Console) -> None:
    if output_format is OutputFormat.JSON:
        console.print_json(json.dumps(to_json(results)), highlight=False)
    elif output_format is OutputFormat.SARIF:
        # Plain print: SARIF consumers want the exact JSON, not rich's markup.
        console.file.write(json.dumps(to_sarif(results), indent=2) + "\n")
    else:
        _table(results, console)


def to_json(results: list[PolicyResult]) -> dict[str, Any]:
    return {
        "policiesChecked": len(results),
        "findings": [
            {
                "file": result.source.file,
                "policy": result.source.name,
                "ruleId": finding.rule_id,
                "rule": finding.rule.name,
                "severity": str(finding.severity),
                "statement": finding.statement,
                "action": finding.action,
                "resource": finding.resource,
                "message": finding.message,
            }
            for result in results
            for finding in result.findings
        ],
    }


def to_sarif(results: list[PolicyResult]) -> dict[str, Any]:
    rule_ids = sorted(RULES)
    sarif_results = []
    for result in results:
        for finding in result.findings:
            location: dict[str, Any] = {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(result.source.file)},
                    **({"region": {"startLine": result.source.line}} if result.source.line else {}),
                },
                "logicalLocations": [{"name": result.source.name, "kind": "resource"}],
            }
            sarif_results.append(
                {
                    "ruleId": finding.rule_id,
                    "ruleIndex": rule_ids.index(finding.rule_id),
                    "level": "error" if finding.severity is Severity.HIGH else "warning",
                    "message": {
                        "text": f"{result.source.name} Statement[{finding.statement}]: "
                        f"{finding.message} (action {finding.action}, "
                        f"resource {finding.resource})"
                    },
                    "locations": [location],
                }
            )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "iot-remote-access",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [
                            {
                                "id": rule_id,
                                "name": RULES[rule_id].name,
                                "shortDescription": {"text": RULES[rule_id].summary},
                                "defaultConfiguration": {
                                    "level": "error"
                                    if RULES[rule_id].severity is Severity.HIGH
                                    else "warning"
                                },
                            }
                            for rule_id in rule_ids
                        ],
                    }
                },
                "results": sarif_results,
            }
        ],
    }


def _uri(file: str) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.as_uri()


def _table(results: list[PolicyResult], console: Console) -> None:
    findings = [(r, f) for r in results for f in r.findings]
    if not findings:
        console.print(f"{len(results)} IoT policies checked: no findings.")
        return
    table = Table(title=f"{len(findings)} findings in {len(results)} IoT policies")
    for column in ("policy", "rule", "severity", "stmt", "action", "resource", "why"):
        table.add_column(column, overflow="fold")
    for result, finding in findings:
        table.add_row(
            f"{result.source.name}\n[dim]{result.source.file}[/dim]",
            f"{finding.rule_id} {finding.rule.name}",
            str(finding.severity),
            str(finding.statement),
            finding.action,
            finding.resource,
            finding.message,
        )
    console.print(table)
