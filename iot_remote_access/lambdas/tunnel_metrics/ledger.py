"""The tunnel ledger on DynamoDB in about two calls per event, counting each event once.

``core.tunnel_metrics.TunnelLedger`` decides what an event means; this subclass
changes how its state is written so that the writes' own conditions make each
event count once, which is what Powertools Idempotency did with two more calls
per event (a put and an update of an idempotency record) and a deep copy of the
event per hash:

- open: one UpdateItem on the thing, conditioned on the tunnel not being in the
  day's seen set (``seen#<day>``) and returning the old image, from which the
  measurements are computed; then one write of the tunnel with that result.
  A redelivered open fails the condition (1 call; + 1 read of the stored result).
  An open the one-call update cannot apply (a thing this container has not
  written yet, a late or out-of-order event, a thing item of an earlier version)
  takes the read-then-versioned-write path of the core ledger: two concurrent
  opens both still count, as the version (and ADD) make every write see the other.
- close: one conditional UpdateItem of the tunnel (``attribute_not_exists(closedAt)``:
  a redelivered close closes nothing, 1 call) and the thing's close time.
- malformed events: no call.

So an event's effects happen at most once whatever the delivery count, which is
Idempotency's guarantee, and a redelivery returns the first delivery's result.
What Idempotency also gave and this does not: a sweep or an unresolved event
delivered twice is reported twice (gauges and a count of unusable events, not
tunnel counts).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.tunnel_metrics import (
    CLOSE_TUNNEL,
    OPEN_COUNT,
    OPEN_DURATION,
    OPEN_TUNNEL,
    OPENS_TODAY,
    RENEWAL_LOOP,
    KnownTunnel,
    Measurement,
    OpenApplied,
    Outcome,
    Report,
    TunnelClosed,
    TunnelDirectory,
    TunnelLedger,
    TunnelOpened,
    UnusableEvent,
    apply_open,
    open_duration,
    parse_event,
)
from iot_remote_access.lambdas.tunnel_metrics.aws_state import DynamoDBTunnelStore
from iot_remote_access.lambdas.tunnel_metrics.operator_closes import OperatorCloses

#: Things whose item this container has written: the one-call update is tried for
#: them; for others the read comes first (a new thing's first open is 3 calls).
KNOWN_THINGS_LIMIT = 100_000


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TwoCallLedger(TunnelLedger):
    """:class:`TunnelLedger` whose writes count each open and close once."""

    store: DynamoDBTunnelStore

    def __init__(
        self,
        store: DynamoDBTunnelStore,
        directory: TunnelDirectory,
        *,
        renewal_window: timedelta,
        operator_closes: OperatorCloses | None = None,
    ) -> None:
        super().__init__(store, directory, renewal_window=renewal_window)
        self._known: set[str] = set()
        #: Appends operators' closes to the access ledger (docs/ledger.md); None: not at all.
        self.operator_closes = operator_closes

    def process(self, event: object) -> tuple[Outcome, dict[str, Any]]:
        """The outcome (what to log and publish) and the invocation's result."""
        try:
            parsed = parse_event(event)
        except UnusableEvent as error:
            outcome = self._unresolved(error)
            return outcome, outcome.summary()
        if isinstance(parsed, TunnelOpened) and parsed.thing_name is not None:
            return self._open(parsed, parsed.thing_name)
        if isinstance(parsed, TunnelClosed):
            return self._close(parsed)
        outcome = (
            self.on_open(parsed) if isinstance(parsed, TunnelOpened) else self.sweep(parsed.at)
        )
        return outcome, outcome.summary()

    # -- opens --

    def _open(self, opened: TunnelOpened, thing: str) -> tuple[Outcome, dict[str, Any]]:
        applied = self._count(opened, thing)
        if applied is None:
            return self._replayed_open(opened, thing)
        self._remember(thing)
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
        result = {"status": "counted", **log}
        closed_at = self.store.record_open(opened, thing, result)
        if closed_at is not None:  # its close came first: the thing keeps that close time
            self.store.mark_thing_closed(thing, opened.tunnel_id, closed_at)
        measurements = [Measurement(OPEN_COUNT, 1)]
        if applied.opens_today is not None:
            measurements.append(Measurement(OPENS_TODAY, applied.opens_today))
        if applied.renewal_loop:
            measurements.append(Measurement(RENEWAL_LOOP, 1))
        return Outcome("counted", (Report(tuple(measurements), thing),), log), result

    def _count(self, opened: TunnelOpened, thing: str) -> OpenApplied | None:
        """Count the open on the thing; None if it was already counted."""
        if thing in self._known:
            status, old = self.store.count_open(thing, opened)
            if status == "duplicate":
                return None
            if status == "applied":
                state = self.store.thing_state(old)
                return apply_open(state, opened, renewal_window=self.renewal_window)
        for _ in range(self.max_save_attempts):
            state = self.store.load_thing(thing)
            applied = apply_open(state, opened, renewal_window=self.renewal_window)
            if applied.replay:
                return None
            status = self.store.save_open(thing, opened, applied, expected_version=state.version)
            if status != "conflict":
                return None if status == "duplicate" else applied
        raise RuntimeError(
            f"thing {thing!r}: state changed under {self.max_save_attempts} attempts to save it"
        )

    def _replayed_open(self, opened: TunnelOpened, thing: str) -> tuple[Outcome, dict[str, Any]]:
        log = {
            "event": OPEN_TUNNEL,
            "eventId": opened.event_id,
            "tunnelId": opened.tunnel_id,
            "thingName": thing,
        }
        first = self.store.open_result(opened.tunnel_id)
        if first is None:
            # Counted, but the invocation that counted it stopped before recording
            # the tunnel: record it now, so the sweep and the close find it.
            first = {"status": "replayed", **log}
            self.store.record_open(opened, thing, first)
        return Outcome("replayed", log=log), first

    def _remember(self, thing: str) -> None:
        if len(self._known) >= KNOWN_THINGS_LIMIT:
            self._known.clear()  # bounded memory; costs one read per thing afterwards
        self._known.add(thing)

    # -- closes --

    def _close(self, closed: TunnelClosed) -> tuple[Outcome, dict[str, Any]]:
        text = _iso(closed.closed_at)
        tunnel, old = self.store.claim_close(
            closed.tunnel_id, closed.closed_at, closed.event_id, text
        )
        source = "state"
        if tunnel is None and "closedAt" in old:
            return self._replayed_close(closed, old)
        if tunnel is None:
            source = "DescribeTunnel"
            try:
                described = self.directory.describe(closed.tunnel_id)
            except LookupError as error:
                outcome = self._unresolved(
                    UnusableEvent(
                        f"tunnel not in state and DescribeTunnel failed: {error}",
                        event_id=closed.event_id,
                        event_name=CLOSE_TUNNEL,
                        tunnel_id=closed.tunnel_id,
                    )
                )
                return outcome, outcome.summary()
            tunnel = replace(described, closed_at=closed.closed_at)
            self.store.put_described_close(tunnel, closed.event_id, text)
        if tunnel.thing_name is None:
            outcome = self._unresolved(
                UnusableEvent(
                    f"tunnel has no destination thing ({source})",
                    event_id=closed.event_id,
                    event_name=CLOSE_TUNNEL,
                    tunnel_id=closed.tunnel_id,
                )
            )
            return outcome, outcome.summary()
        self.store.mark_thing_closed(tunnel.thing_name, tunnel.tunnel_id, closed.closed_at)
        outcome = self._closed(closed.event_id, text, tunnel, closed.closed_at, source)
        if self.operator_closes is not None:
            note = self.operator_closes.record(closed, tunnel)
            if note is not None:
                outcome = replace(outcome, log={**outcome.log, "ledger": note})
        return outcome, outcome.summary()

    @staticmethod
    def _closed(
        event_id: str, text: str, tunnel: KnownTunnel, closed_at: datetime, source: str
    ) -> Outcome:
        duration = open_duration(tunnel, closed_at)
        log = {
            "event": CLOSE_TUNNEL,
            "eventId": event_id,
            "eventTime": text,
            "tunnelId": tunnel.tunnel_id,
            "thingName": tunnel.thing_name,
            "thingFrom": source,
            "openSeconds": int(duration.total_seconds()),
        }
        report = Report(
            (Measurement(OPEN_DURATION, duration.total_seconds(), "Seconds"),), tunnel.thing_name
        )
        return Outcome("counted", (report,), log)

    def _replayed_close(
        self, closed: TunnelClosed, old: dict[str, Any]
    ) -> tuple[Outcome, dict[str, Any]]:
        """The first close's result, rebuilt from what it recorded on the tunnel."""
        log: dict[str, Any] = {
            "event": CLOSE_TUNNEL,
            "eventId": closed.event_id,
            "tunnelId": closed.tunnel_id,
        }
        tunnel = DynamoDBTunnelStore._tunnel(closed.tunnel_id, old)
        first_text = old.get("closeTime", {}).get("S")
        first_event = old.get("closeEvent", {}).get("S")
        if tunnel.thing_name is None or first_text is None or first_event is None:
            return Outcome("replayed", log=log), {"status": "replayed", **log}
        first_at = datetime.fromisoformat(first_text.replace("Z", "+00:00"))
        source = old.get("closeFrom", {}).get("S", "state")
        first = self._closed(first_event, first_text, tunnel, first_at, source)
        if self.operator_closes is not None:
            # The first delivery's append failed (no ledgerSeq on the tunnel): append it now.
            note = self.operator_closes.record_replay(closed, tunnel, old)
            if note is not None:
                log = {**log, "ledger": note}
        return Outcome("replayed", log=log), first.summary()
