"""Stagger at the physical limit: busiest day <= ceil(N / W) + 1 (property tests up to 6,000).

The 1,000,000-device figures (time, memory, the bound at every N) are printed by
``benchmarks/stagger_limit.py``; these tests check the same bound on smaller fleets
against the rules: every prefix of a batch, stability, racing issuances.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.stagger import (
    MemoryLedger,
    StaggerError,
    StaggerPolicy,
    assign_offset,
    balanced_bound,
    peak_bound,
    place,
)

COHORT = "2026-01-05"
WINDOWS = st.sampled_from([30, 90, 365])


def _names(count: int, seed: int, serial: bool) -> list[str]:
    if serial:
        return [f"sensor-{seed}-{n:06d}" for n in range(count)]
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-"
    return list(
        dict.fromkeys("".join(rnd.choices(alphabet, k=rnd.randint(1, 40))) for _ in range(count))
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6000), WINDOWS, st.integers(0, 2**32), st.booleans())
def test_busiest_day_is_the_integer_optimum_after_every_issuance(
    devices: int, window: int, seed: int, serial: bool
) -> None:
    """Without racing the busiest day holds ceil(n / W) at every n: the +1 is for races only."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    busiest = 0
    for n, name in enumerate(_names(devices, seed, serial), start=1):
        offset = assign_offset(policy, ledger, COHORT, name)
        busiest = max(busiest, ledger.loads(COHORT)[offset])
        assert busiest <= math.ceil(n / window) <= balanced_bound(n, window) - 1, (n, busiest)
    assert balanced_bound(devices, window) <= peak_bound(devices, window)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6000), st.integers(0, 3000), WINDOWS, st.integers(0, 2**32))
def test_an_issued_day_never_moves(devices: int, later: int, window: int, seed: int) -> None:
    """Each issuance adds one to one day; issuing more (or retiring some) moves nobody."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    names = _names(devices + later, seed, serial=seed % 2 == 0)
    issued = {}
    for name in names[:devices]:
        before = ledger.loads(COHORT)
        issued[name] = assign_offset(policy, ledger, COHORT, name)
        after = ledger.loads(COHORT)
        assert [i for i in range(window) if before[i] != after[i]] == [issued[name]]
        assert after[issued[name]] == before[issued[name]] + 1
    snapshot = dict(issued)
    rnd = random.Random(seed)
    for name in rnd.sample(sorted(issued), k=len(issued) // 3):
        del issued[name]  # decommissioned: its count stays, nothing is recomputed
    for name in names[devices:]:
        issued[name] = assign_offset(policy, ledger, COHORT, name)
    assert all(issued[name] == snapshot[name] for name in snapshot if name in issued)
    # Replaying the same issuances gives the same days (the plan is reproducible).
    replay = MemoryLedger(window)
    assert all(assign_offset(policy, replay, COHORT, n) == snapshot[n] for n in names[:devices])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6000), st.integers(2, 29), WINDOWS, st.randoms(use_true_random=False))
def test_racing_issuances_stay_within_ceil_n_over_w_plus_one(
    devices: int, racers: int, window: int, rnd: random.Random
) -> None:
    """Invocations that run at once all join first, then claim in any order."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    names = [f"dev-{i}" for i in range(devices)]
    for start in range(0, devices, racers):
        batch = [(name, ledger.join(COHORT)) for name in names[start : start + racers]]
        rnd.shuffle(batch)
        for name, rank in batch:
            place(policy, ledger, COHORT, name, rank)  # racers < W: a day always has room
        joined = ledger.joined(COHORT)
        assert max(ledger.loads(COHORT)) <= math.ceil(joined / window) + 1
    assert sum(ledger.loads(COHORT)) == devices


@dataclass
class LockedLedger:
    """A thread-safe ledger: each operation atomic, as DynamoDB's conditional updates are."""

    inner: MemoryLedger
    lock: threading.Lock = field(default_factory=threading.Lock)

    def join(self, cohort: str) -> int:
        with self.lock:
            return self.inner.join(cohort)

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        with self.lock:
            return self.inner.claim(cohort, offset, limit)

    def loads(self, cohort: str, window_days: int) -> list[int]:
        """The counts read (as the DynamoDB ledger's consistent GetItem)."""
        with self.lock:
            return self.inner.loads(cohort, window_days)


def test_threads_issuing_at_once_lose_nothing_and_keep_the_bound() -> None:
    """A thread may join, stall, and claim after many later ranks: reading the counts
    lifts its stale rank, so it still finds room within the bound."""
    window, devices, threads = 30, 3000, 8
    policy = StaggerPolicy(window_days=window)
    ledger = LockedLedger(MemoryLedger(window))
    offsets: dict[str, int] = {}
    errors: list[BaseException] = []

    def issue(worker: int) -> None:
        try:
            for i in range(worker, devices, threads):
                offsets[f"dev-{i}"] = assign_offset(policy, ledger, COHORT, f"dev-{i}")
        except (StaggerError, AssertionError) as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=issue, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    loads = ledger.inner.loads(COHORT)
    assert len(offsets) == sum(loads) == devices == ledger.inner.joined(COHORT)
    assert max(loads) <= balanced_bound(devices, window)
    for offset in range(window):
        assert loads[offset] == sum(1 for o in offsets.values() if o == offset)
