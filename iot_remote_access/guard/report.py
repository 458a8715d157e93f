"""Render guard results: a table for people, JSON and SARIF 2.1.0 for machines.

On a terminal the table is rich's; anywhere else (CI logs, pipes, files) it is a
plain one whose layout is linear in the findings: rich's layout measures every
cell and took 94 % of ``lint``'s time on 10,000 files. Rich is imported only
for the terminal, which also keeps ``lint``'s start-up short.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from iot_remote_access import __version__
from iot_remote_access.core.policy_check import RULES, Severity
from iot_remote_access.guard.scan import PolicyResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/iot-remote-access/"


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


TABLE_COLUMNS = ("policy", "rule", "severity", "stmt", "action", "resource", "why")


def render(
    results: list[PolicyResult], output_format: OutputFormat, out: TextIO, *, terminal: bool
) -> None:
    """Write the report to ``out``; ``terminal`` selects rich's table for people."""
    # JSON is written as is (rich's print_json re-parsed and styled it); indented for
    # people at a terminal, compact elsewhere: json's C encoder only runs without indent.
    indent = 2 if terminal else None
    if output_format is OutputFormat.JSON:
        out.write(json.dumps(to_json(results), indent=indent) + "\n")
    elif output_format is OutputFormat.SARIF:
        out.write(json.dumps(to_sarif(results), indent=indent) + "\n")
    elif terminal:
        _rich_table(results, out)
    else:
        out.write(plain_table(results))


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
    rule_index = {rule_id: index for index, rule_id in enumerate(rule_ids)}
    uri = _uri_maker()
    sarif_results = []
    for result in results:
        for finding in result.findings:
            location: dict[str, Any] = {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri(result.source.file)},
                    **({"region": {"startLine": result.source.line}} if result.source.line else {}),
                },
                "logicalLocations": [{"name": result.source.name, "kind": "resource"}],
            }
            sarif_results.append(
                {
                    "ruleId": finding.rule_id,
                    "ruleIndex": rule_index[finding.rule_id],
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


def _uri_maker() -> Callable[[str], str]:
    """The SARIF uri of a file: relative to the working folder when inside it.

    Each file is resolved once and each folder once, with ``os.path`` on strings:
    resolving every finding's path with pathlib cost more than checking the policies.
    """
    inside = os.path.join(os.path.realpath(os.getcwd()), "")
    folders: dict[str, str] = {}
    known: dict[str, str] = {}

    def uri(file: str) -> str:
        if file not in known:
            if os.path.islink(file):
                resolved = os.path.realpath(file)  # the file itself leads elsewhere
            else:
                folder, name = os.path.split(file)
                if folder not in folders:
                    folders[folder] = os.path.realpath(folder or ".")
                resolved = os.path.join(folders[folder], name)
            if resolved.startswith(inside):
                known[file] = Path(resolved[len(inside) :]).as_posix()
            else:
                path = Path(file)
                known[file] = path.as_uri() if path.is_absolute() else path.as_posix()
        return known[file]

    return uri


def _title(results: list[PolicyResult], findings: int) -> str:
    if not findings:
        return f"{len(results)} IoT policies checked: no findings."
    return f"{findings} findings in {len(results)} IoT policies"


def _rows(results: list[PolicyResult]) -> list[tuple[str, ...]]:
    return [
        (
            f"{result.source.name} ({result.source.file})",
            f"{finding.rule_id} {finding.rule.name}",
            str(finding.severity),
            str(finding.statement),
            finding.action,
            finding.resource,
            finding.message,
        )
        for result in results
        for finding in result.findings
    ]


def plain_table(results: list[PolicyResult]) -> str:
    """The findings as aligned plain text: one line per finding, the reason last.

    Widths come from one pass over the cells; the last column is not padded, so
    a long reason never widens the others.
    """
    rows = _rows(results)
    if not rows:
        return _title(results, 0) + "\n"
    widths = [len(name) for name in TABLE_COLUMNS[:-1]]
    for row in rows:
        for index in range(len(widths)):
            widths[index] = max(widths[index], len(row[index]))
    lines = [_title(results, len(rows)), ""]
    for row in (TABLE_COLUMNS, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines) + "\n"


def _rich_table(results: list[PolicyResult], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    findings = [(r, f) for r in results for f in r.findings]
    if not findings:
        console.print(_title(results, 0))
        return
    table = Table(title=_title(results, len(findings)))
    for column in TABLE_COLUMNS:
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
