"""`evidence pack` against an AWS account in moto (DynamoDB, S3 Object Lock, IoT, IAM, Logs)
and the stubbed Secure Tunneling API (moto has none); and once as the real console script
in a subprocess, against moto's server on loopback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.cli_runner import run_cli
from tests.support.evidence_aws import (
    FINDINGS_GROUP,
    OPERATOR_POLICY,
    pack_arguments,
    populate,
    today,
)
from tests.support.evidence_scenario import Scenario, build
from tests.support.ledger_aws import REGION, TABLE, ledger_aws
from tests.support.tunneling_stub import StubbedSecureTunneling


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def scenario() -> Scenario:
    return build(today() - timedelta(days=7), days=5)


@pytest.fixture
def account(scenario: Scenario) -> Iterator[Any]:
    with ledger_aws():
        yield populate(scenario)


def _tunnels(
    monkeypatch: pytest.MonkeyPatch, summaries: list[dict[str, Any]]
) -> StubbedSecureTunneling:
    stub = StubbedSecureTunneling()
    stub.expect_list(summaries)
    real = boto3.Session.client

    def client(self: boto3.Session, service: str, *args: Any, **kwargs: Any) -> Any:
        return (
            stub.client if service == "iotsecuretunneling" else real(self, service, *args, **kwargs)
        )

    monkeypatch.setattr(boto3.Session, "client", client)
    return stub


def _summaries(s: Scenario, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    tunnels = {**s.tunnels, **(extra or {})}
    return [
        {
            "tunnelId": tunnel,
            "tunnelArn": f"arn:aws:iot:{REGION}:123456789012:tunnel/{tunnel}",
            "status": "CLOSED",
            "createdAt": created,
            "lastUpdatedAt": created,
        }
        for tunnel, created in tunnels.items()
    ]


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_full_pack_from_aws(
    account: Any, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = _tunnels(monkeypatch, _summaries(scenario))
    out = tmp_path / "pack"
    result = run_cli(*pack_arguments(scenario, str(out)))
    assert result.code == 0, result.stderr
    assert (
        "17 session(s), 2 finding(s), 1 incident(s) (1 overdue clock(s)); ledger holds"
        in result.stdout
    )
    assert stub.count("ListTunnels") == 1

    inventory = {row["thing"]: row for row in _rows(out, "inventory")}
    assert set(inventory) == {f"sensor-{n}" for n in range(6)} | {"gateway-1"}
    assert inventory["sensor-1"]["certificateId"] == "new-sensor-1"
    assert inventory["sensor-1"]["ownerLabels"] == "owner=plant-3"
    assert (
        inventory["gateway-1"]["source"] == "registry only"
        and inventory["gateway-1"]["certificateId"]
    )
    changes = {(c["event"], c["thing"]) for c in _rows(out, "inventory-changes")}
    assert changes == {
        ("rotated", "sensor-1"),
        ("rotated", "sensor-2"),
        ("enrolled (inventory)", "sensor-5"),
    }
    policies = _rows(out, "policies")
    wide = [p for p in policies if p["name"] == "legacy-wide-open"]
    assert wide and all(p["severity"] for p in wide)
    assert any(p["name"] == "Fleet-DevicePolicy" and p["devicePolicy"] == "True" for p in policies)
    denies = [p for p in policies if p["name"] == OPERATOR_POLICY and p["ruleId"] == "deny"]
    assert denies and "iot:OpenTunnel" in denies[0]["message"]
    findings = _rows(out, "findings")
    assert {f["detection"] for f in findings} == {
        "unexpected-subscription",
        "authorization-failure",
    }
    assert all(f["source"] == FINDINGS_GROUP for f in findings)
    incident = _rows(out, "incidents")[0]
    assert incident["notificationState"] == "overdue"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ledger"]["lastSeq"] == scenario.records[-1].seq
    first = summary["ledger"]["firstSeq"]
    # Hourly anchors of a quiet hour vouch for the same record: each record counts once.
    assert summary["ledger"]["anchorsChecked"] == len(
        {a.seq for a in scenario.anchors if a.seq >= first}
    )


def test_a_tunnel_aws_lists_but_the_ledger_lacks_fails_with_exit_1(
    account: Any, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tunnels(
        monkeypatch, _summaries(scenario, {"console-tunnel": scenario.start + timedelta(days=1)})
    )
    result = run_cli(*pack_arguments(scenario, str(tmp_path / "pack")))
    assert result.code == 1
    assert "record missing from the ledger: session 'console-tunnel'" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "pack").exists()


def test_an_edited_item_in_the_table_fails_with_the_record(
    account: Any, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tunnels(monkeypatch, _summaries(scenario))
    record = scenario.records[9]
    edited = record.line().decode().replace(record.data["thing"], "sensor-x", 1)
    account.dynamodb.put_item(
        TableName=TABLE,
        Item={"ledger": {"S": "access"}, "seq": {"N": "9"}, "record": {"S": edited}},
    )
    result = run_cli(*pack_arguments(scenario, str(tmp_path / "pack")))
    assert result.code == 1
    assert (
        "broken at record 9: digest does not match the record's content (edited)" in result.stderr
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--ledger-table",
            "no-such-table",
            "ledger table 'no-such-table': cannot be read (ResourceNotFoundException)",
        ),
        (
            "--anchor-bucket",
            "no-such-bucket",
            "anchor bucket 'no-such-bucket': cannot be read (NoSuchBucket)",
        ),
        (
            "--inventory-table",
            "no-such-inventory",
            "inventory table 'no-such-inventory': cannot be read (ResourceNotFoundException)",
        ),
        (
            "--findings-log-group",
            "/no/such/group",
            "log group '/no/such/group': cannot be read (ResourceNotFoundException)",
        ),
    ],
)
def test_an_unreadable_store_is_named_with_exit_2(
    account: Any,
    scenario: Scenario,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
    message: str,
) -> None:
    _tunnels(monkeypatch, _summaries(scenario))
    arguments = pack_arguments(scenario, str(tmp_path / "pack"))
    arguments[arguments.index(option) + 1] = value
    result = run_cli(*arguments)
    assert (result.code, result.stderr.strip()) == (2, f"error: {message}")
    assert list(tmp_path.iterdir()) == []


def test_from_after_to_is_exit_2_before_any_read(tmp_path: Path) -> None:
    result = run_cli(
        "evidence",
        "pack",
        "--from",
        "2026-11-05",
        "--to",
        "2026-11-01",
        "--out",
        str(tmp_path / "p"),
        "--ledger-table",
        "t",
        "--anchor-bucket",
        "b",
        "--region",
        REGION,
    )
    assert (result.code, result.stderr.strip()) == (
        2,
        "error: --from: '2026-11-05' is not before --to '2026-11-01'; allowed: --from < --to",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--retention-days", "30"],
            "--retention-days: 30 is not allowed; allowed: a whole number",
        ),
        (["--anchor-interval-minutes", "0"], "--anchor-interval-minutes: allowed: 5 to 1440"),
        (["--from", "2026-02-30"], "--from: '2026-02-30' is not allowed; allowed: a date"),
        (["--to", "x" * 5000], "--to: '" + "x" * 36 + "... is not allowed"),
        (
            ["--from", "2026-11-01T00:00:00+25:00"],
            "--from: '2026-11-01T00:00:00+25:00' is not allowed",
        ),
    ],
)
def test_bad_options_are_one_line_with_exit_2(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    base = ["--from", "2026-11-01", "--to", "2026-11-02", "--out", str(tmp_path / "p")]
    base += ["--ledger-table", "t", "--anchor-bucket", "b", "--region", REGION]
    for option, value in zip(extra[::2], extra[1::2], strict=True):
        if option in base:
            base[base.index(option) + 1] = value
        else:
            base += [option, value]
    result = run_cli("evidence", "pack", *base)
    assert result.code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_an_existing_out_folder_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    since = (today() - timedelta(days=3)).date().isoformat()
    result = run_cli(
        "evidence",
        "pack",
        "--from",
        since,
        "--to",
        since,
        "--out",
        str(tmp_path / "p"),
        "--ledger-table",
        "t",
        "--anchor-bucket",
        "b",
        "--region",
        REGION,
    )
    assert (
        result.code == 2
        and "--out: " in result.stderr
        and "exists; allowed: a new folder" in result.stderr
    )


def test_the_console_script_writes_a_pack_against_motos_server(
    scenario: Scenario, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    from tests.support.processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        os.environ["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
        try:
            _populate_server(scenario)
        finally:
            del os.environ["AWS_ENDPOINT_URL"]
        out = tmp_path / "pack"
        script = Path(sys.executable).parent / "iot-remote-access"
        done = subprocess.run(
            [str(script), *pack_arguments(scenario, str(out)), "--no-cloud-sessions"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "17 session(s)" in done.stdout
        assert (out / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        notes = json.loads((out / "summary.json").read_text())["notes"]
        assert any("--no-cloud-sessions" in note for note in notes)
        again = subprocess.run(
            [
                str(script),
                "evidence",
                "verify",
                str(out / "ledger/chain.jsonl"),
                "--anchors",
                str(out / "ledger/anchors.jsonl"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert again.returncode == 0, again.stderr
    finally:
        server.stop()


def _populate_server(scenario: Scenario) -> None:
    from tests.support.ledger_aws import BUCKET, RETENTION_DAYS

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "ledger", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "ledger", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=True,
    )
    s3.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": RETENTION_DAYS}},
        },
    )
    populate(scenario)


def test_without_the_inventory_table_the_registry_is_the_inventory(
    account: Any, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tunnels(monkeypatch, _summaries(scenario))
    arguments = pack_arguments(scenario, str(tmp_path / "pack"))
    at = arguments.index("--inventory-table")
    del arguments[at : at + 2]
    result = run_cli(*arguments)
    assert result.code == 0, result.stderr
    rows = {row["thing"]: row for row in _rows(tmp_path / "pack", "inventory")}
    assert len(rows) == 7 and {row["source"] for row in rows.values()} == {"registry only"}
    assert rows["gateway-1"]["certificateId"] and not rows["sensor-1"]["certificateId"]
    notes = json.loads((tmp_path / "pack" / "summary.json").read_text())["notes"]
    assert any("lists the IoT registry only" in note for note in notes)
