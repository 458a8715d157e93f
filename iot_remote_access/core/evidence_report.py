"""The pack's human report: one self-contained HTML file (inline CSS and SVG, no script,
no network), readable in any browser or printed, without the tool.

Long sections show their first rows and name the CSV file holding all of them, so
the report stays a few megabytes whatever the fleet. Every value is escaped.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iot_remote_access.core.evidence_fold import Fold

#: Rows of a long section shown in the report (the CSV holds all).
MAX_ROWS = 300
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:75em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top}
th{background:#eee}.bad{background:#fdd;font-weight:bold}.ok{background:#dfd}
.note{color:#555;font-size:.9em}svg text{font-size:10px;font-family:sans-serif}
"""


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], bad_column: int | None = None
) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        flagged = bad_column is not None and bool(row[bad_column])
        cells = "".join(f"<td>{e(cell)}</td>" for cell in row)
        body.append(f'<tr class="bad">{cells}</tr>' if flagged else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def bar_chart(title: str, counts: Mapping[str, int], *, width: int = 900, height: int = 220) -> str:
    """A bar chart as inline SVG (labels every few bars so they never overlap)."""
    items = sorted(counts.items())
    if not items:
        return f"<p class='note'>{e(title)}: no data in the period.</p>"
    top = max(value for _, value in items) or 1
    left, bottom, plot_h = 40, 40, height - 60
    step = (width - left - 10) / len(items)
    label_every = max(1, round(len(items) / 15))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{e(title)}"><title>{e(title)}</title>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}" stroke="#999"/>',
        f'<text x="2" y="14">{top}</text><text x="2" y="{height - bottom}">0</text>',
    ]
    for index, (label, value) in enumerate(items):
        bar_h = plot_h * value / top
        x = left + index * step
        y = height - bottom - bar_h
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{bar_h:.1f}" fill="#4a7ab5"><title>{e(label)}: {value}</title></rect>'
        )
        if index % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}">{e(label[5:])}</text>')
    parts.append("</svg>")
    return f"<h3>{e(title)}</h3>" + "".join(parts)


def _csv_rows(path: Path, columns: Sequence[str]) -> tuple[list[list[str]], int]:
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        shown = [[row.get(c, "") for c in columns] for row in islice(reader, MAX_ROWS)]
        more = sum(1 for _ in reader)
    return shown, more


def _section(
    folder: Path, name: str, columns: Sequence[str], title: str, bad: int | None = None
) -> str:
    rows, more = _csv_rows(folder / f"{name}.csv", columns)
    if not rows:
        return f"<h2>{e(title)}</h2><p>None in the period.</p>"
    tail = f"<p class='note'>{more} more row(s) in {e(name)}.csv.</p>" if more else ""
    every = f"<p class='note'>All rows: {e(name)}.csv / {e(name)}.json</p>"
    return f"<h2>{e(title)}</h2>{table(columns, rows, bad)}{tail}{every}"


def render_report(
    folder: Path, summary: Mapping[str, Any], fold: Fold, expiries: Counter[str]
) -> None:
    parts = [
        *_head(summary),
        bar_chart("Remote sessions per day", fold.sessions_per_day),
        bar_chart("Certificate expiries per week (week starting)", expiries),
        *_sections(folder, summary),
        "<h2>Notes</h2><ul>"
        + ("".join(f"<li>{e(n)}</li>" for n in summary["notes"]) or "<li>none</li>")
        + "</ul>",
        "</body></html>\n",
    ]
    (folder / "report.html").write_text("".join(parts), encoding="utf-8")


def _head(summary: Mapping[str, Any]) -> list[str]:
    ledger, counts, period = summary["ledger"], summary["counts"], summary["period"]
    span = f"{e(period['from'])} to {e(period['to'])}"
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Evidence pack {span}</title><style>{_CSS}</style></head><body>",
        f"<h1>Remote-access evidence pack</h1><p>Period {span} (end exclusive), "
        f"{e(summary['cloud'])}; generated {e(summary['generatedAt'])}; clocks judged at "
        f"{e(summary['clocksJudgedAt'])}.</p>",
        f"<p class='ok'>The ledger holds: {e(ledger['recordsChecked'])} record(s) checked "
        f"(seq {e(ledger['firstSeq'])}..{e(ledger['lastSeq'])}), "
        f"{e(ledger['anchorsChecked'])} write-once anchor(s) matched; head digest "
        f"<code>{e(ledger['headDigest'])}</code>.</p>",
        "<p class='note'>Re-check without trusting this report: "
        f"<code>{e(ledger['reverify'])}</code></p>",
        "<h2>Summary</h2>",
        table(["what", "count"], sorted(counts.items())),
        "<h2>Requirements served</h2>",
        table(
            _REQUIREMENT_HEADERS,
            [[r[k] for k in _REQUIREMENT_KEYS] for r in summary["requirements"]],
        ),
    ]


_REQUIREMENT_KEYS = (
    "section",
    "files",
    "nis2",
    "implementingRegulation2024_2690",
    "gdpr",
    "dpdpRules2025",
    "operatorsJob",
)
_REQUIREMENT_HEADERS = (
    "section",
    "files",
    "NIS2",
    "Reg. 2024/2690 Annex",
    "GDPR",
    "DPDP Rules",
    "remains your job",
)
_SESSION_COLUMNS = (
    "openedAt",
    "operator",
    "thing",
    "service",
    "purpose",
    "minutes",
    "outcome",
    "endedBy",
    "sessionId",
)
_OPERATOR_HEADERS = (
    "operator",
    "sessions",
    "refused",
    "devices reached",
    "services",
    "purposes (most frequent)",
)
_INCIDENT_COLUMNS = (
    "incident",
    "detection",
    "thing",
    "detectedAt",
    "earlyWarningDue",
    "earlyWarningSent",
    "notificationDue",
    "notificationSent",
    "finalReportDue",
    "finalReportSent",
    "overdue",
)


def _sections(folder: Path, summary: Mapping[str, Any]) -> list[str]:
    operators = [
        [
            o["operator"],
            o["sessions"],
            o["refused"],
            o["devicesReached"],
            _top(o["services"]),
            _top(o["purposes"]),
        ]
        for o in summary["operators"]
    ]
    return [
        _section(
            folder,
            "incidents",
            _INCIDENT_COLUMNS,
            "Incidents and NIS2 clocks (overdue rows marked)",
            bad=_INCIDENT_COLUMNS.index("overdue"),
        ),
        _section(
            folder,
            "findings",
            ("observedAt", "severity", "detection", "thing", "summary", "incident"),
            "Security findings",
        ),
        _section(
            folder,
            "sessions",
            _SESSION_COLUMNS,
            "Remote sessions",
        ),
        "<h2>Purpose limitation: per operator</h2>",
        table(
            _OPERATOR_HEADERS,
            operators,
        ),
        _section(
            folder,
            "policies",
            ("kind", "name", "devicePolicy", "ruleId", "severity", "message"),
            "Policy evidence",
        ),
        _section(
            folder,
            "inventory",
            ("thing", "certificateId", "notAfter", "lastSeen", "ownerLabels", "rotationState"),
            "Asset inventory",
        ),
        _section(
            folder,
            "inventory-changes",
            ("time", "event", "thing", "certificateId", "serial", "seq"),
            "Inventory changes in the period",
        ),
    ]


def _top(counts: Mapping[str, int], limit: int = 5) -> str:
    items = list(counts.items())
    text = "; ".join(f"{name} ({count})" for name, count in items[:limit])
    return text + (f"; +{len(items) - limit} more" if len(items) > limit else "")
