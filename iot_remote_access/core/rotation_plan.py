"""Rotation planning: which devices rotate when, from the inventory alone.

Every device whose certificate expires within the lead time (default 90 days,
never under 30) gets a rotation slot: an hour in which it is told to rotate. No
hour holds more than the hourly budget; the certificates closest to expiry go
first. A rotation that failed (or timed out: no CSR or no confirmation within the
attempt timeout) is retried after an exponential backoff; after ``max_attempts``
it is still retried at the longest backoff, and reported as exhausted so that an
alarm fires: a device that never confirms keeps its old certificate, it is never
locked out.

The plan is a pure function of the inventory records, the time and the settings:
the same inventory gives the same plan in any order (that is what lets the daily
planner recompute it instead of storing it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

DEFAULT_LEAD_DAYS = 90
MIN_LEAD_DAYS = 30
#: Device Defender's DEVICE_CERTIFICATE_EXPIRING_CHECK threshold allows 30..3652 days.
MAX_LEAD_DAYS = 3652
DEFAULT_HOURLY_BUDGET = 500
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_HOURS = 6
DEFAULT_MAX_BACKOFF_HOURS = 96
DEFAULT_ATTEMPT_TIMEOUT_HOURS = 24
DEFAULT_GRACE_DAYS = 7
#: The expiry windows reported as metrics.
EXPIRY_WINDOWS_DAYS = (30, 60, 90)

HOUR = timedelta(hours=1)


class RotationState(StrEnum):
    """Where a device's rotation stands (stored in the inventory)."""

    IDLE = "IDLE"  # nothing under way (after a confirmed rotation, or never rotated)
    SCHEDULED = "SCHEDULED"  # has a slot; the dispatcher has not told the device yet
    REQUESTED = "REQUESTED"  # the device was told to rotate; waiting for its CSR
    ISSUING = "ISSUING"  # the signer is issuing (guards against a duplicate CSR)
    ISSUED = "ISSUED"  # new certificate sent; waiting for the device's confirmation
    FAILED = "FAILED"  # the last attempt failed or timed out; retried after backoff


IN_FLIGHT = frozenset({RotationState.REQUESTED, RotationState.ISSUING, RotationState.ISSUED})


@dataclass(frozen=True, slots=True)
class InventoryRecord:
    """One device in the inventory: its current certificate and rotation state."""

    thing: str
    certificate_id: str
    not_after: datetime
    status: str = "ACTIVE"
    rotation_state: RotationState = RotationState.IDLE
    attempts: int = 0
    last_attempt_at: datetime | None = None
    last_rotation_at: datetime | None = None


@dataclass(frozen=True)
class RotationSettings:
    """Planning parameters; defaults decided here.

    :param lead_days: rotate certificates expiring within this many days. Default: 90 (>= 30).
    :param hourly_budget: most rotations started in one hour. Default: 500.
    :param max_attempts: attempts before a device is reported as exhausted. Default: 5.
    :param backoff_hours: wait after the first failure; doubles per failure. Default: 6.
    :param max_backoff_hours: longest wait between attempts. Default: 96.
    :param attempt_timeout_hours: an attempt without confirmation by then has failed. Default: 24.
    :param grace_days: days an old certificate stays (INACTIVE) before deletion. Default: 7.
    """

    lead_days: int = DEFAULT_LEAD_DAYS
    hourly_budget: int = DEFAULT_HOURLY_BUDGET
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_hours: int = DEFAULT_BACKOFF_HOURS
    max_backoff_hours: int = DEFAULT_MAX_BACKOFF_HOURS
    attempt_timeout_hours: int = DEFAULT_ATTEMPT_TIMEOUT_HOURS
    grace_days: int = DEFAULT_GRACE_DAYS

    def __post_init__(self) -> None:
        limits = {
            "lead_days": (MIN_LEAD_DAYS, MAX_LEAD_DAYS),
            "hourly_budget": (1, 1_000_000),
            "max_attempts": (1, 100),
            "backoff_hours": (1, 24 * 30),
            "max_backoff_hours": (1, 24 * 30),
            "attempt_timeout_hours": (1, 24 * 14),
            "grace_days": (0, 365),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(
                    f"{name}: {value!r} is not allowed; allowed: an integer {low}..{high}"
                )
        if self.max_backoff_hours < self.backoff_hours:
            raise ValueError(
                f"max_backoff_hours: {self.max_backoff_hours} is below backoff_hours "
                f"{self.backoff_hours}; allowed: at least backoff_hours"
            )

    @property
    def lead(self) -> timedelta:
        return timedelta(days=self.lead_days)

    def backoff(self, failures: int) -> timedelta:
        """Wait before the next attempt after ``failures`` failed attempts."""
        if failures <= 0:
            return timedelta(0)
        hours = self.backoff_hours * 2 ** min(failures - 1, 30)
        return timedelta(hours=min(hours, self.max_backoff_hours))


@dataclass(frozen=True, slots=True)
class Slot:
    """One planned rotation start."""

    thing: str
    hour: datetime  # start of the UTC hour in which the device is told to rotate
    not_after: datetime
    attempt: int  # 1 for the first attempt


@dataclass(frozen=True)
class RotationPlan:
    """The schedule and the counts the planner reports as metrics."""

    generated_at: datetime
    slots: tuple[Slot, ...]
    #: In-flight attempts past their timeout: marked FAILED, their pending certificate removed.
    timed_out: tuple[str, ...] = ()
    #: Devices with ``max_attempts`` or more failed attempts (still retried; alarmed).
    exhausted: tuple[str, ...] = ()
    #: Slots that start less than 30 days before expiry: the budget is too small.
    late: tuple[str, ...] = ()
    #: Rotations under way (told to rotate, issuing, or waiting for confirmation).
    in_flight: int = 0
    #: Certificates expiring within 30/60/90 days (whatever their rotation state).
    expiring_within: dict[int, int] = field(default_factory=dict)
    #: Certificates inside 30 days of expiry (or expired) whose rotation has not succeeded.
    critical: tuple[str, ...] = ()
    #: Certificates already expired: the device cannot connect to rotate; not planned.
    expired: tuple[str, ...] = ()

    def per_hour(self) -> Counter[datetime]:
        return Counter(slot.hour for slot in self.slots)

    def starting_before(self, until: datetime) -> tuple[Slot, ...]:
        return tuple(slot for slot in self.slots if slot.hour < until)

    @property
    def pending(self) -> int:
        return len(self.slots)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment.astimezone(UTC) else floored + HOUR


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(
            f"{name}: {moment.isoformat()} has no time zone; allowed: an aware datetime"
        )
    return moment


def plan_rotations(
    records: Iterable[InventoryRecord], now: datetime, settings: RotationSettings | None = None
) -> RotationPlan:
    """Plan every due rotation, starting with the next full hour after ``now``."""
    settings = settings or RotationSettings()
    now = _aware(now, "now").astimezone(UTC)
    due_before = now + settings.lead
    first_hour = ceil_hour(now)
    timeout = timedelta(hours=settings.attempt_timeout_hours)
    windows = {days: now + timedelta(days=days) for days in EXPIRY_WINDOWS_DAYS}
    expiring = dict.fromkeys(EXPIRY_WINDOWS_DAYS, 0)

    # (not_after, thing, earliest hour, attempt): sorting tuples keeps memory low at 1M records.
    candidates: list[tuple[datetime, str, datetime, int]] = []
    timed_out: list[str] = []
    exhausted: list[str] = []
    critical: list[str] = []
    expired: list[str] = []
    in_flight = 0
    for record in records:
        not_after = _aware(record.not_after, f"{record.thing}.not_after")
        if record.status != "ACTIVE":
            continue
        for days, limit in windows.items():
            if not_after <= limit:
                expiring[days] += 1
        if not_after > due_before:
            continue
        if not_after <= windows[30]:
            critical.append(record.thing)
        if not_after <= now:
            expired.append(record.thing)
            continue
        state = record.rotation_state
        failures = record.attempts
        if state in IN_FLIGHT:
            started = record.last_attempt_at or now
            if started + timeout > now:
                in_flight += 1
                continue
            timed_out.append(record.thing)
            state = RotationState.FAILED
        if state is RotationState.FAILED:
            if failures >= settings.max_attempts:
                exhausted.append(record.thing)
            retry_at = (record.last_attempt_at or now) + settings.backoff(failures)
            earliest = max(first_hour, ceil_hour(retry_at))
        else:
            earliest = first_hour
        candidates.append((not_after, record.thing, earliest, failures + 1))

    candidates.sort()
    slots = _fill(candidates, first_hour, settings.hourly_budget)
    late_limit = timedelta(days=MIN_LEAD_DAYS)
    late = tuple(s.thing for s in slots if s.not_after - s.hour < late_limit)
    return RotationPlan(
        generated_at=now,
        slots=tuple(sorted(slots, key=lambda s: (s.hour, s.thing))),
        timed_out=tuple(sorted(timed_out)),
        exhausted=tuple(sorted(exhausted)),
        late=tuple(sorted(late)),
        in_flight=in_flight,
        expiring_within=expiring,
        critical=tuple(sorted(critical)),
        expired=tuple(sorted(expired)),
    )


def _fill(
    candidates: list[tuple[datetime, str, datetime, int]], first_hour: datetime, budget: int
) -> list[Slot]:
    """Greedy: each device (earliest expiry first) takes the first hour with room.

    ``next_free`` is a union-find over hour indexes (path halving), so a full hour
    is skipped in near-constant time even when a million devices are planned.
    """
    used: dict[int, int] = {}
    next_free: dict[int, int] = {}

    def find(index: int) -> int:
        while index in next_free:
            parent = next_free[index]
            grand = next_free.get(parent)
            if grand is not None:
                next_free[index] = grand
            index = parent
        return index

    slots: list[Slot] = []
    for not_after, thing, earliest, attempt in candidates:
        index = find((earliest - first_hour) // HOUR)
        used[index] = used.get(index, 0) + 1
        if used[index] >= budget:
            next_free[index] = index + 1
        slots.append(Slot(thing, first_hour + index * HOUR, not_after, attempt))
    return slots
