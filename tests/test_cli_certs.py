"""`certs simulate`, `certs plan`, `inventory export`: the real entry point, moto for DynamoDB."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.lambdas.certs.inventory import Inventory
from tests.support.cli_runner import run_cli
from tests.test_cert_rotation_moto import create_inventory_table

NOW = datetime(2026, 3, 1, 9, 20, tzinfo=UTC)


def test_simulate_shows_the_storm_and_the_staggered_spread() -> None:
    result = run_cli("certs", "simulate", "--devices", "5000", "--same-day", "--format", "json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["peakBound"] == 63 and report["idealPeak"] == pytest.approx(55.556, abs=1e-3)
    schemes = report["schemes"]
    assert schemes["no stagger"]["peak"] == 5000 and schemes["no stagger"]["peakToIdeal"] == 90.0
    assert schemes["staggered"]["peak"] <= 63 and schemes["staggered"]["withinBound"]
    assert schemes["plain hash"]["withinBound"] is False
    assert sum(schemes["staggered"]["perValidityDay"].values()) == 5000
    assert set(map(int, schemes["staggered"]["perValidityDay"])) == set(range(365, 455))


def test_simulate_table_and_window_option() -> None:
    result = run_cli("certs", "simulate", "--devices", "300", "--window-days", "30")
    assert result.code == 0
    assert "300 certificates issued on one day" in result.stdout
    assert "bound 12" in result.stdout  # ceil(1.1 * 300 / 30) + 1
    assert "expiry histogram with staggering" in result.stdout


def test_simulate_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "expiry.png"
    result = run_cli("certs", "simulate", "--devices", "1000", "--plot", str(target))
    assert result.code == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "0"], "error: --devices: 0; allowed: 1..10000000"),
        (["--devices", "10", "--window-days", "0"], "error: --window-days: 0; allowed: 1..365"),
        (
            ["--devices", "10", "--base-days", "3600"],
            "error: --base-days: 3600; allowed: 1..3561 with a 90-day window",
        ),
        (
            ["--devices", "ten"],
            "error: Invalid value for '--devices': 'ten' is not a valid integer",
        ),
        (
            ["--devices", "10", "--plot", "/nonexistent/dir/x.png"],
            "error: --plot: cannot write /nonexistent/dir/x.png",
        ),
    ],
)
def test_simulate_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    if "--plot" in args:
        pytest.importorskip("matplotlib")
    result = run_cli("certs", "simulate", *args)
    assert result.code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def _device(thing: str, days: float, **extra: object) -> dict[str, object]:
    return {
        "thing": thing,
        "certificateId": f"c-{thing}",
        "notAfter": (NOW + timedelta(days=days)).isoformat(),
        **extra,
    }


def test_plan_from_an_inventory_file(tmp_path: Path) -> None:
    devices = [_device(f"s{i:03d}", 20 + i % 60) for i in range(120)] + [_device("far", 300)]
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(devices))
    result = run_cli(
        "certs",
        "plan",
        "--inventory",
        str(path),
        "--now",
        NOW.isoformat(),
        "--hourly-budget",
        "50",
        "--format",
        "json",
    )
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["pending"] == 120 and plan["expiringWithin"] == {
        "30": 22,
        "60": 82,
        "90": 120,
    }  # 20..79 days, twice each
    assert list(plan["perHour"].values()) == [50, 50, 20]
    assert plan["slots"][0]["hour"] == "2026-03-01T10:00:00+00:00"
    table = run_cli(
        "certs", "plan", "--inventory", str(path), "--now", NOW.isoformat(), "--hourly-budget", "50"
    )
    assert (
        "inside 30 days, not rotated (alarm)" in table.stdout and "2026-03-01 10:00" in table.stdout
    )


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("{", "inv.json", "not valid JSON"),
        ('{"a": 1}', "inv.json", "must hold a JSON array of devices"),
        ('[{"thing": "a"}]', "inv.json", "device 1: missing certificateId, notAfter"),
        (
            '[{"thing": "a", "certificateId": "c", "notAfter": "soon"}]',
            "inv.json",
            "notAfter 'soon' is not an ISO 8601 time",
        ),
        (
            '[{"thing": "a", "certificateId": "c", "notAfter": "2026-01-01T00:00:00"}]',
            "inv.json",
            "has no time zone",
        ),
        (
            "thing,certificateId,notAfter,rotationState\na,c,2026-04-01T00:00:00+00:00,DANCING\n",
            "inv.csv",
            "rotationState 'DANCING'",
        ),
    ],
)
def test_plan_bad_inventory_file_is_exit_2(
    tmp_path: Path, content: str, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = run_cli("certs", "plan", "--inventory", str(path), "--now", NOW.isoformat())
    assert result.code == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: --table or --inventory: give exactly one source"),
        (
            ["--inventory", "x.json", "--table", "t"],
            "error: --table or --inventory: give exactly one source",
        ),
        (
            ["--inventory", "x.json", "--lead-days", "20"],
            "error: --lead-days: 20 is not allowed; allowed: an integer 30..3652",
        ),
        (
            ["--inventory", "x.json", "--now", "yesterday"],
            "error: --now: 'yesterday' is not an ISO 8601 time",
        ),
        (["--inventory", "missing.json"], "error: --inventory: missing.json: cannot read"),
    ],
)
def test_plan_bad_arguments_are_exit_2(args: list[str], message: str) -> None:
    result = run_cli("certs", "plan", *args)
    assert result.code == 2 and result.stderr.startswith(message), result.stderr


@pytest.fixture
def table() -> Iterator[Inventory]:
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        inventory = Inventory(create_inventory_table(session, "fleet-inventory"))
        for i in range(30):
            inventory.enroll(
                f"dev-{i:02d}",
                certificate_id=f"cert-{i}",
                not_after=NOW + timedelta(days=3 * i),
                now=NOW,
            )
        yield inventory


def test_export_csv_and_json_and_plan_from_the_table_agree(
    table: Inventory, tmp_path: Path
) -> None:
    csv_out = run_cli("inventory", "export", "--table", "fleet-inventory", "--region", "eu-west-1")
    assert csv_out.code == 0, csv_out.stderr
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    assert len(rows) == 30 and rows[0]["thing"] == "dev-00" and rows[0]["rotationState"] == "IDLE"
    assert set(rows[0]) >= {"thing", "certificateId", "notAfter", "expiryDay", "status", "attempts"}
    target = tmp_path / "inventory.json"
    json_out = run_cli(
        "inventory",
        "export",
        "--table",
        "fleet-inventory",
        "--region",
        "eu-west-1",
        "--format",
        "json",
        "--output",
        str(target),
    )
    assert json_out.code == 0 and "wrote 30 devices" in json_out.stderr
    common = ["--now", NOW.isoformat(), "--format", "json", "--hourly-budget", "4"]
    from_table = run_cli(
        "certs", "plan", "--table", "fleet-inventory", "--region", "eu-west-1", *common
    )
    from_file = run_cli("certs", "plan", "--inventory", str(target), *common)
    assert from_table.code == 0 and from_file.code == 0, from_table.stderr + from_file.stderr
    assert json.loads(from_table.stdout) == json.loads(from_file.stdout)
    plan = json.loads(from_table.stdout)
    # 0..87 days: all inside the 90-day lead; dev-00 expires right now and cannot rotate
    assert plan["pending"] == 29 and "dev-00" in plan["critical"]


def test_export_and_plan_report_aws_failures_as_exit_1(table: Inventory) -> None:
    result = run_cli("inventory", "export", "--table", "no-such-table", "--region", "eu-west-1")
    assert result.code == 1 and result.stderr.startswith(
        "error: DynamoDB refused the request: ResourceNotFoundException"
    )
    result = run_cli("certs", "plan", "--table", "no-such-table", "--region", "eu-west-1")
    assert result.code == 1


def test_export_needs_a_table() -> None:
    result = run_cli("inventory", "export")
    assert result.code == 2 and result.stderr.startswith("error: --table: required")
