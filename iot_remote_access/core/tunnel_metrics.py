"""Tunnel metrics: what AWS IoT Secure Tunneling does not publish, derived from CloudTrail.

Secure Tunneling publishes no CloudWatch metrics. Its OpenTunnel and CloseTunnel
calls are CloudTrail management events, which EventBridge delivers with
``source: aws.iotsecuredtunneling``. This module turns those events, and the
per-thing state kept between them, into measurements:

* ``TunnelOpenCount`` per thing and for the fleet, on every open;
* ``TunnelOpensToday``, per thing: its opens so far in the UTC day (CloudWatch
  alarms can look back three hours at most, so the day's count is kept here);
* ``TunnelRenewalLoop`` when a thing gets a new tunnel within the renewal window
  after its previous tunnel closed or expired;
* ``TunnelOpenDuration`` (seconds) on close;
* ``TunnelOpenAge`` (seconds, per thing, its oldest open tunnel) and
  ``TunnelsOpen`` (fleet) on every sweep, so a tunnel nobody closes is seen
  while it is still open (an expiry leaves no CloudTrail event);
* ``TunnelEventUnresolved`` for every event whose tunnel or thing cannot be
  known; it is counted and logged, never dropped.

Standard library only: the Lambda adapter supplies the store (DynamoDB) and the
directory (DescribeTunnel) through the two protocols below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from iot_remote_access.core.topics import TopicModelError, validate_thing_name

NAMESPACE = "IotRemoteAccess"
THING_DIMENSION = "ThingName"

OPEN_COUNT = "TunnelOpenCount"
OPENS_TODAY = "TunnelOpensToday"
RENEWAL_LOOP = "TunnelRenewalLoop"
OPEN_DURATION = "TunnelOpenDuration"
OPEN_AGE = "TunnelOpenAge"
TUNNELS_OPEN = "TunnelsOpen"
UNRESOLVED = "TunnelEventUnresolved"

EVENTBRIDGE_SOURCE = "aws.iotsecuredtunneling"
CLOUDTRAIL_EVENT_SOURCE = "iotsecuredtunneling.amazonaws.com"
OPEN_TUNNEL = "OpenTunnel"
CLOSE_TUNNEL = "CloseTunnel"
#: OpenTunnel's ``timeoutConfig.maxLifetimeTimeoutMinutes``: 1..720, default 720.
MAX_LIFETIME_MINUTES = 720
DEFAULT_LIFETIME = timedelta(minutes=MAX_LIFETIME_MINUTES)

# Alarm defaults, decided here once for the construct and the settings.
DEFAULT_RENEWAL_WINDOW_MINUTES = 15
DEFAULT_RENEWAL_WINDOW = timedelta(minutes=DEFAULT_RENEWAL_WINDOW_MINUTES)
DEFAULT_MAX_OPENS_PER_THING_PER_DAY = 3
DEFAULT_MAX_OPEN_HOURS = 2.0
#: The sweep's period, and so the finest an open tunnel's age is known.
SWEEP_MINUTES = 5

# The Secure Tunneling API's pattern for tunnel ids; anything else is not used
# as a DynamoDB key or written to a log.
_TUNNEL_ID_RE = re.compile(r"\A[a-zA-Z0-9_-]{1,128}\Z")

Unit = Literal["Count", "Seconds"]


class UnusableEvent(ValueError):
    """An event that cannot be attributed to a thing; ``reason`` says why.

    Carries only fields that are safe to log (never the raw event: OpenTunnel's
    response may hold access tokens).
    """

    def __init__(
        self,
        reason: str,
        *,
        event_id: str | None = None,
        event_name: str | None = None,
        tunnel_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id
        self.event_name = event_name
        self.tunnel_id = tunnel_id


# -- alarm thresholds: one rule for the construct and the settings ---------------


def max_opens_problem(value: object) -> str | None:
    """Why ``value`` cannot be the per-thing daily opens threshold (None if it can)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        return f"{value!r} is not allowed; allowed: a whole number of tunnels from 1 to 1000"
    return None


def renewal_window_problem(value: object) -> str | None:
    """Why ``value`` cannot be the renewal window in minutes (None if it can)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (1 <= value <= MAX_LIFETIME_MINUTES)
    ):
        return (
            f"{value!r} is not allowed; allowed: a whole number of minutes from 1 to "
            f"{MAX_LIFETIME_MINUTES}"
        )
    return None


def max_open_hours_problem(value: object) -> str | None:
    """Why ``value`` cannot be the longest allowed open time in hours (None if it can)."""
    lowest = SWEEP_MINUTES * 3 / 60
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (lowest <= value < MAX_LIFETIME_MINUTES / 60)
    ):
        return (
            f"{value!r} is not allowed; allowed: hours from {lowest} to less than "
            f"{MAX_LIFETIME_MINUTES // 60} (a tunnel lives at most "
            f"{MAX_LIFETIME_MINUTES // 60} hours; its age is sampled every "
            f"{SWEEP_MINUTES} minutes)"
        )
    return None


# -- events ------------------------------------------------------------------


@dataclass(frozen=True)
class TunnelOpened:
    event_id: str
    tunnel_id: str
    opened_at: datetime
    lifetime: timedelta
    #: None when the call named no destination thing (or an invalid one).
    thing_name: str | None
    thing_problem: str | None = None

    @property
    def expires_at(self) -> datetime:
        return self.opened_at + self.lifetime


@dataclass(frozen=True)
class TunnelClosed:
    event_id: str
    tunnel_id: str
    closed_at: datetime
    #: Who called CloseTunnel (CloudTrail ``userIdentity.arn``), and the role behind that
    #: session (``sessionContext.sessionIssuer.arn``): the ledger records the first and
    #: tells the library's own closers (sweeper, broker) from operators by the second.
    closed_by: str | None = None
    closer_role: str | None = None


@dataclass(frozen=True)
class SweepRequested:
    event_id: str
    at: datetime


TunnelEvent = TunnelOpened | TunnelClosed | SweepRequested


def parse_event(event: object) -> TunnelEvent:
    """The EventBridge event as one of the three kinds this module handles.

    Raises UnusableEvent naming what is missing or wrong.
    """
    if not isinstance(event, Mapping):
        raise UnusableEvent(f"event is a {type(event).__name__}, not an EventBridge event object")
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return SweepRequested(
            event_id=_text(event, "id", where="event"),
            at=_timestamp(event.get("time"), "time"),
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise UnusableEvent(
            "event has no 'detail' object (not a CloudTrail event)",
            event_id=_safe_id(event.get("id")),
        )
    event_id = _safe_id(detail.get("eventID"))
    event_name = detail.get("eventName")
    safe_name = event_name if event_name in (OPEN_TUNNEL, CLOSE_TUNNEL) else None

    def fail(reason: str, tunnel_id: str | None = None) -> UnusableEvent:
        return UnusableEvent(reason, event_id=event_id, event_name=safe_name, tunnel_id=tunnel_id)

    source = detail.get("eventSource")
    if source != CLOUDTRAIL_EVENT_SOURCE:
        raise fail(f"detail.eventSource is {_shorten(source)!r}, not {CLOUDTRAIL_EVENT_SOURCE!r}")
    if safe_name is None:
        raise fail(
            f"detail.eventName is {_shorten(event_name)!r}; handled: {OPEN_TUNNEL}, {CLOSE_TUNNEL}"
        )
    if event_id is None:
        raise fail("detail.eventID is missing or not an id")
    if detail.get("errorCode") is not None:
        raise fail(
            f"the {safe_name} call failed (errorCode {_shorten(detail.get('errorCode'))!r});"
            " no tunnel changed"
        )
    at = _timestamp(detail.get("eventTime"), "detail.eventTime", fail)
    request = detail.get("requestParameters")
    request = request if isinstance(request, Mapping) else {}

    if safe_name == CLOSE_TUNNEL:
        tunnel_id = _tunnel_id(request.get("tunnelId"), "detail.requestParameters.tunnelId", fail)
        caller, role = _caller(detail.get("userIdentity"))
        return TunnelClosed(
            event_id=event_id, tunnel_id=tunnel_id, closed_at=at, closed_by=caller, closer_role=role
        )

    response = detail.get("responseElements")
    response = response if isinstance(response, Mapping) else {}
    tunnel_id = _tunnel_id(response.get("tunnelId"), "detail.responseElements.tunnelId", fail)
    thing, problem = _destination_thing(request.get("destinationConfig"))
    return TunnelOpened(
        event_id=event_id,
        tunnel_id=tunnel_id,
        opened_at=at,
        lifetime=_lifetime(request.get("timeoutConfig")),
        thing_name=thing,
        thing_problem=problem,
    )


def _destination_thing(config: object) -> tuple[str | None, str | None]:
    if not isinstance(config, Mapping) or config.get("thingName") is None:
        return None, "OpenTunnel named no destinationConfig.thingName"
    try:
        return validate_thing_name(config["thingName"], field_name="thingName"), None
    except TopicModelError as error:
        return None, f"destinationConfig.{error}"


def _lifetime(config: object) -> timedelta:
    minutes = config.get("maxLifetimeTimeoutMinutes") if isinstance(config, Mapping) else None
    if (
        isinstance(minutes, int)
        and not isinstance(minutes, bool)
        and (1 <= minutes <= MAX_LIFETIME_MINUTES)
    ):
        return timedelta(minutes=minutes)
    return DEFAULT_LIFETIME


def _tunnel_id(value: object, where: str, fail: Any) -> str:
    if isinstance(value, str) and _TUNNEL_ID_RE.match(value):
        return value
    error: UnusableEvent = fail(f"{where} is missing or not a tunnel id")
    raise error


def _timestamp(value: object, where: str, fail: Any = None) -> datetime:
    try:
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed.astimezone(UTC)
    except ValueError:
        reason = f"{where} is {_shorten(value)!r}, not an ISO 8601 UTC time"
        raise (fail(reason) if fail else UnusableEvent(reason)) from None


def _text(mapping: Mapping[str, Any], key: str, *, where: str) -> str:
    value = _safe_id(mapping.get(key))
    if value is None:
        raise UnusableEvent(f"{where}.{key} is missing or not an id")
    return value


_ARN_RE = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:[\w+=,.@/:-]{1,400}")


def _caller(identity: object) -> tuple[str | None, str | None]:
    """CloudTrail's caller ARN and its session's issuing role ARN (None if absent or not an
    ARN: an event is never refused for who made it, it is recorded as unknown)."""
    if not isinstance(identity, Mapping):
        return None, None
    context = identity.get("sessionContext")
    issuer = context.get("sessionIssuer") if isinstance(context, Mapping) else None
    role = issuer.get("arn") if isinstance(issuer, Mapping) else None
    caller = identity.get("arn")
    return (
        caller if isinstance(caller, str) and _ARN_RE.fullmatch(caller) else None,
        role if isinstance(role, str) and _ARN_RE.fullmatch(role) else None,
    )


def _safe_id(value: object) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[a-zA-Z0-9_.:-]{1,128}", value):
        return value
    return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _shorten(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- per-thing state -----------------------------------------------------------


@dataclass(frozen=True)
class ThingState:
    """What the store keeps per thing between events.

    ``version`` is the optimistic lock: a save only succeeds over the version it
    was computed from, so two concurrent opens never lose a count.
    """

    version: int = 0
    day: str | None = None
    opens_today: int = 0
    last_tunnel_id: str | None = None
    last_opened_at: datetime | None = None
    last_expires_at: datetime | None = None
    last_closed_at: datetime | None = None

    def previous_end(self) -> datetime | None:
        """When the thing's latest tunnel closed, or else when it expires."""
        return self.last_closed_at or self.last_expires_at


@dataclass(frozen=True)
class OpenApplied:
    """The result of applying one open to a thing's state."""

    state: ThingState
    #: The thing's count for the open's UTC day; None if the open belongs to a
    #: day before the one the state already counts (a late event).
    opens_today: int | None
    #: Time from the previous tunnel's end to this open; None if unknown.
    gap: timedelta | None
    renewal_loop: bool
    #: The same tunnel was already applied (a retried invocation).
    replay: bool = False


def utc_day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def is_renewal(gap: timedelta | None, window: timedelta) -> bool:
    """A renewal loop: the previous tunnel had ended, at most ``window`` ago.

    A new tunnel while the previous one is still open (negative gap) is a second
    concurrent session, not a renewal.
    """
    return gap is not None and timedelta(0) <= gap <= window


def apply_open(
    state: ThingState,
    opened: TunnelOpened,
    *,
    renewal_window: timedelta,
    closed_at: datetime | None = None,
) -> OpenApplied:
    """The thing's next state after ``opened``; ``closed_at`` if its close came first."""
    if state.last_tunnel_id == opened.tunnel_id:
        return OpenApplied(state, state.opens_today, None, renewal_loop=False, replay=True)
    day = utc_day(opened.opened_at)
    if state.day is None or day > state.day:
        opens_today: int | None = 1
        counted = replace(state, day=day, opens_today=1)
    elif day == state.day:
        opens_today = state.opens_today + 1
        counted = replace(state, opens_today=opens_today)
    else:
        opens_today = None
        counted = state
    if state.last_opened_at is not None and opened.opened_at < state.last_opened_at:
        # Out of order: a newer tunnel is already recorded as the thing's latest.
        return OpenApplied(counted, opens_today, None, renewal_loop=False)
    end = state.previous_end()
    gap = opened.opened_at - end if end is not None else None
    latest = replace(
        counted,
        last_tunnel_id=opened.tunnel_id,
        last_opened_at=opened.opened_at,
        last_expires_at=opened.expires_at,
        last_closed_at=closed_at,
    )
    return OpenApplied(latest, opens_today, gap, renewal_loop=is_renewal(gap, renewal_window))


# -- tunnels -------------------------------------------------------------------


@dataclass(frozen=True)
class KnownTunnel:
    """A tunnel as the store (or DescribeTunnel) knows it."""

    tunnel_id: str
    thing_name: str | None
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        return self.closed_at is None and self.opened_at <= now < self.expires_at


def open_duration(tunnel: KnownTunnel, closed_at: datetime) -> timedelta:
    """How long the tunnel was open; never negative, never past its expiry."""
    end = min(closed_at, tunnel.expires_at)
    return max(end - tunnel.opened_at, timedelta(0))


def oldest_open_per_thing(tunnels: Iterable[KnownTunnel], now: datetime) -> dict[str, timedelta]:
    """Each thing's oldest open tunnel's age (the alarm cares about the worst one)."""
    ages: dict[str, timedelta] = {}
    for tunnel in tunnels:
        if tunnel.thing_name is None or not tunnel.is_open(now):
            continue
        age = now - tunnel.opened_at
        ages[tunnel.thing_name] = max(age, ages.get(tunnel.thing_name, timedelta(0)))
    return ages


# -- measurements ----------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: Unit = "Count"


@dataclass(frozen=True)
class Report:
    """One EMF record: measurements for one thing (and the fleet).

    With a thing, every measurement is published twice: with the ``ThingName``
    dimension and without any (the fleet series). Without one, fleet only.
    Records are stamped when published, not with the API call's time: CloudTrail
    delivers events minutes late, and an alarm does not look back at periods
    it has already evaluated.
    """

    measurements: tuple[Measurement, ...]
    thing_name: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one event did: the reports to publish and what to log."""

    status: Literal["counted", "unresolved", "replayed"]
    reports: tuple[Report, ...] = ()
    log: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-safe; stored by the idempotency layer as the invocation's result."""
        return {"status": self.status, **self.log}


# -- the ledger ------------------------------------------------------------------


class TunnelStore(Protocol):
    """Per-thing and per-tunnel state (DynamoDB in the Lambda)."""

    def put_open_tunnel(self, opened: TunnelOpened, thing_name: str) -> datetime | None:
        """Record the tunnel as open; if its close was recorded first, return that time."""

    def load_thing(self, thing_name: str) -> ThingState: ...

    def save_thing(self, thing_name: str, state: ThingState, *, expected_version: int) -> bool:
        """Write ``state`` with version ``expected_version + 1``; False if the version moved."""

    def close_tunnel(self, tunnel_id: str, closed_at: datetime) -> KnownTunnel | None:
        """Mark the tunnel closed and return it; None if the store never saw it open."""

    def put_closed_tunnel(self, tunnel: KnownTunnel) -> None:
        """Record a tunnel learned from DescribeTunnel, already closed."""

    def mark_thing_closed(self, thing_name: str, tunnel_id: str, closed_at: datetime) -> None:
        """Set the thing's last close time, only if ``tunnel_id`` is its latest tunnel."""

    def open_tunnels(self, now: datetime) -> list[KnownTunnel]:
        """Every tunnel recorded open and not yet expired at ``now``."""


class TunnelDirectory(Protocol):
    """Looks a tunnel up at the source (Secure Tunneling's DescribeTunnel)."""

    def describe(self, tunnel_id: str) -> KnownTunnel:
        """The tunnel; raises LookupError with a loggable reason if it cannot be had."""


class TunnelLedger:
    """Applies events to the store and says what to measure.

    :param renewal_window: Default: 15 minutes.
    :param max_save_attempts: optimistic-lock retries for one thing. Default: 5.
    """

    def __init__(
        self,
        store: TunnelStore,
        directory: TunnelDirectory,
        *,
        renewal_window: timedelta = DEFAULT_RENEWAL_WINDOW,
        max_save_attempts: int = 5,
    ) -> None:
        if renewal_window <= timedelta(0):
            raise ValueError(f"renewal_window: {renewal_window} is not positive; allowed: > 0")
        self.store = store
        self.directory = directory
        self.renewal_window = renewal_window
        self.max_save_attempts = max_save_attempts

    def handle(self, event: object) -> Outcome:
        try:
            parsed = parse_event(event)
        except UnusableEvent as error:
            return self._unresolved(error)
        if isinstance(parsed, TunnelOpened):
            return self.on_open(parsed)
        if isinstance(parsed, TunnelClosed):
            return self.on_close(parsed)
        return self.sweep(parsed.at)

    def on_open(self, opened: TunnelOpened) -> Outcome:
        if opened.thing_name is None:
            unresolved = self._unresolved(
                UnusableEvent(
                    opened.thing_problem or "no thing",
                    event_id=opened.event_id,
                    event_name=OPEN_TUNNEL,
                    tunnel_id=opened.tunnel_id,
                )
            )
            # The open still happened: the fleet total counts it.
            fleet = Report((Measurement(OPEN_COUNT, 1),))
            return replace(unresolved, reports=(fleet, *unresolved.reports))
        thing = opened.thing_name
        closed_at = self.store.put_open_tunnel(opened, thing)
        applied = self._save_open(thing, opened, closed_at)
        log = {
            "event": OPEN_TUNNEL,
            "eventId": opened.event_id,
            "eventTime": _iso(opened.opened_at),
            "tunnelId": opened.tunnel_id,
            "thingName": thing,
            "opensToday": applied.opens_today,
            "renewalLoop": applied.renewal_loop,
            "gapSeconds": None if applied.gap is None else int(applied.gap.total_seconds()),
        }
        if applied.replay:
            return Outcome("replayed", log=log)
        measurements = [Measurement(OPEN_COUNT, 1)]
        if applied.opens_today is not None:
            measurements.append(Measurement(OPENS_TODAY, applied.opens_today))
        if applied.renewal_loop:
            measurements.append(Measurement(RENEWAL_LOOP, 1))
        return Outcome("counted", (Report(tuple(measurements), thing),), log)

    def _save_open(
        self, thing: str, opened: TunnelOpened, closed_at: datetime | None
    ) -> OpenApplied:
        for _ in range(self.max_save_attempts):
            state = self.store.load_thing(thing)
            applied = apply_open(
                state, opened, renewal_window=self.renewal_window, closed_at=closed_at
            )
            if applied.replay or self.store.save_thing(
                thing, applied.state, expected_version=state.version
            ):
                return applied
        raise RuntimeError(
            f"thing {thing!r}: state changed under {self.max_save_attempts} attempts to save it"
        )

    def on_close(self, closed: TunnelClosed) -> Outcome:
        tunnel = self.store.close_tunnel(closed.tunnel_id, closed.closed_at)
        source = "state"
        if tunnel is None:
            source = "DescribeTunnel"
            try:
                described = self.directory.describe(closed.tunnel_id)
            except LookupError as error:
                return self._unresolved(
                    UnusableEvent(
                        f"tunnel not in state and DescribeTunnel failed: {error}",
                        event_id=closed.event_id,
                        event_name=CLOSE_TUNNEL,
                        tunnel_id=closed.tunnel_id,
                    )
                )
            tunnel = replace(described, closed_at=closed.closed_at)
            self.store.put_closed_tunnel(tunnel)
        if tunnel.thing_name is None:
            return self._unresolved(
                UnusableEvent(
                    f"tunnel has no destination thing ({source})",
                    event_id=closed.event_id,
                    event_name=CLOSE_TUNNEL,
                    tunnel_id=closed.tunnel_id,
                )
            )
        self.store.mark_thing_closed(tunnel.thing_name, tunnel.tunnel_id, closed.closed_at)
        duration = open_duration(tunnel, closed.closed_at)
        log = {
            "event": CLOSE_TUNNEL,
            "eventId": closed.event_id,
            "eventTime": _iso(closed.closed_at),
            "tunnelId": closed.tunnel_id,
            "thingName": tunnel.thing_name,
            "thingFrom": source,
            "openSeconds": int(duration.total_seconds()),
        }
        report = Report(
            (Measurement(OPEN_DURATION, duration.total_seconds(), "Seconds"),),
            tunnel.thing_name,
        )
        return Outcome("counted", (report,), log)

    def sweep(self, now: datetime) -> Outcome:
        open_now = [t for t in self.store.open_tunnels(now) if t.is_open(now)]
        ages = oldest_open_per_thing(open_now, now)
        reports = [Report((Measurement(TUNNELS_OPEN, len(open_now)),))]
        reports += [
            Report((Measurement(OPEN_AGE, age.total_seconds(), "Seconds"),), thing)
            for thing, age in sorted(ages.items())
        ]
        oldest = max(ages.values(), default=timedelta(0))
        log = {
            "event": "Sweep",
            "openTunnels": len(open_now),
            "things": len(ages),
            "oldestOpenSeconds": int(oldest.total_seconds()),
        }
        return Outcome("counted", tuple(reports), log)

    @staticmethod
    def _unresolved(error: UnusableEvent) -> Outcome:
        log = {
            "reason": error.reason,
            "eventId": error.event_id,
            "event": error.event_name,
            "tunnelId": error.tunnel_id,
        }
        return Outcome("unresolved", (Report((Measurement(UNRESOLVED, 1),)),), log)
