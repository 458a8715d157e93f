"""Staggered validity: determinism, stability and the peak bound (property tests)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.stagger import (
    MemoryLedger,
    StaggerError,
    StaggerPolicy,
    assign_offset,
    cohort_of,
    peak_bound,
    place,
)

COHORT = "2026-01-05"
thing_names = st.from_regex(r"\A[a-zA-Z0-9:_-]{1,40}\Z")
fleets = st.lists(thing_names, min_size=1, max_size=600, unique=True)
windows = st.sampled_from([1, 2, 3, 7, 10, 30, 45, 89, 90, 91, 180, 365])


def _issue(names: list[str], window: int) -> tuple[dict[str, int], MemoryLedger]:
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    return {name: assign_offset(policy, ledger, COHORT, name) for name in names}, ledger


@settings(max_examples=60, deadline=None)
@given(fleets, windows)
def test_peak_bound_holds_after_every_issuance(names: list[str], window: int) -> None:
    """Every prefix of a same-day batch is itself 'N devices issued the same day'."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    loads = [0] * window
    for n, name in enumerate(names, start=1):
        offset = assign_offset(policy, ledger, COHORT, name)
        assert 0 <= offset < window
        loads[offset] += 1
        assert max(loads) <= peak_bound(n, window), (n, max(loads))
    assert loads == ledger.loads(COHORT)


@pytest.mark.parametrize("window", [30, 90, 365])
def test_peak_bound_for_every_fleet_size_up_to_6000_with_serial_names(window: int) -> None:
    """Factory batches are named by serial number: check the bound at every N from 1 to 6000."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    loads = [0] * window
    worst = 0.0
    for n in range(1, 6001):
        loads[assign_offset(policy, ledger, COHORT, f"sensor-{n:06d}")] += 1
        assert max(loads) <= peak_bound(n, window), n
        worst = max(worst, max(loads) / peak_bound(n, window))
    assert worst <= 1.0


def test_a_plain_hash_of_the_name_breaks_the_bound() -> None:
    """Why the offset is not just hash(name) % window: balls into bins pile up."""
    policy = StaggerPolicy(window_days=90)
    loads = [0] * 90
    for n in range(1, 5001):
        loads[policy.hashed_offset(f"sensor-{n:06d}")] += 1
    assert max(loads) > peak_bound(5000, 90)  # 76 > 63 with SHA-256
    _staggered, ledger = _issue([f"sensor-{n:06d}" for n in range(1, 5001)], 90)
    assert max(ledger.loads(COHORT)) <= peak_bound(5000, 90)


@settings(max_examples=40, deadline=None)
@given(fleets, windows)
def test_deterministic_replay_gives_the_same_offsets(names: list[str], window: int) -> None:
    first, _ = _issue(names, window)
    second, _ = _issue(names, window)
    assert first == second
    policy = StaggerPolicy(window_days=window)
    assert all(list(policy.probe(n)) == list(policy.probe(n)) for n in names[:20])


@settings(max_examples=40, deadline=None)
@given(fleets, st.lists(thing_names, min_size=1, max_size=200), windows, st.randoms())
def test_adding_and_removing_devices_never_moves_an_issued_date(
    names: list[str], later: list[str], window: int, rnd: random.Random
) -> None:
    """Each issuance changes exactly one day's count by one; no recorded date is recomputed."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    issued: dict[str, int] = {}
    for name in names:
        before = ledger.loads(COHORT)
        issued[name] = assign_offset(policy, ledger, COHORT, name)
        after = ledger.loads(COHORT)
        changed = [i for i in range(window) if before[i] != after[i]]
        assert changed == [issued[name]] and after[issued[name]] == before[issued[name]] + 1
    snapshot = dict(issued)
    removed = set(rnd.sample(sorted(issued), k=len(issued) // 2))
    for name in removed:
        del issued[name]  # a decommissioned device leaves the inventory, nothing else moves
    for name in later:
        if name not in snapshot:
            issued[name] = assign_offset(policy, ledger, COHORT, name)
    assert all(issued[name] == snapshot[name] for name in snapshot if name not in removed)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.integers(2, 40), windows, st.randoms())
def test_racing_issuances_stay_within_the_bound(
    devices: int, racers: int, window: int, rnd: random.Random
) -> None:
    """Signer invocations that run at once join first, then claim in any order."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    names = [f"dev-{i}" for i in range(devices)]
    for start in range(0, devices, racers):
        batch = [(name, ledger.join(COHORT)) for name in names[start : start + racers]]
        rnd.shuffle(batch)
        for name, rank in batch:
            try:
                place(policy, ledger, COHORT, name, rank)
            except StaggerError:
                assert racers >= window  # only possible when more race than the window has days
                return
        assert max(ledger.loads(COHORT)) <= peak_bound(ledger.joined(COHORT), window)


def test_cohorts_are_independent_and_keyed_by_utc_day() -> None:
    policy = StaggerPolicy()
    ledger = MemoryLedger()
    a = assign_offset(policy, ledger, "2026-01-05", "sensor-1")
    b = assign_offset(policy, ledger, "2026-01-06", "sensor-1")
    assert a == b == policy.hashed_offset("sensor-1")  # empty cohorts: first probe wins
    assert cohort_of(datetime(2026, 1, 5, 23, 30, tzinfo=UTC)) == "2026-01-05"
    assert policy.expiry_day("2026-01-05", 10) == date(2027, 1, 15)
    assert policy.validity_days(10) == 375


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_days": 0}, r"window_days: 0 is not allowed; allowed: an integer 1\.\.365"),
        ({"base_days": -3}, r"base_days: -3 is not allowed"),
        ({"base_days": 3600, "window_days": 90}, r"base_days \+ window_days: 3600 \+ 90 exceeds"),
        ({"window_days": True}, r"window_days: True is not allowed"),
    ],
)
def test_bad_policy_values_are_named(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StaggerPolicy(**kwargs)


def test_offset_outside_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"offset: 90 is outside 0\.\.89"):
        StaggerPolicy().validity_days(90)
