"""Render guard results: a table for people, JSON and SARIF 2.1.0 for machines.

On a terminal the table is rich's; anywhere else (CI logs, pipes, files) it is a
plain one whose layout is linear in the findings: rich's layout measures every
cell and took 94 % of ``lint``'s time on 10,000 files. Rich is imported only
for the terminal, which also keeps ``lint``'s start-up short.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TextIO

from iot_remote_access.guard.review import Reviewed, Status, review
from iot_remote_access.guard.sarif import to_sarif
from iot_remote_access.guard.scan import PolicyResult


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


TABLE_COLUMNS = ("policy", "rule", "severity", "stmt", "action", "resource", "why")


def render(
    results: list[PolicyResult],
    output_format: OutputFormat,
    out: TextIO,
    *,
    terminal: bool,
    reviewed: list[Reviewed] | None = None,
    baseline_used: bool = False,
) -> None:
    """Write the report to ``out``; ``terminal`` selects rich's table for people.

    ``reviewed`` carries each finding's status (acknowledged, baselined, open);
    without it every finding is open.
    """
    reviewed = review(results) if reviewed is None else reviewed
    # JSON is written as is (rich's print_json re-parsed and styled it); indented for
    # people at a terminal, compact elsewhere: json's C encoder only runs without indent.
    indent = 2 if terminal else None
    if output_format is OutputFormat.JSON:
        out.write(json.dumps(to_json(results, reviewed), indent=indent) + "\n")
    elif output_format is OutputFormat.SARIF:
        out.write(json.dumps(to_sarif(reviewed, baseline_used=baseline_used), indent=indent) + "\n")
    elif terminal:
        _rich_table(results, reviewed, out)
    else:
        out.write(plain_table(results, reviewed))


def to_json(results: list[PolicyResult], reviewed: list[Reviewed] | None = None) -> dict[str, Any]:
    reviewed = review(results) if reviewed is None else reviewed
    return {
        "policiesChecked": len(results),
        "findings": [_json_finding(item) for item in reviewed],
    }


def _json_finding(item: Reviewed) -> dict[str, Any]:
    source, finding = item.result.source, item.finding
    entry: dict[str, Any] = {
        "file": source.file,
        "policy": source.name,
        "ruleId": finding.rule_id,
        "rule": finding.rule.name,
        "severity": str(finding.severity),
        "statement": finding.statement,
        "action": finding.action,
        "resource": finding.resource,
        "message": finding.message,
        "status": str(item.status),
        "fingerprint": item.fingerprint,
    }
    if source.construct_path:
        entry["constructPath"] = source.construct_path
    if source.stack:
        entry["stack"] = source.stack
    if source.source_line:
        entry["sourceLocation"] = {"file": source.source_line.file, "line": source.source_line.line}
    if item.acknowledgement is not None:
        entry["acknowledgement"] = {
            "id": item.acknowledgement.rule,
            "reason": item.acknowledgement.reason,
            "origin": item.acknowledgement.origin,
        }
    return entry


def _title(results: list[PolicyResult], reviewed: list[Reviewed]) -> str:
    findings = sum(1 for item in reviewed if item.status is Status.OPEN)
    others = ", ".join(
        f"{count} {status}"
        for status in (Status.ACKNOWLEDGED, Status.BASELINED)
        if (count := sum(1 for item in reviewed if item.status is status))
    )
    tail = f" ({others}, not listed)" if others else ""
    if not findings:
        return f"{len(results)} IoT policies checked: no findings.{tail}"
    return f"{findings} findings in {len(results)} IoT policies{tail}"


def _open(reviewed: list[Reviewed]) -> list[Reviewed]:
    return [item for item in reviewed if item.status is Status.OPEN]


def _rows(reviewed: list[Reviewed]) -> list[tuple[str, ...]]:
    return [
        (
            f"{item.result.source.name} ({item.result.source.file})",
            f"{item.finding.rule_id} {item.finding.rule.name}",
            str(item.finding.severity),
            str(item.finding.statement),
            item.finding.action,
            item.finding.resource,
            item.finding.message,
        )
        for item in _open(reviewed)
    ]


def plain_table(results: list[PolicyResult], reviewed: list[Reviewed] | None = None) -> str:
    """The findings as aligned plain text: one line per finding, the reason last.

    Widths come from one pass over the cells; the last column is not padded, so
    a long reason never widens the others.
    """
    reviewed = review(results) if reviewed is None else reviewed
    rows = _rows(reviewed)
    if not rows:
        return _title(results, reviewed) + "\n"
    widths = [len(name) for name in TABLE_COLUMNS[:-1]]
    for row in rows:
        for index in range(len(widths)):
            widths[index] = max(widths[index], len(row[index]))
    lines = [_title(results, reviewed), ""]
    for row in (TABLE_COLUMNS, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines) + "\n"


def _rich_table(results: list[PolicyResult], reviewed: list[Reviewed], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    findings = [(item.result, item.finding) for item in _open(reviewed)]
    if not findings:
        console.print(_title(results, reviewed))
        return
    table = Table(title=_title(results, reviewed))
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
