"""Tunnels closed by operators reach the access ledger through the tunnel-metrics function.

Real parts: moto's DynamoDB (the state table and the ledger table, shaped as the
constructs create them), the function's handler as deployed (its environment:
``LEDGER_TABLE``, ``LEDGER_OWN_CLOSERS``), CloudTrail events of the documented shape,
and the verifier ``evidence verify`` runs. DescribeTunnel is a botocore Stubber (moto has
no Secure Tunneling API); these tests never reach it (every tunnel is in the state table).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from iot_remote_access.core.ledger import parse_record
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.ledger.recording import Recorder
from iot_remote_access.lambdas.ledger.store import LedgerStore, LedgerUnavailable, LedgerWriter
from iot_remote_access.lambdas.tunnel_metrics import handler as handler_module
from iot_remote_access.lambdas.tunnel_metrics.handler import TunnelMetricsApp
from tests.support import secure_tunneling_events as ev
from tests.support.ledger_aws import TABLE as LEDGER_TABLE
from tests.support.ledger_aws import LedgerAws, ledger_aws
from tests.support.tunnel_metrics_harness import TABLE, Harness

T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
THING = "sensor-000001"
SWEEPER_ROLE = "Ref-TunnelsSweeperRole1A2B3C"
OPERATOR_ARN = f"arn:aws:sts::{ev.ACCOUNT}:assumed-role/FieldEngineer/field-engineer"


class FlakyLedgerClient:
    """moto's DynamoDB, whose next ``failures`` PutItems fail as a throttled table does."""

    def __init__(self, client: Any, failures: int) -> None:
        self._client = client
        self.failures = failures

    def query(self, **kwargs: Any) -> Any:
        return self._client.query(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}
            raise ClientError(error, "PutItem")
        return self._client.put_item(**kwargs)


@pytest.fixture
def aws() -> Iterator[tuple[Harness, LedgerAws]]:
    with ledger_aws() as ledger:
        harness = Harness()
        yield harness, ledger
        harness.tunneling_stubber.assert_no_pending_responses()


def _connect(harness: Harness, ledger_client: Any) -> None:
    """The function as the stack wires it: ledger writer and the library's own closers."""
    harness.app = TunnelMetricsApp(
        table_name=TABLE,
        dynamodb=harness.dynamodb,
        tunneling=harness.tunneling,
        access_ledger=Recorder(LedgerWriter(ledger_client, LEDGER_TABLE, sleep=lambda _: None)),
        own_closers=frozenset({ev.role_arn(SWEEPER_ROLE)}),
    )


def _records(ledger: LedgerAws) -> list[dict[str, Any]]:
    lines = list(LedgerStore(ledger.dynamodb, LEDGER_TABLE).lines())
    assert verify(lines, []).broken is None
    return [dict(parse_record(line).data) for line in lines]


def _open(harness: Harness, at: datetime) -> str:
    opened = ev.open_tunnel(at, thing=THING, lifetime_minutes=60)
    harness.invoke(opened)
    return ev.tunnel_id_of(opened)


def test_an_operator_close_is_one_ledger_record_naming_who_closed_it(
    aws: tuple[Harness, LedgerAws],
) -> None:
    harness, ledger = aws
    _connect(harness, ledger.dynamodb)
    tunnel = _open(harness, T0)
    close = ev.close_tunnel(T0 + timedelta(minutes=25), tunnel)
    invocation = harness.invoke(close)
    harness.invoke(close)  # EventBridge delivers it again: still one record

    assert _records(ledger) == [
        {
            "event": "tunnel.close",
            "decision": "closed",
            "closedBy": OPERATOR_ARN,
            "closeReason": "closed by an operator (CloseTunnel)",
            "tunnelId": tunnel,
            "thing": THING,
            "openedAt": T0.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "at": (T0 + timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "eventId": close["detail"]["eventID"],
        }
    ]
    (line,) = [log for log in invocation.logs if log.get("event") == "CloseTunnel"]
    assert line["ledger"] == {"recorded": True, "seq": 0}
    assert line["openSeconds"] == 25 * 60  # the metrics are unchanged by the ledger


def test_the_sweepers_own_close_is_left_to_the_sweeper(aws: tuple[Harness, LedgerAws]) -> None:
    harness, ledger = aws
    _connect(harness, ledger.dynamodb)
    tunnel = _open(harness, T0)
    sweep = ev.close_tunnel(T0 + timedelta(minutes=61), tunnel, role=SWEEPER_ROLE, session="sw")
    invocation = harness.invoke(sweep)
    assert _records(ledger) == []
    assert invocation.result["status"] == "counted"  # still measured


def test_a_close_the_ledger_could_not_take_fails_the_invocation_and_its_retry_records_it(
    aws: tuple[Harness, LedgerAws],
) -> None:
    harness, ledger = aws
    flaky = FlakyLedgerClient(ledger.dynamodb, failures=1)
    _connect(harness, flaky)
    tunnel = _open(harness, T0)
    close = ev.close_tunnel(T0 + timedelta(minutes=5), tunnel)

    with pytest.raises(LedgerUnavailable, match="ProvisionedThroughputExceededException"):
        harness.invoke(close)
    assert _records(ledger) == []
    retried = harness.invoke(close)  # Lambda's asynchronous retry of the same event
    again = harness.invoke(close)
    records = _records(ledger)
    assert [(r["event"], r["tunnelId"], r["closedBy"]) for r in records] == [
        ("tunnel.close", tunnel, OPERATOR_ARN)
    ]
    assert [log.get("ledger") for log in retried.logs] == [{"recorded": True, "seq": 0}]
    assert [log.get("ledger") for log in again.logs] == [None]


def test_without_a_ledger_the_function_behaves_as_before(aws: tuple[Harness, LedgerAws]) -> None:
    harness, ledger = aws  # Harness builds the app as before: no access_ledger
    tunnel = _open(harness, T0)
    invocation = harness.invoke(ev.close_tunnel(T0 + timedelta(minutes=5), tunnel))
    assert _records(ledger) == []
    assert all("ledger" not in log for log in invocation.logs)


def test_the_deployed_handler_reads_the_ledger_and_own_closers_from_its_environment(
    aws: tuple[Harness, LedgerAws], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, ledger = aws
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("LEDGER_ID", "access")
    monkeypatch.setenv("LEDGER_OWN_CLOSERS", f"{ev.role_arn('Broker')},{ev.role_arn(SWEEPER_ROLE)}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", ev.REGION)
    handler_module._app.cache_clear()
    try:
        first, second = _open(harness, T0), _open(harness, T0 + timedelta(minutes=1))
        harness.invoke(ev.close_tunnel(T0 + timedelta(minutes=9), first), entry_point=True)
        swept = ev.close_tunnel(T0 + timedelta(minutes=70), second, role=SWEEPER_ROLE)
        harness.invoke(swept, entry_point=True)
    finally:
        handler_module._app.cache_clear()
    assert [(r["tunnelId"], r["closedBy"]) for r in _records(ledger)] == [(first, OPERATOR_ARN)]


def test_the_evidence_pack_ends_the_brokers_session_at_the_operators_close(
    aws: tuple[Harness, LedgerAws],
) -> None:
    from iot_remote_access.core.evidence_fold import Fold
    from iot_remote_access.core.evidence_model import Period

    harness, ledger = aws
    _connect(harness, ledger.dynamodb)
    tunnel = _open(harness, T0)
    broker = LedgerWriter(ledger.dynamodb, LEDGER_TABLE)
    broker.append(  # what the tunnel broker appends when it opens the tunnel
        {"event": "tunnel.open", "decision": "allowed", "requester": "ana", "thing": THING,
         "service": "SSH", "minutes": 60, "reason": "INC-7 firmware", "tunnelId": tunnel,
         "at": T0.strftime("%Y-%m-%dT%H:%M:%S.000000Z")}
    )  # fmt: skip
    harness.invoke(ev.close_tunnel(T0 + timedelta(minutes=25), tunnel))
    rows: list[dict[str, Any]] = []
    fold = Fold(Period(T0, T0 + timedelta(days=1)), rows.append, rows.append, lambda _: None)
    for line in LedgerStore(ledger.dynamodb, LEDGER_TABLE).lines():
        record = parse_record(line)
        fold.add(record.seq, record.time, record.data)
    assert [
        (r["operator"], r["purpose"], r["minutes"], r["outcome"], r["endedBy"]) for r in rows
    ] == [
        ("ana", "INC-7 firmware", 25, "closed: closed by an operator (CloseTunnel)", OPERATOR_ARN)
    ]
