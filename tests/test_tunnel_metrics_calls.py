"""Tunnel metrics in about two DynamoDB calls per event, each event counted once.

On moto (real DynamoDB semantics for conditions and update expressions): calls per
kind of event, redeliveries, and the in-memory stand-in the benchmark uses agreeing
with moto on every result and item.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from iot_remote_access.core.aws_schema import TUNNEL_STATE_TTL_ATTRIBUTE
from iot_remote_access.lambdas.tunnel_metrics.handler import TunnelMetricsApp
from tests.support import secure_tunneling_events as ev
from tests.support.dynamodb_standin import InMemoryDynamoDB
from tests.support.tunnel_metrics_harness import FakeLambdaContext, Harness

T0 = (datetime.now(UTC) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)


@pytest.fixture
def aws() -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        yield harness
        harness.tunneling_stubber.assert_no_pending_responses()


def _calls(aws: Harness, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    before = aws.dynamodb_calls.total
    result = aws.invoke(event).result
    return aws.dynamodb_calls.total - before, result


def test_calls_per_kind_of_event(aws: Harness) -> None:
    first = ev.open_tunnel(T0, thing="sensor-1")
    # A thing this container has not written yet: read, then versioned write, then the tunnel.
    assert _calls(aws, first)[0] == 3
    second = ev.open_tunnel(T0 + timedelta(hours=1), thing="sensor-1")
    assert _calls(aws, second) == (
        2,
        {
            "status": "counted",
            "event": "OpenTunnel",
            "eventId": second["detail"]["eventID"],
            "eventTime": ev.iso(T0 + timedelta(hours=1)),
            "tunnelId": ev.tunnel_id_of(second),
            "thingName": "sensor-1",
            "opensToday": 2,
            "renewalLoop": False,
            "gapSeconds": -11 * 3600,  # the first (12 h lifetime) is still open
        },
    )
    next_day = ev.open_tunnel(T0 + timedelta(days=1), thing="sensor-1")
    calls, result = _calls(aws, next_day)
    assert (calls, result["opensToday"]) == (2, 1)
    assert aws.thing_item("sensor-1")["opensToday"] == {"N": "1"}
    close = ev.close_tunnel(T0 + timedelta(hours=1, minutes=10), ev.tunnel_id_of(second))
    calls, closed = _calls(aws, close)
    assert (calls, closed["openSeconds"]) == (2, 600)
    # Redeliveries: nothing counted again, the first result returned.
    assert _calls(aws, close) == (1, closed)
    assert _calls(aws, second)[0] == 2  # the refused update, then the stored result
    malformed = ev.open_tunnel(T0)
    malformed["detail"]["responseElements"] = None
    assert _calls(aws, malformed)[0] == 0


def test_a_late_open_of_the_previous_day_keeps_todays_count(aws: Harness) -> None:
    today = ev.open_tunnel(T0 + timedelta(days=1), thing="sensor-1")
    aws.invoke(ev.open_tunnel(T0 + timedelta(days=1, hours=1), thing="sensor-1"))
    aws.invoke(today)
    late = aws.invoke(ev.open_tunnel(T0 + timedelta(hours=3), thing="sensor-1"))
    assert late.result["opensToday"] is None and late.result["status"] == "counted"
    assert aws.thing_item("sensor-1")["opensToday"] == {"N": "2"}


def test_redelivery_after_other_opens_is_still_counted_once(aws: Harness) -> None:
    first = ev.open_tunnel(T0, thing="sensor-1")
    counted = aws.invoke(first).result
    for minutes in (5, 10):
        aws.invoke(ev.open_tunnel(T0 + timedelta(minutes=minutes), thing="sensor-1"))
    again = aws.invoke(first)
    assert again.result == counted and again.emf == []
    assert aws.thing_item("sensor-1")["opensToday"] == {"N": "3"}


def _stream() -> list[dict[str, Any]]:
    """Every path: new and known things, days, renewals, duplicates, closes first, sweeps."""
    events: list[dict[str, Any]] = []
    for index in range(12):
        thing = f"sensor-{index % 4}"
        opened = ev.open_tunnel(T0 + timedelta(hours=index * 3), thing=thing)
        events.append(opened)
        events.append(
            ev.close_tunnel(T0 + timedelta(hours=index * 3, minutes=30), ev.tunnel_id_of(opened))
        )
        if index % 3 == 0:
            events += [opened, events[-1]]  # redelivered open and close
    late = ev.open_tunnel(T0 + timedelta(minutes=1), thing="sensor-0")
    events += [late, ev.scheduled(T0 + timedelta(days=2))]
    return events


def _without_ttl(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in item.items() if k != TUNNEL_STATE_TTL_ATTRIBUTE} for item in items),
        key=lambda item: json.dumps(item, sort_keys=True),
    )


def _normalised(item: dict[str, Any]) -> dict[str, Any]:
    """Sets are unordered, numbers may be written 2 or 2.0: compare their meaning."""
    out: dict[str, Any] = {}
    for name, value in item.items():
        if "SS" in value:
            out[name] = {"SS": sorted(value["SS"])}
        elif "N" in value:
            out[name] = {"N": str(int(float(value["N"])))}
        else:
            out[name] = value
    return out


def test_the_in_memory_standin_agrees_with_moto(aws: Harness) -> None:
    events = _stream()
    standin = InMemoryDynamoDB()
    app = TunnelMetricsApp(table_name="tunnel-state", dynamodb=standin, tunneling=aws.tunneling)
    for event in events:
        on_moto = aws.invoke(event).result
        on_standin = app.process(event, FakeLambdaContext())  # type: ignore[arg-type]
        assert on_standin == on_moto, event.get("detail", {}).get("eventName")
    assert sum(standin.calls.values()) == aws.dynamodb_calls.total
    moto_items = _without_ttl([_normalised(i) for i in aws.scan()])
    standin_items = _without_ttl([_normalised(i) for i in standin.items.values()])
    assert standin_items == moto_items
