"""The tunnel sweeper Lambda against a STUBBED Secure Tunneling API (moto has none)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iot_remote_access.core.tunnel_rules import TunnelPolicy, format_time
from iot_remote_access.lambdas.tunnel_sweeper import handler as sweeper
from tests.support.tunneling_stub import (
    OPERATOR_ARN,
    LambdaContext,
    StubbedSecureTunneling,
    captured_powertools_log,
    described,
    log_records,
    summary,
)


@pytest.fixture
def tunneling(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedSecureTunneling]:
    stub = StubbedSecureTunneling()
    monkeypatch.setattr(sweeper, "_tunneling", stub.client)
    monkeypatch.delenv(sweeper.POLICY_VARIABLE, raising=False)
    yield stub


def _audits(log: Any) -> list[dict[str, Any]]:
    return [r["audit"] for r in log_records(log) if "audit" in r]


def test_closes_expired_and_never_connected_tunnels_and_records_each_close(
    tunneling: StubbedSecureTunneling,
) -> None:
    now = datetime.now(UTC)
    tunnels = {
        # past the broker's expiry tag, even though the operator is connected
        "expired": described(
            "expired",
            created=now - timedelta(minutes=31),
            minutes=30,
            source="CONNECTED",
            expires_at=format_time(now - timedelta(minutes=1)),
        ),
        # the operator never connected within 15 minutes
        "unused": described("unused", thing="sensor-2", created=now - timedelta(minutes=16)),
        # connected and within its lifetime: stays
        "in-use": described(
            "in-use",
            created=now - timedelta(minutes=20),
            source="CONNECTED",
            expires_at=format_time(now + timedelta(minutes=40)),
        ),
        # just opened, the operator is still typing: stays
        "fresh": described("fresh", created=now - timedelta(minutes=3)),
    }
    # Two pages, as ListTunnels pages; closed tunnels are skipped without a DescribeTunnel.
    tunneling.expect_list(
        [summary("expired"), summary("unused"), summary("gone", status="CLOSED")],
        next_token="page-2",
    )
    tunneling.expect_list([summary("in-use"), summary("fresh")], given_token="page-2")
    for tunnel_id in ("expired", "unused", "in-use", "fresh"):
        tunneling.expect_describe(tunnels[tunnel_id])
        if tunnel_id in ("expired", "unused"):
            tunneling.expect_close(tunnel_id)

    with captured_powertools_log(sweeper.logger) as log:
        result = sweeper.handler({"source": "aws.events"}, LambdaContext())

    assert result == {"checked": 4, "closed": ["expired", "unused"]}
    tunneling.stubber.assert_no_pending_responses()
    assert tunneling.sent("CloseTunnel") == [
        {"tunnelId": "expired", "delete": False},
        {"tunnelId": "unused", "delete": False},
    ]
    audits = _audits(log)
    assert [(a["tunnelId"], a["closeReason"]) for a in audits] == [
        ("expired", "lifetime-exceeded"),
        ("unused", "source-not-connected"),
    ]
    assert audits[1] == {
        "event": "tunnel.close",
        "decision": "closed",
        "closedBy": "sweeper",
        "closeReason": "source-not-connected",
        "tunnelId": "unused",
        "thing": "sensor-2",
        "requester": OPERATOR_ARN,
        "openedAt": audits[1]["openedAt"],
        "at": audits[1]["at"],
    }


def test_deployment_limits_apply_to_tunnels_opened_around_the_broker(
    tunneling: StubbedSecureTunneling, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        sweeper.POLICY_VARIABLE,
        TunnelPolicy(
            max_lifetime_minutes=120, default_lifetime_minutes=60, connect_grace_minutes=5
        ).to_json(),
    )
    now = datetime.now(UTC)
    console = described(
        "console", created=now - timedelta(minutes=125), minutes=720, source="CONNECTED"
    )
    del console["tags"]  # no broker tags: opened in the console by an administrator
    tunneling.expect_list([summary("console")])
    tunneling.expect_describe(console)
    tunneling.expect_close("console")
    with captured_powertools_log(sweeper.logger) as log:
        assert sweeper.handler({}, LambdaContext())["closed"] == ["console"]
    (audit,) = _audits(log)
    assert audit["closeReason"] == "lifetime-exceeded"
    assert "requester" not in audit


def test_one_failure_does_not_stop_the_sweep_and_fails_the_run(
    tunneling: StubbedSecureTunneling,
) -> None:
    now = datetime.now(UTC)
    tunneling.expect_list([summary("a"), summary("b")])
    tunneling.expect_describe(described("a", created=now - timedelta(minutes=30)))
    tunneling.expect_error("close_tunnel", "ThrottlingException", 429)
    tunneling.expect_describe(described("b", created=now - timedelta(minutes=30)))
    tunneling.expect_close("b")
    with (
        captured_powertools_log(sweeper.logger) as log,
        pytest.raises(sweeper.SweepFailed, match=r"could not sweep 1 tunnel\(s\): a"),
    ):
        sweeper.handler({}, LambdaContext())
    tunneling.stubber.assert_no_pending_responses()
    assert [a["tunnelId"] for a in _audits(log)] == ["b"]
    (error,) = [r for r in log_records(log) if r["level"] == "ERROR"]
    assert (error["tunnelId"], error["error"]) == ("a", "ThrottlingException")


def test_nothing_to_sweep(tunneling: StubbedSecureTunneling) -> None:
    tunneling.expect_list([])
    assert sweeper.handler({}, LambdaContext()) == {"checked": 0, "closed": []}
    assert tunneling.count("CloseTunnel") == 0


def test_a_tunnel_deleted_since_listing_is_skipped(tunneling: StubbedSecureTunneling) -> None:
    now = datetime.now(UTC)
    tunneling.expect_list([summary("deleted"), summary("stale")])
    tunneling.expect_error("describe_tunnel", "ResourceNotFoundException", 404)
    tunneling.expect_describe(described("stale", created=now - timedelta(minutes=20)))
    tunneling.expect_close("stale")
    assert sweeper.handler({}, LambdaContext()) == {"checked": 2, "closed": ["stale"]}
