"""The evidence pack built from a scenario's ledger, inventory and findings (core, no cloud).

Every tampering case must stop the pack with the record it broke at, and leave no
folder behind: a pack that silently lacks records is the failure this guards against.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core.evidence_model import (
    PackInputError,
    PackVerificationError,
    Period,
)
from iot_remote_access.core.evidence_pack import ChainSource, PackInputs, build_pack
from iot_remote_access.core.ledger import Record, bounded_lines
from tests.support.evidence_scenario import OPERATOR, OTHER, Scenario, build, utc

START = utc(2026, 11, 1)
NOW = utc(2026, 11, 20)


@pytest.fixture
def scenario() -> Scenario:
    return build(START, days=5)


def _inputs(s: Scenario, lines: list[bytes | None] | None = None, **changes: object) -> PackInputs:
    period = Period.parse("2026-11-01", "2026-11-05", retention_days=400, now=NOW)
    inputs = PackInputs(
        period=period,
        now=NOW,
        cloud="aws",
        assets=s.assets,
        chain=ChainSource(s.lines() if lines is None else lines, s.anchors, "test ledger"),
        findings=s.findings,
        policies=[],
        cloud_sessions=dict(s.tunnels),
    )
    for name, value in changes.items():
        setattr(inputs, name, value)
    return inputs


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_pack_for_a_period_with_sessions_rotations_findings_and_an_incident(
    scenario: Scenario, tmp_path: Path
) -> None:
    out = tmp_path / "pack"
    result = build_pack(_inputs(scenario), out)

    sessions = _rows(out, "sessions")
    assert len(sessions) == 5 * 3 + 2  # three a day, one refused, one expired unclosed
    by_id = {row["sessionId"]: row for row in sessions if row["sessionId"]}
    assert by_id["t-0-0"]["outcome"] == "closed" and by_id["t-0-0"]["minutes"] == "20"
    assert by_id["t-0-1"]["outcome"] == "closed: expired" and by_id["t-0-1"]["endedBy"] == "sweeper"
    assert by_id["t-expired"]["outcome"] == "expired (no close recorded)"
    assert by_id["t-expired"]["minutes"] == "30"
    refused = [row for row in sessions if row["outcome"] == "refused"]
    assert [(r["operator"], r["thing"], r["purpose"]) for r in refused] == [
        (OTHER, "sensor-9", "curious")
    ]
    # The session JSON holds the exact text; the CSV defuses a spreadsheet formula.
    json_rows = json.loads((out / "sessions.json").read_text(encoding="utf-8"))
    assert any(row["purpose"].startswith("=HYPERLINK") for row in json_rows)
    assert by_id["t-expired"]["purpose"].startswith("'=HYPERLINK")

    changes = _rows(out, "inventory-changes")
    assert {(c["event"], c["thing"]) for c in changes} == {
        ("rotated", "sensor-1"),
        ("rotated", "sensor-2"),
        ("enrolled (inventory)", "sensor-5"),
    }
    assert len(_rows(out, "inventory")) == 6

    incidents = _rows(out, "incidents")
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["earlyWarningState"] == "sent" and incident["earlyWarningSent"]
    assert incident["notificationState"] == "overdue" and incident["overdue"] == "notification"
    assert incident["finalReportState"] == "waiting"
    findings = _rows(out, "findings")
    assert {f["severity"]: f["incident"] for f in findings} == {
        "high": incident["incident"],
        "medium": "",
    }
    assert result.overdue == 1

    operators = {
        row["operator"]: row for row in json.loads((out / "purpose-operators.json").read_text())
    }
    assert (
        operators[OPERATOR]["devicesReached"] == "3" or operators[OPERATOR]["devicesReached"] == 3
    )
    purposes = _rows(out, "purpose")
    commands = [
        (p["service"], p["purpose"], p["outcome"])
        for p in purposes
        if p["service"].startswith("command:")
    ]
    assert commands == [
        ("command:diagnostics", "maintenance: OPS-77", "sent"),
        ("command:dump-occupancy", "occupancy-analytics", "refused"),
    ]
    assert operators[OTHER]["services"]["command:diagnostics"] == 1
    assert operators[OTHER]["refused"] == 2  # one tunnel, one command
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ledger"]["holds"] is True
    assert summary["ledger"]["lastSeq"] == scenario.records[-1].seq
    assert sum(summary["sessionsPerDay"].values()) == 16
    assert {r["section"] for r in summary["requirements"]} >= {
        "asset inventory",
        "purpose limitation",
    }
    assert not list(tmp_path.glob(".pack.partial-*"))


def test_the_report_is_self_contained_and_escapes_what_it_shows(
    scenario: Scenario, tmp_path: Path
) -> None:
    out = tmp_path / "pack"
    build_pack(_inputs(scenario), out)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in report.lower()
    assert "&lt;script&gt;" in report  # the hostile purpose, shown as text
    assert report.count("<svg") == 2 and "Remote sessions per day" in report
    assert "http" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "overdue" in report and 'class="bad"' in report


def test_the_packs_ledger_copy_verifies_with_the_console_verifier(
    scenario: Scenario, tmp_path: Path
) -> None:
    from tests.support.cli_runner import run_cli

    out = tmp_path / "pack"
    build_pack(_inputs(scenario), out)
    result = run_cli(
        "evidence",
        "verify",
        str(out / "ledger/chain.jsonl"),
        "--anchors",
        str(out / "ledger/anchors.jsonl"),
    )
    assert result.code == 0, result.stderr
    assert f"{len(scenario.records)} record(s)" in result.stdout


def _edited(record: Record, **data: object) -> bytes:
    return replace(record, data={**record.data, **data}).line()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("edit", r"broken at record 5: digest does not match the record's content \(edited\)"),
        ("forge", r"broken at record 5: differs from the anchor of .* \(chain re-written\)"),
        ("delete", r"broken at record 5: record\(s\) 5 missing \(deleted or moved\)"),
        (
            "reorder",
            r"broken at record 5: record\(s\) 5 missing \(deleted or moved\): found 6 after 4",
        ),
        (
            "truncate",
            # The last three records cut off; the last anchor vouches for the last record.
            r"broken at record {cut}: the chain ends at record {kept} but the anchor of .* "
            r"vouches for record {last} \(truncated\)",
        ),
        ("garbage", r"broken at record 5: line 6 is not a ledger record"),
    ],
)
def test_every_tampering_is_reported_with_the_record_it_broke_at(
    scenario: Scenario, tmp_path: Path, tamper: str, expected: str
) -> None:
    from iot_remote_access.core.ledger import next_record

    lines = scenario.lines()
    target = scenario.records[5]
    if tamper == "edit":
        lines[5] = _edited(target, reason="nothing to see")
    elif tamper == "forge":  # edited and every digest after it re-computed
        head = scenario.records[4]
        forged = []
        for index, record in enumerate(scenario.records[5:]):
            data = {**record.data, "requester": "someone-else"} if index == 0 else record.data
            head = next_record(
                head, data, __import__("datetime").datetime.fromisoformat(record.time)
            )
            forged.append(head.line())
        lines[5:] = forged
    elif tamper == "delete":
        del lines[5]
    elif tamper == "reorder":
        lines[5], lines[6] = lines[6], lines[5]
    elif tamper == "truncate":
        lines = lines[:-3]
    elif tamper == "garbage":
        lines[5] = (lines[5] or b"")[:-1] + b" "
    out = tmp_path / "pack"
    last = scenario.records[-1].seq
    expected = expected.format(last=last, kept=last - 3, cut=last - 2)
    with pytest.raises(PackVerificationError, match=expected):
        build_pack(_inputs(scenario, lines), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder either


def test_a_session_the_cloud_lists_but_the_ledger_lacks_fails_the_pack(
    scenario: Scenario, tmp_path: Path
) -> None:
    extra = {**scenario.tunnels, "t-around-the-broker": START + timedelta(days=1)}
    with pytest.raises(
        PackVerificationError, match="record missing from the ledger: session 't-around-the-broker'"
    ):
        build_pack(_inputs(scenario, cloud_sessions=extra), tmp_path / "pack")
    assert list(tmp_path.iterdir()) == []


def test_a_rotation_the_inventory_shows_but_the_ledger_lacks_fails_the_pack(
    scenario: Scenario, tmp_path: Path
) -> None:
    assets = list(scenario.assets)
    assets[4] = replace(assets[4], last_rotation_at=START + timedelta(days=2))
    with pytest.raises(
        PackVerificationError, match="thing 'sensor-4' was rotated at 2026-11-03T00:00:00Z"
    ):
        build_pack(_inputs(scenario, assets=assets), tmp_path / "pack")


def test_a_missing_anchor_is_reported_with_the_gap(scenario: Scenario, tmp_path: Path) -> None:
    anchors = [a for a in scenario.anchors if not ("2026-11-02T10" <= a.time < "2026-11-02T14")]
    chain = ChainSource(scenario.lines(), anchors, "test ledger")
    with pytest.raises(
        PackVerificationError,
        match=r"anchor missing: none between 2026-11-02T09:00:00Z and 2026-11-02T14:00:00Z",
    ):
        build_pack(_inputs(scenario, chain=chain), tmp_path / "pack")
    with pytest.raises(PackVerificationError, match="no anchor found"):
        build_pack(
            _inputs(scenario, chain=ChainSource(scenario.lines(), [], "test ledger")),
            tmp_path / "pack",
        )


def test_a_period_before_the_ledger_existed_is_no_data(scenario: Scenario, tmp_path: Path) -> None:
    period = Period.parse("2026-10-01", "2026-10-03", retention_days=400, now=NOW)
    # As the AWS source selects it: the first anchor (after the period) and its records.
    first = scenario.anchors[0]
    chain = ChainSource(scenario.lines()[: first.seq + 1], [first], "test ledger")
    with pytest.raises(
        PackInputError,
        match=r"--to: no data: the ledger has no record and no anchor before 2026-10-04",
    ):
        build_pack(_inputs(scenario, period=period, chain=chain), tmp_path / "pack")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-05", "2026-11-01", r"--from: '2026-11-05' is not before --to '2026-11-01'"),
        (
            "2025-01-01",
            "2026-11-01",
            r"--from: the period is 670 days, longer than the ledger's retention \(400 days\)",
        ),
        ("2025-10-01", "2025-10-02", r"--from: '2025-10-01' is before the retention window"),
        (
            "yesterday",
            "2026-11-01",
            r"--from: 'yesterday' is not allowed; allowed: a date YYYY-MM-DD",
        ),
        ("2026-11-01T00:00:00", "2026-11-02", r"--from: '2026-11-01T00:00:00' has no time zone"),
        ("2026-12-01", "2026-12-02", r"--from: '2026-12-01' is in the future"),
    ],
)
def test_bad_periods_name_the_field_and_value(start: str, end: str, message: str) -> None:
    with pytest.raises(PackInputError, match=message):
        Period.parse(start, end, retention_days=400, now=NOW)


def test_an_existing_out_folder_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    (tmp_path / "pack").mkdir()
    with pytest.raises(PackInputError, match=r"--out: .* exists"):
        build_pack(_inputs(scenario), tmp_path / "pack")


def test_google_cloud_proxy_sessions_fill_the_same_rows(tmp_path: Path) -> None:
    from iot_remote_access.core.ledger import anchor_of, next_record

    records: list[Record] = []
    at = START + timedelta(hours=9)
    for decision, minutes in (("opened", 0), ("closed", 12), ("refused", 20)):
        data = {
            "event": "gcp.proxy.session",
            "decision": decision,
            "sessionId": "gs-1" if decision != "refused" else "",
            "principal": "user:ana@example.com",
            "device": "sensor-7",
            "service": "ssh",
            "reason": "INC-9 firmware check",
            "minutes": 15,
        }
        head = next_record(records[-1] if records else None, data, at + timedelta(minutes=minutes))
        records.append(head)
    anchors = [anchor_of(records[-1], START + timedelta(hours=h)) for h in range(10, 24 * 5 + 2)]
    period = Period.parse("2026-11-01", "2026-11-05", retention_days=400, now=NOW)
    inputs = PackInputs(
        period=period,
        now=NOW,
        cloud="gcp",
        assets=[],
        chain=ChainSource([r.line() for r in records], anchors, "gcp test"),
        findings=[],
        policies=[],
    )
    build_pack(inputs, tmp_path / "pack")
    rows = _rows(tmp_path / "pack", "sessions")
    # In the order they ended: the session at its close, the refusal when it was refused.
    assert [
        (r["sessionId"], r["operator"], r["thing"], r["outcome"], r["minutes"]) for r in rows
    ] == [
        ("gs-1", "user:ana@example.com", "sensor-7", "closed", "12"),
        ("", "user:ana@example.com", "sensor-7", "refused", "0"),
    ]


_SCENARIO = build(START, days=5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_single_byte_change_fails_the_pack_and_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """However a stored record is changed, the pack never comes out without it."""
    blob = bytearray(b"".join(r.line() + b"\n" for r in _SCENARIO.records))
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    blob[position] = data.draw(st.integers(0, 255).filter(lambda b: b != blob[position]))
    lines: list[bytes | None] = list(bounded_lines(io.BytesIO(bytes(blob))))
    folder = tmp_path_factory.mktemp("pack")
    with pytest.raises(PackVerificationError, match=r"broken at record \d+: "):
        build_pack(_inputs(_SCENARIO, lines), folder / "pack")
    assert list(folder.iterdir()) == []
