"""core.tunnel_metrics without AWS: event parsing, per-thing state transitions, thresholds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iot_remote_access.core.tunnel_metrics import (
    DEFAULT_LIFETIME,
    KnownTunnel,
    SweepRequested,
    ThingState,
    TunnelClosed,
    TunnelLedger,
    TunnelOpened,
    apply_open,
    is_renewal,
    max_open_hours_problem,
    max_opens_problem,
    oldest_open_per_thing,
    open_duration,
    parse_event,
    renewal_window_problem,
)
from tests.support import secure_tunneling_events as ev

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def _opened(at: datetime, tunnel_id: str = "t1", lifetime: int = 720) -> TunnelOpened:
    return TunnelOpened(
        event_id="e",
        tunnel_id=tunnel_id,
        opened_at=at,
        lifetime=timedelta(minutes=lifetime),
        thing_name="sensor-1",
    )


def test_open_event_parses_thing_tunnel_time_and_lifetime() -> None:
    event = ev.open_tunnel(T0, thing="sensor-1", tunnel_id="tun-1", lifetime_minutes=30)
    parsed = parse_event(event)
    assert parsed == TunnelOpened(
        event_id=event["detail"]["eventID"],
        tunnel_id="tun-1",
        opened_at=T0,
        lifetime=timedelta(minutes=30),
        thing_name="sensor-1",
    )
    assert parse_event(ev.open_tunnel(T0)).lifetime == DEFAULT_LIFETIME  # type: ignore[union-attr]


def test_close_and_scheduled_events_parse() -> None:
    close = ev.close_tunnel(T0, "tun-1")
    assert parse_event(close) == TunnelClosed(
        event_id=close["detail"]["eventID"],
        tunnel_id="tun-1",
        closed_at=T0,
        closed_by=f"arn:aws:sts::{ev.ACCOUNT}:assumed-role/FieldEngineer/field-engineer",
        closer_role=ev.role_arn("FieldEngineer"),
    )
    scheduled: dict[str, Any] = ev.scheduled(T0)
    assert parse_event(scheduled) == SweepRequested(event_id=scheduled["id"], at=T0)


def test_renewal_is_only_after_the_previous_end_and_within_the_window() -> None:
    assert is_renewal(timedelta(0), WINDOW)
    assert is_renewal(WINDOW, WINDOW)
    assert not is_renewal(WINDOW + timedelta(seconds=1), WINDOW)
    assert not is_renewal(timedelta(seconds=-1), WINDOW)  # previous still open: concurrent
    assert not is_renewal(None, WINDOW)


def test_replayed_open_changes_nothing() -> None:
    first = apply_open(ThingState(), _opened(T0), renewal_window=WINDOW)
    again = apply_open(first.state, _opened(T0), renewal_window=WINDOW)
    assert again.replay and again.state == first.state


def test_late_open_from_an_earlier_day_does_not_reset_todays_count() -> None:
    today = apply_open(ThingState(), _opened(T0), renewal_window=WINDOW).state
    late = apply_open(today, _opened(T0 - timedelta(days=1), "t0"), renewal_window=WINDOW)
    assert late.opens_today is None
    assert late.state.day == today.day and late.state.opens_today == 1
    assert late.state.last_tunnel_id == "t1"  # the newer tunnel stays the thing's latest


def test_close_recorded_before_the_open_is_kept_in_the_state() -> None:
    closed_at = T0 + timedelta(minutes=3)
    applied = apply_open(ThingState(), _opened(T0), renewal_window=WINDOW, closed_at=closed_at)
    assert applied.state.previous_end() == closed_at


def test_duration_is_never_negative_nor_past_expiry() -> None:
    tunnel = KnownTunnel("t", "sensor-1", opened_at=T0, expires_at=T0 + timedelta(minutes=30))
    assert open_duration(tunnel, T0 - timedelta(minutes=1)) == timedelta(0)
    assert open_duration(tunnel, T0 + timedelta(hours=5)) == timedelta(minutes=30)


def test_oldest_open_tunnel_per_thing_skips_closed_expired_and_thingless() -> None:
    now = T0 + timedelta(hours=3)
    tunnels = [
        KnownTunnel("a", "s1", T0, T0 + timedelta(hours=12)),
        KnownTunnel("b", "s1", T0 + timedelta(hours=1), T0 + timedelta(hours=12)),
        KnownTunnel("c", "s2", T0, T0 + timedelta(hours=12), closed_at=T0 + timedelta(hours=1)),
        KnownTunnel("d", "s3", T0, T0 + timedelta(hours=2)),
        KnownTunnel("e", None, T0, T0 + timedelta(hours=12)),
    ]
    assert oldest_open_per_thing(tunnels, now) == {"s1": timedelta(hours=3)}


def test_ledger_refuses_a_window_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match=r"renewal_window: 0:00:00 is not positive"):
        TunnelLedger(store=None, directory=None, renewal_window=timedelta(0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (
            max_opens_problem,
            0,
            r"^0 is not allowed; allowed: a whole number of tunnels from 1 to 1000$",
        ),
        (max_opens_problem, True, r"^True is not allowed"),
        (max_opens_problem, 2.5, r"^2\.5 is not allowed"),
        (
            renewal_window_problem,
            721,
            r"^721 is not allowed; allowed: a whole number of minutes from 1 to 720$",
        ),
        (
            max_open_hours_problem,
            12,
            r"^12 is not allowed; allowed: hours from 0\.25 to less than 12",
        ),
        (max_open_hours_problem, 0.1, r"^0\.1 is not allowed"),
    ],
)
def test_threshold_problems_name_the_value_and_what_is_allowed(
    check: Any, value: object, message: str
) -> None:
    problem = check(value)
    assert problem is not None and re.search(message, problem), problem


def test_thresholds_at_the_limits_are_allowed() -> None:
    assert max_opens_problem(1) is None and max_opens_problem(1000) is None
    assert renewal_window_problem(1) is None and renewal_window_problem(720) is None
    assert max_open_hours_problem(0.25) is None and max_open_hours_problem(11.9) is None
