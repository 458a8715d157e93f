"""The ledger's runtime on moto: the conditional append under a race, and the anchor Lambda."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.core.ledger import Anchor, LedgerError, parse_anchor, parse_record
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.ledger.anchors import anchor_key, latest_anchor
from iot_remote_access.lambdas.ledger.store import (
    MAX_ATTEMPTS,
    LedgerStore,
    LedgerUnavailable,
    LedgerWriter,
)
from iot_remote_access.lambdas.ledger_anchor import handler as anchor_handler
from tests.support.cli_runner import CliResult, run_cli
from tests.support.ledger_aws import BUCKET, TABLE, LedgerAws, RacingClient, ledger_aws
from tests.support.ledger_chain import START, build_chain, decision
from tests.support.tunneling_stub import LambdaContext, captured_powertools_log, log_records


@pytest.fixture
def aws() -> Iterator[LedgerAws]:
    with ledger_aws() as resources:
        yield resources


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _writer(client: Any, clock: Clock | None = None, ledger_id: str = "access") -> LedgerWriter:
    return LedgerWriter(client, TABLE, ledger_id, clock=clock or Clock(), sleep=lambda _: None)


def _anchors(aws: LedgerAws) -> list[Anchor]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return [
        parse_anchor(aws.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().rstrip())
        for o in sorted(listed, key=lambda o: o["Key"])
    ]


def test_appends_form_a_chain_that_verifies(aws: LedgerAws) -> None:
    writer = _writer(aws.dynamodb)
    records = [writer.append(decision(i)) for i in range(25)]
    assert [r.seq for r in records] == list(range(25))
    assert writer.head() == records[-1]
    exported = list(writer.lines())
    assert [parse_record(line) for line in exported] == records
    assert verify(exported, []).holds
    item = aws.dynamodb.get_item(
        TableName=TABLE, Key={"ledger": {"S": "access"}, "seq": {"N": "0"}}
    )["Item"]
    # Kept for the retention (TTL), then expired by DynamoDB.
    expires = datetime.fromtimestamp(int(item["expiresAt"]["N"]), UTC)
    assert expires - START == timedelta(days=400, seconds=1)


def test_two_writers_racing_for_the_same_sequence_number_cannot_fork_the_chain(
    aws: LedgerAws,
) -> None:
    clock = Clock()
    rival = _writer(aws.dynamodb, clock)
    rival.append(decision(0))
    racing = RacingClient(aws.dynamodb, lambda: rival.append(decision(1)), races=3)
    ours = _writer(racing, clock)

    record = ours.append(decision(2))

    # Our first three puts lost (the rival took seq 1, 2, 3); the fourth re-linked to seq 3.
    assert racing.conditional_failures == 3
    assert record.seq == 4
    exported = list(ours.lines())
    assert len(exported) == 5
    result = verify(exported, [])
    assert result.holds, result.broken
    assert parse_record(exported[4]).prev == parse_record(exported[3]).hash


def test_a_writer_that_loses_every_race_gives_up_and_says_so(aws: LedgerAws) -> None:
    rival = _writer(aws.dynamodb)
    racing = RacingClient(aws.dynamodb, lambda: rival.append(decision(1)), races=MAX_ATTEMPTS)
    with pytest.raises(LedgerUnavailable, match=f"lost {MAX_ATTEMPTS} races"):
        _writer(racing).append(decision(2))
    assert verify(list(rival.lines()), []).holds


def test_a_value_the_ledger_refuses_is_the_caller_s_bug_and_nothing_is_stored(
    aws: LedgerAws,
) -> None:
    writer = _writer(aws.dynamodb)
    with pytest.raises(LedgerError, match=r"data\.hours: 1\.5 \(float\) is not allowed"):
        writer.append({"event": "tunnel.open", "hours": 1.5})
    assert writer.head() is None


def test_ledgers_with_different_ids_are_separate_chains(aws: LedgerAws) -> None:
    first, second = _writer(aws.dynamodb), _writer(aws.dynamodb, ledger_id="certificates")
    first.append(decision(0))
    assert second.append(decision(1)).seq == 0
    assert [parse_record(x).seq for x in second.lines()] == [0]


def test_a_corrupt_head_stops_the_writer_instead_of_chaining_from_it(aws: LedgerAws) -> None:
    writer = _writer(aws.dynamodb)
    writer.append(decision(0))
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key={"ledger": {"S": "access"}, "seq": {"N": "0"}},
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "record"},
        ExpressionAttributeValues={":r": {"S": '{"not":"a record"}'}},
    )
    with pytest.raises(LedgerUnavailable, match=r"head \(record 0\) is not a record"):
        writer.append(decision(1))


def test_a_store_error_is_reported_as_unavailable(aws: LedgerAws) -> None:
    writer = LedgerWriter(aws.dynamodb, "no-such-table", sleep=lambda _: None)
    with pytest.raises(
        LedgerUnavailable, match="could not read the ledger's head: ResourceNotFound"
    ):
        writer.append(decision(0))


def test_from_environment_reads_what_the_construct_sets(
    aws: LedgerAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_TABLE", TABLE)
    monkeypatch.setenv("LEDGER_ID", "access")
    monkeypatch.setenv("LEDGER_RETENTION_DAYS", "500")
    writer = LedgerWriter.from_environment(aws.dynamodb)
    assert (writer.table_name, writer.ledger_id, writer.retention.days) == (TABLE, "access", 500)
    monkeypatch.setenv("LEDGER_RETENTION_DAYS", "1e3")
    with pytest.raises(LedgerUnavailable, match="LEDGER_RETENTION_DAYS: '1e3' is not a number"):
        LedgerWriter.from_environment(aws.dynamodb)
    monkeypatch.delenv("LEDGER_TABLE")
    with pytest.raises(LedgerUnavailable, match="LEDGER_TABLE is not set"):
        LedgerWriter.from_environment(aws.dynamodb)


# -- the anchor Lambda ------------------------------------------------------------------


def _run_anchor(aws: LedgerAws, now: datetime) -> dict[str, Any]:
    store = LedgerStore(aws.dynamodb, TABLE, "access")
    return anchor_handler.anchor(store, aws.s3, BUCKET, now=now)


def test_anchor_runs_lock_the_head_and_an_auditor_verifies_against_them(aws: LedgerAws) -> None:
    writer = _writer(aws.dynamodb)
    assert _run_anchor(aws, START) == {"anchored": None}  # empty ledger: nothing to anchor
    for i in range(10):
        writer.append(decision(i))
    first = _run_anchor(aws, START + timedelta(hours=1))
    assert (first["anchored"], first["checked"]) == (9, 10)
    for i in range(10, 15):
        writer.append(decision(i))
    second = _run_anchor(aws, START + timedelta(hours=2))
    # The tail after the last anchor was checked (record 9 again, and 10..14).
    assert (second["anchored"], second["checked"]) == (14, 6)
    quiet = _run_anchor(aws, START + timedelta(hours=3))
    assert (quiet["anchored"], quiet["checked"]) == (14, 1)

    anchors = _anchors(aws)
    assert [a.seq for a in anchors] == [9, 14, 14]
    assert second["key"] == anchor_key("access", anchors[1])
    assert latest_anchor(aws.s3, BUCKET, "access", START + timedelta(hours=4)) == anchors[-1]
    result = verify(list(writer.lines()), anchors)
    assert result.holds and result.anchors_checked == 2  # two distinct anchored records

    # Compliance mode: the anchor cannot be deleted or overwritten in place.
    version = aws.s3.head_object(Bucket=BUCKET, Key=first["key"])
    assert version["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(aws.s3.exceptions.ClientError, match="AccessDenied"):
        aws.s3.delete_object(Bucket=BUCKET, Key=first["key"], VersionId=version["VersionId"])


def test_a_tail_edited_since_the_last_anchor_is_not_anchored(aws: LedgerAws) -> None:
    writer = _writer(aws.dynamodb)
    for i in range(5):
        writer.append(decision(i))
    _run_anchor(aws, START + timedelta(hours=1))
    for i in range(5, 8):
        writer.append(decision(i))
    item_key = {"ledger": {"S": "access"}, "seq": {"N": "6"}}
    line = aws.dynamodb.get_item(TableName=TABLE, Key=item_key)["Item"]["record"]["S"]
    aws.dynamodb.update_item(
        TableName=TABLE,
        Key=item_key,
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "record"},
        ExpressionAttributeValues={":r": {"S": line.replace("sensor-6", "sensor-9")}},
    )
    with (
        captured_powertools_log(anchor_handler.logger) as log,
        pytest.raises(anchor_handler.TailBroken, match="record 6: digest does not match"),
    ):
        _run_anchor(aws, START + timedelta(hours=2))
    assert [a.seq for a in _anchors(aws)] == [4]
    (error,) = [r for r in log_records(log) if r["level"] == "ERROR"]
    assert (error["seq"], error["ledger"]) == (6, "access")


def test_a_tail_truncated_below_the_last_anchor_is_reported(aws: LedgerAws) -> None:
    writer = _writer(aws.dynamodb)
    for i in range(5):
        writer.append(decision(i))
    _run_anchor(aws, START + timedelta(hours=1))
    for seq in (3, 4):
        aws.dynamodb.delete_item(
            TableName=TABLE, Key={"ledger": {"S": "access"}, "seq": {"N": str(seq)}}
        )
    with pytest.raises(
        anchor_handler.TailBroken,
        match=r"record 4: the export holds no record but .* vouches for record 4",
    ):
        _run_anchor(aws, START + timedelta(hours=2))


def test_the_handler_entry_point_reads_its_environment(
    aws: LedgerAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    _writer(aws.dynamodb).append(decision(0))
    monkeypatch.setenv(anchor_handler.TABLE_VARIABLE, TABLE)
    monkeypatch.setenv(anchor_handler.BUCKET_VARIABLE, BUCKET)
    monkeypatch.setenv("LEDGER_ID", "access")
    anchor_handler.clients.cache_clear()
    try:
        result = anchor_handler.handler({"source": "aws.events"}, LambdaContext())  # type: ignore[arg-type]
    finally:
        anchor_handler.clients.cache_clear()
    assert result["anchored"] == 0
    assert [a.seq for a in _anchors(aws)] == [0]


# -- export and verify, as an auditor runs them ------------------------------------------


def _export(out: Path, table: str = TABLE) -> CliResult:
    return run_cli(
        "evidence",
        "export",
        "--table",
        table,
        "--bucket",
        BUCKET,
        "--out",
        str(out),
        "--region",
        "eu-west-1",
    )


def test_export_then_verify_holds_and_catches_an_edit_in_the_store(
    aws: LedgerAws, tmp_path: Path
) -> None:
    writer = _writer(aws.dynamodb)
    for i in range(12):
        writer.append(decision(i))
    _run_anchor(aws, START + timedelta(hours=1))
    writer.append(decision(12))

    exported = _export(tmp_path / "ok")
    assert exported.code == 0, exported.stderr
    assert "exported 13 record(s)" in exported.stdout and "1 anchor(s)" in exported.stdout
    ok = tmp_path / "ok"
    verified = run_cli(
        "evidence", "verify", str(ok / "chain.jsonl"), "--anchors", str(ok / "anchors.jsonl")
    )
    assert verified.code == 0, verified.stderr
    assert "records 12..12 are after the last anchor" in verified.stdout

    # Someone with write access to the table edits an anchored record and re-hashes the rest.
    records = [parse_record(line) for line in writer.lines()]
    rewritten = build_chain(
        13 - 5, [{**r.data, "thing": "other"} for r in records[5:]], start=records[4]
    )
    for record in rewritten:
        aws.dynamodb.update_item(
            TableName=TABLE,
            Key={"ledger": {"S": "access"}, "seq": {"N": str(record.seq)}},
            UpdateExpression="SET #r = :r",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues={":r": {"S": record.line().decode()}},
        )
    assert _export(tmp_path / "bad").code == 0
    bad = tmp_path / "bad"
    caught = run_cli(
        "evidence", "verify", str(bad / "chain.jsonl"), "--anchors", str(bad / "anchors.jsonl")
    )
    assert caught.code == 1
    assert caught.stderr.startswith("error: chain broken at record 11: differs from the anchor of")


def test_export_refuses_a_missing_table_and_an_existing_export(
    aws: LedgerAws, tmp_path: Path
) -> None:
    missing = _export(tmp_path / "x", table="no-such-table")
    assert missing.code == 2
    assert missing.stderr == (
        "error: table 'no-such-table': cannot be read (ResourceNotFoundException)\n"
    )
    assert not (tmp_path / "x" / "chain.jsonl").exists()  # no half-written export left
    assert _export(tmp_path / "y").code == 0
    again = _export(tmp_path / "y")
    assert again.code == 2 and "chain.jsonl' exists" in again.stderr


def test_an_anchor_name_is_written_once_never_overwritten(aws: LedgerAws) -> None:
    from iot_remote_access.lambdas.ledger.anchors import AnchorExists, put_anchor

    anchor = Anchor(3, "a" * 64, "2026-12-01T09:00:00.000000Z")
    key = put_anchor(aws.s3, BUCKET, "access", anchor)
    with pytest.raises(AnchorExists, match="never overwritten"):
        put_anchor(aws.s3, BUCKET, "access", Anchor(3, "b" * 64, anchor.time))
    versions = aws.s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 1  # no second version either
