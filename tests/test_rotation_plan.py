"""Rotation planning: due window, hourly budget, backoff, reproducibility."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.rotation_plan import (
    InventoryRecord,
    RotationSettings,
    RotationState,
    plan_rotations,
)

NOW = datetime(2026, 3, 1, 9, 20, tzinfo=UTC)


def rec(thing: str, days: float, **kwargs: object) -> InventoryRecord:
    return InventoryRecord(thing, f"cert-{thing}", NOW + timedelta(days=days), **kwargs)  # type: ignore[arg-type]


def test_only_devices_inside_the_lead_time_are_planned() -> None:
    plan = plan_rotations([rec("a", 10), rec("b", 89), rec("c", 91), rec("d", 400)], NOW)
    assert [s.thing for s in plan.slots] == ["a", "b"]
    assert plan.expiring_within == {30: 1, 60: 1, 90: 2}
    assert plan.critical == ("a",)
    assert all(s.hour == datetime(2026, 3, 1, 10, tzinfo=UTC) for s in plan.slots)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 120), min_size=1, max_size=400),
    st.integers(1, 50),
    st.randoms(),
)
def test_no_hour_exceeds_the_budget_and_the_plan_is_reproducible(
    days: list[float], budget: int, rnd: random.Random
) -> None:
    records = [rec(f"d{i}", d) for i, d in enumerate(days)]
    config = RotationSettings(hourly_budget=budget)
    plan = plan_rotations(records, NOW, config)
    assert max(plan.per_hour().values(), default=0) <= budget
    assert {s.thing for s in plan.slots} == {
        r.thing for r in records if NOW < r.not_after <= NOW + config.lead
    }
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert plan_rotations(shuffled, NOW, config) == plan
    # Earliest expiry first: a later hour never holds a certificate expiring sooner.
    ordered = sorted(plan.slots, key=lambda s: (s.hour, s.not_after))
    assert all(
        a.not_after <= b.not_after for a, b in itertools.pairwise(ordered) if a.hour < b.hour
    )


def test_a_same_day_batch_is_spread_over_hours() -> None:
    records = [rec(f"s{i:04d}", 80) for i in range(5000)]
    plan = plan_rotations(records, NOW, RotationSettings(hourly_budget=500))
    assert len(plan.per_hour()) == 10 and set(plan.per_hour().values()) == {500}
    assert plan.late == ()


def test_failed_rotation_is_retried_with_exponential_backoff_then_reported() -> None:
    config = RotationSettings(backoff_hours=6, max_backoff_hours=48, max_attempts=3)
    failed_at = NOW - timedelta(hours=1)
    plans = {
        n: plan_rotations(
            [
                rec(
                    "x",
                    50,
                    rotation_state=RotationState.FAILED,
                    attempts=n,
                    last_attempt_at=failed_at,
                )
            ],
            NOW,
            config,
        )
        for n in (1, 2, 3, 6)
    }
    hours = {n: (p.slots[0].hour - failed_at) / timedelta(hours=1) for n, p in plans.items()}
    # failed at 08:20; retries wait 6, 12, 24 h, then the 48 h cap, and start on the next full hour
    assert {n: round(h - 2 / 3, 6) for n, h in hours.items()} == {1: 6, 2: 12, 3: 24, 6: 48}
    assert [p.slots[0].attempt for p in plans.values()] == [2, 3, 4, 7]
    assert (
        plans[2].exhausted == () and plans[3].exhausted == ("x",) and plans[6].exhausted == ("x",)
    )


def test_in_flight_rotations_wait_then_time_out_into_a_retry() -> None:
    fresh = rec(
        "a",
        40,
        rotation_state=RotationState.ISSUED,
        attempts=1,
        last_attempt_at=NOW - timedelta(hours=2),
    )
    stale = rec(
        "b",
        40,
        rotation_state=RotationState.ISSUED,
        attempts=1,
        last_attempt_at=NOW - timedelta(hours=30),
    )
    plan = plan_rotations(
        [fresh, stale], NOW, RotationSettings(attempt_timeout_hours=24, backoff_hours=6)
    )
    assert plan.in_flight == 1
    assert plan.timed_out == ("b",)
    assert [(s.thing, s.attempt) for s in plan.slots] == [("b", 2)]


def test_a_budget_too_small_for_the_due_window_is_reported_as_late() -> None:
    records = [rec(f"s{i}", 31) for i in range(100)]
    plan = plan_rotations(records, NOW, RotationSettings(hourly_budget=1))
    assert len(plan.late) > 0
    assert max(plan.per_hour().values()) == 1


def test_expired_certificates_stay_critical_but_are_not_planned() -> None:
    plan = plan_rotations([rec("gone", -2), rec("soon", 2)], NOW)
    assert plan.expired == ("gone",) and plan.critical == ("gone", "soon")
    assert [s.thing for s in plan.slots] == ["soon"]


def test_inactive_certificates_are_not_planned() -> None:
    plan = plan_rotations([rec("a", 10, status="INACTIVE")], NOW)
    assert plan.slots == () and plan.expiring_within == {30: 0, 60: 0, 90: 0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lead_days": 29}, r"lead_days: 29 is not allowed; allowed: an integer 30\.\.3652"),
        ({"hourly_budget": 0}, r"hourly_budget: 0 is not allowed"),
        (
            {"backoff_hours": 10, "max_backoff_hours": 5},
            r"max_backoff_hours: 5 is below backoff_hours 10",
        ),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RotationSettings(**kwargs)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="now: 2026-03-01T00:00:00 has no time zone"):
        plan_rotations([], datetime(2026, 3, 1))
