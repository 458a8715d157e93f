"""Telemetry: MQTT messages -> Pub/Sub, ordered per thing, never acknowledged early.

Each thing is a lane: its messages are published with ordering key = thing, in
the order they arrived, with at most one Publish call in flight per lane (so a
failure can never reorder a thing's messages). One thread (``bridge-publisher``)
gathers every idle lane's waiting messages into one Publish request (up to
1,000 messages, after at most ``linger`` seconds), up to ``max_rpcs`` requests
at a time, and handles the results. A lane whose request failed waits
(exponential backoff with jitter) and sends the same messages again, in order.

A message is handed back (``on_done``) only when Pub/Sub confirmed it, or when
it went to the dead-letter topic (not a valid device topic, or refused by
Pub/Sub as invalid, found by sending the lane's messages one at a time): only
then is it acknowledged to the broker. Each message carries ``dedupKey``, the
same for every copy of the same MQTT message (topic and payload), so consumers
can drop copies.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.cause_log import CauseLog
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.pubsub_rpc import PB_MESSAGE, Publish, describe
from iot_remote_access.core.topics import thing_from_topic

log = logging.getLogger("iot_remote_access.bridge.telemetry")

#: Pub/Sub limits a Publish request to 1,000 messages and 10 MB.
MAX_BATCH_MESSAGES = 1000
MAX_BATCH_BYTES = 8 * 1024 * 1024
_DEAD_LANE = "\x00dead-letter"  # never a thing name


@dataclass(eq=False, slots=True)
class Inbound:
    """One message from the broker; ``received_at`` is wall-clock seconds."""

    topic: str
    payload: bytes
    qos: int
    dup: bool
    ticket: Ticket
    received_at: float = field(default_factory=time.time)
    received_mono: float = field(default_factory=time.monotonic)


@dataclass(eq=False, slots=True)
class _Entry:
    message: Inbound
    thing: str
    on_done: Callable[[], None] | None
    key: str = ""
    pb: Any = None
    dead_reason: str | None = None
    stripped: bool = False  # its payload was dropped to fit the dead-letter topic
    undeliverable: bool = False  # counted once in bridge_telemetry_undeliverable


@dataclass(eq=False, slots=True)
class _Lane:
    topic: str
    entries: deque[_Entry] = field(default_factory=deque)
    sending: int = 0  # head entries in the Publish call in flight
    retry_at: float = 0.0
    attempt: int = 0
    solo: bool = False  # a request was refused as invalid: find the bad message alone


@dataclass(eq=False, slots=True)
class _Batch:
    topic: str
    parts: list[tuple[str, _Lane, int]]
    messages: list[Any]
    size: int = 0


class _RecentKeys:
    """The last ``capacity`` de-duplication keys this replica had confirmed."""

    def __init__(self, capacity: int) -> None:
        self._order: deque[str] = deque()
        self._keys: set[str] = set()
        self._capacity = capacity

    def seen_again(self, key: str) -> bool:
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._capacity:
            self._keys.discard(self._order.popleft())
        return False


def dedup_key(topic: str, payload: bytes) -> str:
    """The ``dedupKey`` attribute: 32 hex digits of BLAKE2b over the MQTT topic and payload."""
    return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).hexdigest()


class _Clock:
    """RFC 3339 UTC with milliseconds, formatting each second's prefix once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, t: float) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


class TelemetryForwarder:
    """Publishes telemetry to ``topic_path`` and undeliverable messages to ``dead_letter_path``.

    ``is_current(ticket)`` tells whether a message's delivery still belongs to the
    live broker connection; a failed QoS 1 message of an older connection is not
    retried here, because the broker redelivers it on the new one (unless it was
    parked, i.e. already acknowledged).
    """

    def __init__(
        self,
        publish: Publish,
        *,
        topic_path: str,
        dead_letter_path: str,
        template: str,
        thing_name_pattern: str,
        metrics: BridgeMetrics,
        is_current: Callable[[Ticket], bool],
        max_inflight: int,
        max_inflight_bytes: int,
        backoff: tuple[float, float] = (0.2, 10.0),
        linger: float = 0.01,
        max_rpcs: int = 4,
        log_interval: float = 10.0,
        settle: Callable[[list[Ticket]], object] | None = None,
    ) -> None:
        self._publish = publish
        self._on_settled = settle
        self._topic = topic_path
        self._template = template
        self._pattern = re.compile(thing_name_pattern)
        self._metrics = metrics
        self._is_current = is_current
        self._max_inflight = max_inflight
        self._max_bytes = max_inflight_bytes
        self._backoff = backoff
        self._linger = linger
        self._max_rpcs = max_rpcs
        self._causes = CauseLog(log, log_interval)
        self._recent = _RecentKeys(100_000)
        self._clock = _Clock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._lanes: dict[str, _Lane] = {_DEAD_LANE: _Lane(dead_letter_path)}
        self._waiting: set[str] = set()  # lanes with messages not in a Publish call
        self._dirty_since: float | None = None  # first unsent arrival since the last send
        self._results: list[tuple[_Batch, BaseException | None]] = []
        self._next_retry: float | None = None  # the earliest backoff that ends
        self._things: dict[str, str | None] = {}  # topic -> thing, cached
        self._rpcs = 0
        self._inflight = 0
        self._inflight_bytes = 0
        self._parked = 0
        self._closed = False
        # Read at scrape time: nothing to update per message.
        metrics.inflight.set_function(lambda: self._inflight)
        metrics.parked.set_function(lambda: self._parked)
        self._thread = threading.Thread(target=self._run, name="bridge-publisher", daemon=True)
        self._thread.start()

    # -- intake (MQTT network thread) ---------------------------------------------------

    def submit(self, message: Inbound, on_done: Callable[[], None] | None = None) -> bool:
        """Take ``message``; False when a QoS 0 message is dropped for lack of room.

        Once it is delivered, ``on_done()`` runs, or without it the ``settle`` given at
        construction, once per batch with every such message's ticket.
        """
        size = len(message.payload)
        thing = self._things.get(message.topic, _DEAD_LANE)
        if thing == _DEAD_LANE:
            if len(self._things) > 100_000:
                self._things.clear()  # bounded: a flood of topics must not grow it
            thing = self._things[message.topic] = thing_from_topic(self._template, message.topic)
        entry = _Entry(message, thing or "", on_done)
        valid = thing is not None and self._pattern.fullmatch(thing) is not None
        if not valid:
            entry.dead_reason = "not-a-device-topic" if thing is None else "thing-name-pattern"
        with self._lock:
            if message.qos == 0 and (
                self._inflight >= self._max_inflight
                or self._inflight_bytes + size > self._max_bytes
            ):
                self._metrics.dropped.inc()
                return False
            self._inflight += 1
            self._inflight_bytes += size
            key = entry.thing if valid else _DEAD_LANE
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(self._topic)
            lane.entries.append(entry)
            self._waiting.add(key)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
                self._wake.notify()
        return True

    # -- state ---------------------------------------------------------------------------

    def inflight(self) -> int:
        with self._lock:
            return self._inflight

    def parked(self) -> int:
        with self._lock:
            return self._parked

    def park(self, tickets: list[Ticket], release: Callable[[Ticket], int]) -> tuple[int, int]:
        """Acknowledge ``tickets`` (``release``) before their messages are delivered; this
        forwarder keeps them and keeps retrying. Returns (parked, PUBACKs sent)."""
        parked = sent = 0
        # Under our lock, so _finish cannot settle one of them meanwhile (its count would
        # never come down). No deadlock: nothing takes our lock while holding the sequencer's.
        with self._lock:
            for ticket in tickets:
                if ticket.settled or ticket.done:
                    continue
                sent += release(ticket)
                parked += ticket.parked
            self._parked += parked
        return parked, sent

    def oldest_age(self) -> float:
        """Seconds the oldest message not yet confirmed has waited (0 when there is none)."""
        now = time.monotonic()
        with self._lock:
            oldest = min(
                (
                    lane.entries[0].message.received_mono
                    for lane in self._lanes.values()
                    if lane.entries
                ),
                default=now,
            )
        return now - oldest

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def close(self) -> None:
        """Stop publishing (after a drain, or when the process ends)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
            parked = self._parked
        if parked:
            log.error(
                "stopping with parked messages that no topic accepted: they are lost",
                extra={"parked": parked},
            )

    # -- the publisher thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if not self._cycle():
                    return
            except Exception:  # never leave the lanes without their thread
                log.exception("publisher cycle failed")
                time.sleep(0.1)

    def _cycle(self) -> bool:
        finished: list[_Entry] = []
        with self._wake:
            if self._closed:
                return False
            timeout = self._timeout(time.monotonic())
            if timeout is None or timeout > 0:
                self._wake.wait(timeout)
            now = time.monotonic()
            results, self._results = self._results, []
            for batch, error in results:
                self._apply(batch, error, now, finished)
            batches = self._collect(now, finished) if self._due(now) else []
        self._finish(finished)
        for batch in batches:
            self._start(batch)
        return True

    def _due(self, now: float) -> bool:
        if self._rpcs >= self._max_rpcs:
            return False
        if self._next_retry is not None and now >= self._next_retry:
            return True
        return self._dirty_since is not None and now - self._dirty_since >= self._linger

    def _timeout(self, now: float) -> float | None:
        if self._results:
            return 0.0
        waits = [1.0]
        if self._rpcs < self._max_rpcs:
            if self._dirty_since is not None:
                waits.append(self._dirty_since + self._linger - now)
            if self._next_retry is not None:
                waits.append(self._next_retry - now)
        return max(0.0, min(waits))

    def _collect(self, now: float, finished: list[_Entry]) -> list[_Batch]:
        """Take every idle lane's waiting messages into Publish requests (lock held).

        Lanes with a call in flight are skipped (their result wakes this thread), as
        are lanes waiting out a backoff (``_next_retry`` wakes it).
        """
        batches: list[_Batch] = []
        open_batches: dict[str, _Batch] = {}
        next_retry: float | None = None
        blocked = False
        for key in list(self._waiting):
            lane = self._lanes[key]
            if lane.sending:
                continue
            if lane.retry_at > now:
                next_retry = lane.retry_at if next_retry is None else min(next_retry, lane.retry_at)
                continue
            if lane.attempt and key != _DEAD_LANE:
                self._abandon_stale(lane, finished)
                if not lane.entries:
                    self._settle(key, lane, now)
                    continue
            batch = open_batches.get(lane.topic)
            if batch is None or batch.size >= MAX_BATCH_MESSAGES:
                if len(batches) >= self._max_rpcs - self._rpcs:
                    blocked = True  # no call left: an earlier call's result wakes us
                    break
                batch = open_batches[lane.topic] = _Batch(lane.topic, [], [])
                batches.append(batch)
            self._take(key, lane, batch)
        self._rpcs += len(batches)
        self._next_retry = next_retry
        self._dirty_since = now - self._linger if blocked else None
        return batches

    def _take(self, key: str, lane: _Lane, batch: _Batch) -> None:
        room = 1 if lane.solo else MAX_BATCH_MESSAGES - batch.size
        count = 0
        nbytes = 0
        for entry in lane.entries:
            if count >= room or (count and nbytes + len(entry.message.payload) > MAX_BATCH_BYTES):
                break
            if entry.pb is None:
                entry.pb = self._message(entry, dead=key == _DEAD_LANE)
            batch.messages.append(entry.pb)
            nbytes += len(entry.message.payload)
            count += 1
        if count:
            lane.sending = count
            batch.parts.append((key, lane, count))
            batch.size += count
        if count == len(lane.entries):
            self._waiting.discard(key)

    def _abandon_stale(self, lane: _Lane, finished: list[_Entry]) -> None:
        """A failed lane's QoS 1 messages of a dead connection: the broker sends them again."""
        keep: deque[_Entry] = deque()
        for entry in lane.entries:
            ticket = entry.message.ticket
            if entry.message.qos and not ticket.parked and not self._is_current(ticket):
                finished.append(entry)
            else:
                keep.append(entry)
        lane.entries = keep

    def _message(self, entry: _Entry, *, dead: bool) -> Any:
        m = entry.message
        if not entry.key:
            entry.key = dedup_key(m.topic, m.payload)
        attributes = {
            "mqttTopic": m.topic[:1024],
            "mqttQos": "1" if m.qos else "0",
            "receivedAt": self._clock.iso(m.received_at),
            "dedupKey": entry.key,
        }
        if entry.thing:
            attributes["thing"] = entry.thing
        if not dead:
            return PB_MESSAGE(data=m.payload, ordering_key=entry.thing, attributes=attributes)
        attributes["deadLetterReason"] = (entry.dead_reason or "rejected")[:1024]
        if entry.stripped:
            attributes["payloadDropped"] = f"{len(m.payload)} bytes"
            return PB_MESSAGE(data=b"", attributes=attributes)
        return PB_MESSAGE(data=m.payload, attributes=attributes)

    def _start(self, batch: _Batch) -> None:
        """Send ``batch`` (lock not held: a finished future runs its callback right here)."""
        try:
            future = self._publish(batch.topic, batch.messages)
        except Exception as error:
            self._done(batch, error)
            return
        future.add_done_callback(lambda f: self._done(batch, f.exception()))

    def _done(self, batch: _Batch, error: BaseException | None) -> None:
        with self._wake:
            self._results.append((batch, error))
            self._wake.notify()

    # -- results (publisher thread, lock held) ------------------------------------------------

    def _apply(
        self, batch: _Batch, error: BaseException | None, now: float, finished: list[_Entry]
    ) -> None:
        self._rpcs -= 1
        if error is None:
            published = duplicates = 0
            seen_again = self._recent.seen_again
            for key, lane, count in batch.parts:
                lane.sending = lane.attempt = 0
                lane.solo = False
                for _ in range(count):
                    entry = lane.entries.popleft()
                    finished.append(entry)
                    if key == _DEAD_LANE:
                        self._dead_lettered(entry)
                    else:
                        published += 1
                        duplicates += seen_again(entry.key)
                self._settle(key, lane, now)
            # Counted once per call, not per message: the hot path.
            self._metrics.published.inc(published)
            if duplicates:
                self._metrics.duplicates.inc(duplicates)
            return
        cause, rejected = describe(error)
        for key, lane, count in batch.parts:
            lane.sending = 0
            self._metrics.failed.inc(count)
            if rejected and batch.size > 1:
                lane.solo = True  # send them one by one to find the invalid one
            elif rejected:
                self._refused(key, lane, cause, finished)
            else:
                self._failed(key, lane, cause, now)
            self._settle(key, lane, now)

    def _dead_lettered(self, entry: _Entry) -> None:
        """The dead-letter topic confirmed ``entry``: only now is that logged."""
        reason = entry.dead_reason or "rejected"
        self._metrics.dead_lettered.labels(reason=reason.split(":")[0]).inc()
        self._causes.report(
            "telemetry sent to the dead-letter topic", reason, mqttTopic=entry.message.topic[:256]
        )

    def _refused(self, key: str, lane: _Lane, cause: str, finished: list[_Entry]) -> None:
        """Pub/Sub refused the lane's head message alone as invalid."""
        lane.solo = False
        entry = lane.entries.popleft()
        entry.pb = None
        if key != _DEAD_LANE:
            entry.dead_reason = f"rejected: {cause}"
        elif not entry.stripped:
            entry.stripped = True  # keep the evidence without the payload
        else:
            log.error(
                "the dead-letter topic refused even the bare message; dropped",
                extra={"cause": cause, "mqttTopic": entry.message.topic[:256]},
            )
            finished.append(entry)
            return
        dead = self._lanes[_DEAD_LANE]
        dead.entries.append(entry)
        self._waiting.add(_DEAD_LANE)
        self._dirty_since = self._dirty_since or time.monotonic()

    def _failed(self, key: str, lane: _Lane, cause: str, now: float) -> None:
        low, high = self._backoff
        delay = min(high, low * 2**lane.attempt) * random.uniform(0.5, 1.0)  # noqa: S311
        lane.attempt += 1
        lane.retry_at = now + delay
        if key == _DEAD_LANE:
            fresh = [e for e in lane.entries if not e.undeliverable]
            for entry in fresh:
                entry.undeliverable = True
            self._metrics.undeliverable.inc(len(fresh))
            self._causes.report(
                "dead-letter publish failed: telemetry cannot be delivered anywhere; retrying",
                cause,
                waiting=len(lane.entries),
            )
        else:
            self._causes.report(
                "telemetry publish failed; retrying each thing's messages in order", cause
            )

    def _settle(self, key: str, lane: _Lane, now: float) -> None:
        if len(lane.entries) > lane.sending:
            self._waiting.add(key)
            if self._dirty_since is None:
                self._dirty_since = now - self._linger  # they have waited already
        elif not lane.entries and key != _DEAD_LANE:
            del self._lanes[key]
            self._waiting.discard(key)

    # -- completion ----------------------------------------------------------------------------

    def _finish(self, entries: list[_Entry]) -> None:
        if not entries:
            return
        now = time.monotonic()
        observe = self._metrics.latency.observe
        with self._lock:
            for entry in entries:
                self._inflight -= 1
                self._inflight_bytes -= len(entry.message.payload)
                ticket = entry.message.ticket
                ticket.settled = True  # park() leaves it alone from now on
                if ticket.parked:
                    self._parked -= 1
            if not self._inflight:
                self._idle.notify_all()
        tickets = []
        for entry in entries:
            observe(now - entry.message.received_mono)
            if entry.on_done is not None:
                entry.on_done()
            else:
                tickets.append(entry.message.ticket)
        if tickets and self._on_settled is not None:
            self._on_settled(tickets)
