"""Staggered certificate validity: spread the expiry days of one issuance batch.

A certificate's validity is ``base_days + offset`` with ``0 <= offset < window_days``.
The offset must be

- deterministic: the same thing name, issued into a cohort in the same state,
  always gets the same offset (the plan can be replayed from the inventory);
- stable: issuing or removing other devices never moves a date already issued;
- uniform: for N certificates issued on the same day (one *cohort*), the busiest
  expiry day holds at most ``ceil(N / window_days) + 1`` of them; ``ceil(N / window_days)``,
  the integer optimum, when issuances do not race.

No function of the thing name alone can be uniform in that sense: whatever the
function, a set of names can land on few days, and for ordinary names a good hash
behaves like throwing N balls into ``window_days`` bins. For 5,000 devices over
90 days the fullest bin then holds about 75 where 55.6 is ideal and the bound is
57 (see ``tests/test_stagger.py``). So each new certificate goes to the
least-loaded day of its window, with ties broken in an order of its own:

1. Each thing name defines its own probe order: a permutation of the window's days
   from SHA-256 of the name (double hashing with a step coprime to the window).
2. Each issuance joins its cohort (the UTC day it is issued) and learns its rank
   ``m`` in it (1 for the first certificate of the day, ...).
3. It takes the first day in its probe order holding fewer than
   ``cap(m) = ceil(m / window_days)`` certificates of the cohort.

Why that is the least-loaded day and meets the bound: when the m-th certificate
looks for a day, m - 1 are placed, and ``window_days * cap(m) >= m > m - 1`` places
exist under the cap, so a free one is always found. A day's count never exceeds
the cap of the last certificate placed on it, and caps only grow with m, so after
N issuances the busiest day holds at most ``cap(N) = ceil(N / window_days)``; and
since every day is filled to k before any gets k + 1, the days under the cap are
exactly the least-loaded ones. Issuances that race (several signer invocations at
once) may see each other's places taken; they then accept ``cap(m) + 1``, which is
the ``+ 1`` of the bound, and a ledger that can read its counts lifts a stale rank
to (certificates placed) + 1, so a stalled invocation still finds room.
Placements are recorded (in the inventory, with the certificate's not-after) and
never recomputed, which is what makes them stable: a later device only adds one
count to one day.

(An earlier version allowed ``ceil(1.1 m / window_days)``: 10 % headroom saved
claims but let the busiest day sit 10 % above the optimum. Without it a cohort
costs about ``ln(window_days)`` claims per issuance on average, each one conditional
write in the DynamoDB ledger; ``benchmarks/stagger_limit.py`` prints the figure.)

Storage is abstracted by :class:`CohortLedger`; :class:`MemoryLedger` is the
in-process one (CLI simulation, tests, benchmarks), the AWS signer keeps the
counts in DynamoDB with conditional writes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Protocol

DEFAULT_BASE_DAYS = 365
DEFAULT_WINDOW_DAYS = 90
#: Largest validity AWS IoT and ACM Private CA handle comfortably (ten years).
MAX_VALIDITY_DAYS = 3650
MAX_WINDOW_DAYS = 365


class StaggerError(RuntimeError):
    """No expiry day had room: only possible when very many issuances race."""


def balanced_bound(devices: int, window_days: int) -> int:
    """The most certificates one expiry day holds for ``devices`` issued the same day:
    ``ceil(devices / window_days)`` (the integer optimum) plus one for racing issuances."""
    return _ceil_div(devices, window_days) + 1


def peak_bound(devices: int, window_days: int) -> int:
    """The guarantee of the first version, ``ceil(1.1 * devices / window_days) + 1``.

    Still what ``certs simulate`` reports as its bound; the placement now meets the
    tighter :func:`balanced_bound`, which is never larger.
    """
    return _ceil_div(11 * devices, 10 * window_days) + 1


def ideal_peak(devices: int, window_days: int) -> float:
    """Certificates per day of a perfectly even spread."""
    return devices / window_days


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cohort_of(issued_at: datetime) -> str:
    """The cohort key of an issuance: its UTC day, ``YYYY-MM-DD``."""
    return issued_at.astimezone(UTC).date().isoformat()


@cache
def _units(window_days: int) -> tuple[int, ...]:
    # Steps coprime to the window make the probe sequence visit every day once.
    return tuple(s for s in range(1, window_days) if math.gcd(s, window_days) == 1) or (1,)


@dataclass(frozen=True)
class StaggerPolicy:
    """How validity is staggered.

    :param base_days: validity every certificate gets. Default: 365.
    :param window_days: width of the spread added on top. Default: 90.
    """

    base_days: int = DEFAULT_BASE_DAYS
    window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("base_days", self.base_days, 1, MAX_VALIDITY_DAYS),
            ("window_days", self.window_days, 1, MAX_WINDOW_DAYS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(
                    f"{name}: {value!r} is not allowed; allowed: an integer {low}..{high}"
                )
        if self.base_days + self.window_days - 1 > MAX_VALIDITY_DAYS:
            raise ValueError(
                f"base_days + window_days: {self.base_days} + {self.window_days} exceeds "
                f"{MAX_VALIDITY_DAYS} days of validity; "
                f"allowed: at most {MAX_VALIDITY_DAYS + 1} in sum"
            )

    def cap(self, rank: int) -> int:
        """Most certificates of a cohort one day may hold once ``rank`` have joined."""
        return max(1, _ceil_div(rank, self.window_days))

    def probe_start_step(self, thing: str) -> tuple[int, int]:
        """First day and step of the thing's probe order: day ``i`` is ``start + i * step``."""
        digest = hashlib.sha256(thing.encode("utf-8")).digest()
        start = int.from_bytes(digest[:8], "big") % self.window_days
        units = _units(self.window_days)
        return start, units[int.from_bytes(digest[8:16], "big") % len(units)]

    def probe(self, thing: str) -> Iterator[int]:
        """The thing's own order of the window's days (a permutation of ``range(window)``)."""
        start, step = self.probe_start_step(thing)
        for i in range(self.window_days):
            yield (start + i * step) % self.window_days

    def hashed_offset(self, thing: str) -> int:
        """The offset a plain hash of the name would give (the first day of its probe order).

        Stable and deterministic but not uniform enough; kept for comparison.
        """
        return self.probe_start_step(thing)[0]

    def validity_days(self, offset: int) -> int:
        if not 0 <= offset < self.window_days:
            raise ValueError(f"offset: {offset!r} is outside 0..{self.window_days - 1}")
        return self.base_days + offset

    def not_after(self, issued_at: datetime, offset: int) -> datetime:
        return issued_at + timedelta(days=self.validity_days(offset))

    def expiry_day(self, cohort: str, offset: int) -> date:
        return date.fromisoformat(cohort) + timedelta(days=self.validity_days(offset))


class CohortLedger(Protocol):
    """Counts of certificates per (cohort, offset day). Both operations must be atomic."""

    def join(self, cohort: str) -> int:
        """Count one more issuance in ``cohort`` and return its 1-based rank."""
        ...

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        """Add one to the day ``offset`` of ``cohort`` if it holds fewer than ``limit``."""
        ...

    # Optional: ``loads(cohort, window_days) -> list[int]``, the counts per day (may
    # be stale, never ahead); ``place`` then claims only days with room in it.


@dataclass
class MemoryLedger:
    """An in-process ledger (CLI simulation, tests, benchmarks)."""

    window_days: int = DEFAULT_WINDOW_DAYS
    _joined: dict[str, int] = field(default_factory=dict)
    _loads: dict[str, list[int]] = field(default_factory=dict)

    def join(self, cohort: str) -> int:
        self._joined[cohort] = self._joined.get(cohort, 0) + 1
        return self._joined[cohort]

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        loads = self._loads.get(cohort)
        if loads is None:
            loads = self._loads[cohort] = [0] * self.window_days
        if loads[offset] >= limit:
            return False
        loads[offset] += 1
        return True

    def loads(self, cohort: str, window_days: int | None = None) -> list[int]:
        """Certificates per offset day in ``cohort`` (a copy; ``window_days`` as the
        DynamoDB ledger's, for ``place``: this ledger knows its window)."""
        return list(self._loads.get(cohort, [0] * self.window_days))

    def joined(self, cohort: str) -> int:
        return self._joined.get(cohort, 0)


#: Fresh reads of the counts before giving up when claims keep losing races.
_SNAPSHOT_ROUNDS = 3


def place(policy: StaggerPolicy, ledger: CohortLedger, cohort: str, thing: str, rank: int) -> int:
    """Claim the first day of ``thing``'s probe order with room under the cap of ``rank``.

    The first day is claimed blind. If it is full and the ledger can read its counts
    (``loads(cohort, window_days)``, one read), the probe then skips the days already
    at the cap, so about one more claim is made instead of ``ln(window_days)``. Counts
    only grow, so a day full in the read is full: the skip never misses room, and the
    claim itself stays the conditional check. The read also catches a stale rank (an
    invocation that joined, then stalled while others placed): with P placed, the
    rank is at least P + 1, which keeps both the bound and the room.
    """
    limit = policy.cap(rank)
    start, step = policy.probe_start_step(thing)
    if ledger.claim(cohort, start, limit):
        return start
    read = getattr(ledger, "loads", None)
    offset: int | None = None
    if not callable(read):
        offset = _probe(policy, ledger, cohort, (start, step), limit, None)
    else:
        for _ in range(_SNAPSHOT_ROUNDS):
            snapshot = list(read(cohort, policy.window_days))
            limit = max(limit, policy.cap(sum(snapshot) + 1))
            offset = _probe(policy, ledger, cohort, (start, step), limit, snapshot)
            if offset is not None:
                break
    if offset is not None:
        return offset
    raise StaggerError(
        f"cohort {cohort}: no expiry day has room for {thing!r} (rank {rank}, cap {limit + 1}); "
        "too many issuances raced; retry"
    )


def _probe(
    policy: StaggerPolicy,
    ledger: CohortLedger,
    cohort: str,
    start_step: tuple[int, int],
    limit: int,
    snapshot: list[int] | None,
) -> int | None:
    """The first day in probe order that takes a claim under ``limit``, else ``limit + 1``."""
    window = policy.window_days
    start, step = start_step
    claim = ledger.claim
    for allowance in (limit, limit + 1):
        offset = start
        for _ in range(window):  # the probe order, inline: the planner's hot path
            if (snapshot is None or snapshot[offset] < allowance) and claim(
                cohort, offset, allowance
            ):
                return offset
            offset = (offset + step) % window
    return None


def assign_offset(policy: StaggerPolicy, ledger: CohortLedger, cohort: str, thing: str) -> int:
    """Join ``cohort`` and place ``thing`` in it; returns the offset in days.

    Callers record the result with the certificate (its not-after) and never call
    this twice for one issuance: a retry reuses the recorded offset.
    """
    return place(policy, ledger, cohort, thing, ledger.join(cohort))


@dataclass(frozen=True)
class Placement:
    """The staggered validity of one issuance (what every cloud's signer asks its CA for)."""

    cohort: str
    offset: int
    validity_days: int
    #: Claimed by this call: the caller records (cohort, offset) before issuing, so
    #: that a retry of the same issuance reuses it instead of claiming a second day.
    fresh: bool

    @property
    def lifetime(self) -> timedelta:
        return timedelta(days=self.validity_days)


def issuance_placement(
    policy: StaggerPolicy,
    ledger: CohortLedger,
    thing: str,
    now: datetime,
    recorded: tuple[object, object] | None = None,
) -> Placement:
    """The validity for ``thing`` issued at ``now``: the AWS signer's and the GCP rotation
    service's one code path.

    :param recorded: the (cohort, offset) the inventory holds from an earlier attempt of
        this issuance; reused when its cohort is today's (never a second claim), else a
        new place is claimed with :func:`assign_offset`.
    """
    cohort = cohort_of(now)
    if recorded is not None and recorded[0] == cohort and recorded[1] is not None:
        offset = int(str(recorded[1]))
        return Placement(cohort, offset, policy.validity_days(offset), fresh=False)
    offset = assign_offset(policy, ledger, cohort, thing)
    return Placement(cohort, offset, policy.validity_days(offset), fresh=True)


def expiry_histogram(days: list[date]) -> dict[date, int]:
    """Certificates per expiry day, in day order."""
    counts: dict[date, int] = {}
    for day in sorted(days):
        counts[day] = counts.get(day, 0) + 1
    return counts


@dataclass(frozen=True)
class SimulationResult:
    """Expiry-day counts of one batch under three schemes (what ``certs simulate`` shows)."""

    devices: int
    policy: StaggerPolicy
    #: Certificates per validity day (``base_days + offset``), per scheme.
    unstaggered: dict[int, int]
    hashed: dict[int, int]
    staggered: dict[int, int]

    @property
    def ideal(self) -> float:
        return ideal_peak(self.devices, self.policy.window_days)

    @property
    def bound(self) -> int:
        return peak_bound(self.devices, self.policy.window_days)


#: ``simulate`` reports progress after each block of this many devices.
PROGRESS_BLOCK = 100_000


def simulate(
    devices: int,
    policy: StaggerPolicy,
    names: Iterator[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Issue ``devices`` certificates on one day: no stagger, plain hash, bounded-load stagger.

    Gives exactly what ``hashed_offset`` and ``assign_offset`` with a
    :class:`MemoryLedger` give, one name after the other (a test holds it to
    that), in one SHA-256 per name instead of two and without generators: ten
    million devices (the CLI's maximum) in well under a minute. ``progress`` is
    called with the count done after every ``PROGRESS_BLOCK`` devices.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices: {devices!r}; allowed: a positive integer")
    width = max(6, len(str(devices)))
    names = names or (f"device-{i:0{width}d}" for i in range(devices))
    window = policy.window_days
    units = _units(window)
    loads = [0] * window
    hashed = [0] * window
    staggered = [0] * window
    sha256 = hashlib.sha256
    done = 0
    for rank, name in enumerate(itertools.islice(names, devices), start=1):
        digest = sha256(name.encode("utf-8")).digest()
        start = int.from_bytes(digest[:8], "big") % window
        step = units[int.from_bytes(digest[8:16], "big") % len(units)]
        hashed[start] += 1
        staggered[_claim(loads, start, step, policy.cap(rank), name, rank)] += 1
        done = rank
        if progress is not None and rank % PROGRESS_BLOCK == 0:
            progress(rank)
    if progress is not None:
        progress(done)
    base = policy.base_days
    return SimulationResult(
        devices,
        policy,
        {base: devices},
        {base + offset: n for offset, n in enumerate(hashed) if n},
        {base + offset: n for offset, n in enumerate(staggered) if n},
    )


def _claim(loads: list[int], start: int, step: int, limit: int, thing: str, rank: int) -> int:
    """``place`` on an in-process ledger: the first day of the probe order under the cap."""
    window = len(loads)
    for allowance in (limit, limit + 1):
        offset = start
        for _ in range(window):
            if loads[offset] < allowance:
                loads[offset] += 1
                return offset
            offset = (offset + step) % window
    raise StaggerError(f"simulation: no expiry day has room for {thing!r} (rank {rank})")
