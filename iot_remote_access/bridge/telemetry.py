"""Telemetry: MQTT messages -> Pub/Sub, ordered per thing, never acknowledged early.

Each thing is a lane: its messages are published with ordering key = thing, in
the order they arrived. When a publish fails, Pub/Sub's client pauses the key
and fails everything after it; once the lane's outstanding publishes have all
resolved, the lane waits (exponential backoff with jitter), resumes the key
(``resume_publish``) and publishes every unconfirmed message again, in order.
A message is handed back (``on_done``) only when Pub/Sub confirmed it, or when
it went to the dead-letter topic (not a valid device topic, or refused by
Pub/Sub as invalid): only then is it acknowledged to the broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.core.topics import thing_from_topic

log = logging.getLogger("iot_remote_access.bridge.telemetry")

#: Errors that mean the message itself is unacceptable: retrying cannot help.
_REJECTED = (gexc.InvalidArgument, gexc.FailedPrecondition)


@dataclass(eq=False)
class Inbound:
    """One message from the broker."""

    topic: str
    payload: bytes
    qos: int
    dup: bool
    ticket: Ticket
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    received_mono: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Entry:
    message: Inbound
    thing: str
    on_done: Callable[[], None]
    dead_reason: str | None = None


@dataclass(eq=False)
class _Lane:
    entries: deque[_Entry] = field(default_factory=deque)
    outstanding: int = 0
    failing: bool = False
    #: A publish failed in Pub/Sub's client, which then pauses the key.
    needs_resume: bool = False
    resume_waits: int = 0
    attempt: int = 0
    timer: threading.Timer | None = None


class TelemetryForwarder:
    """Publishes telemetry to ``topic_path`` and undeliverable messages to ``dead_letter_path``.

    ``is_current(ticket)`` tells whether a message's delivery still belongs to the
    live broker connection; a failed QoS 1 message of an older connection is not
    retried here, because the broker redelivers it on the new one.
    """

    def __init__(
        self,
        publisher: Any,
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
    ) -> None:
        self._publisher = publisher
        self._topic = topic_path
        self._dead_letter = dead_letter_path
        self._template = template
        self._pattern = re.compile(thing_name_pattern)
        self._metrics = metrics
        self._is_current = is_current
        self._max_inflight = max_inflight
        self._max_bytes = max_inflight_bytes
        self._backoff = backoff
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._lanes: dict[str, _Lane] = {}
        self._inflight = 0
        self._inflight_bytes = 0
        self._closed = False
        # Pub/Sub's client runs a future's done-callbacks on its own threads, sometimes
        # while holding its ordering-key lock (when it cancels a failed batch). Taking
        # our lock there, while an MQTT thread holds ours and waits in publish() for
        # that key's lock, deadlocks (seen: a drain that never ended). So callbacks only
        # queue the result; one thread of ours handles results under our lock.
        self._results: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(
            target=self._handle_results, name="bridge-publish-results", daemon=True
        ).start()

    # -- intake ----------------------------------------------------------------

    def submit(self, message: Inbound, on_done: Callable[[], None]) -> bool:
        """Take ``message``; False when a QoS 0 message is dropped for lack of room."""
        size = len(message.payload)
        with self._lock:
            full = (
                self._inflight >= self._max_inflight
                or self._inflight_bytes + size > self._max_bytes
            )
            if message.qos == 0 and full:
                self._metrics.dropped.inc()
                return False
            self._inflight += 1
            self._inflight_bytes += size
            self._metrics.inflight.set(self._inflight)
        thing = thing_from_topic(self._template, message.topic)
        entry = _Entry(message, thing or "", on_done)
        if thing is None or not self._pattern.fullmatch(thing):
            self._send_dead_letter(
                entry, "not-a-device-topic" if thing is None else "thing-name-pattern"
            )
            return True
        with self._lock:
            lane = self._lanes.setdefault(thing, _Lane())
            lane.entries.append(entry)
            if not lane.failing:
                self._send(thing, lane, entry)
        return True

    def inflight(self) -> int:
        with self._lock:
            return self._inflight

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
        """Stop retrying (after a drain, or when the process ends)."""
        with self._lock:
            self._closed = True
            for lane in self._lanes.values():
                if lane.timer is not None:
                    lane.timer.cancel()

    # -- publishing --------------------------------------------------------------

    def _attributes(self, entry: _Entry) -> dict[str, str]:
        m = entry.message
        attributes = {
            "thing": entry.thing,
            "mqttTopic": m.topic,
            "mqttQos": str(m.qos),
            "receivedAt": m.received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if m.dup:
            attributes["mqttDup"] = "true"
        return attributes

    def _send(self, thing: str, lane: _Lane, entry: _Entry) -> None:
        """Publish one entry of ``lane`` (lock held, so a lane's publishes keep their order)."""
        try:
            future = self._publisher.publish(
                self._topic, entry.message.payload, ordering_key=thing, **self._attributes(entry)
            )
        except (ValueError, TypeError) as error:
            entry.dead_reason = f"rejected: {type(error).__name__}"
            self._fail(thing, lane, error)
            return
        except Exception as error:
            # Flow control refused, the key is paused, or the client is still failing
            # the previous batch ("Publish after stop() or publish error"): retry later.
            self._fail(thing, lane, error)
            return
        lane.outstanding += 1
        future.add_done_callback(
            lambda f: self._results.put(lambda: self._on_result(thing, lane, entry, f))
        )

    def _on_result(self, thing: str, lane: _Lane, entry: _Entry, future: Any) -> None:
        error = future.exception()
        finished: _Entry | None = None
        with self._lock:
            lane.outstanding -= 1
            if error is None:
                lane.attempt = 0
                if entry in lane.entries:
                    lane.entries.remove(entry)
                    finished = entry
            else:
                if isinstance(error, _REJECTED):
                    entry.dead_reason = f"rejected: {type(error).__name__}"
                lane.needs_resume = True
                self._fail(thing, lane, error)
            self._schedule_if_due(thing, lane)
            self._maybe_forget(thing, lane)
        if finished is not None:
            self._metrics.published.inc()
            self._finish(finished)

    def _fail(self, thing: str, lane: _Lane, error: BaseException) -> None:
        """Record a failure (lock held); the lane retries once nothing is outstanding."""
        self._metrics.failed.inc()
        if not lane.failing:
            log.warning(
                "publish failed; retrying the thing's messages in order",
                extra={"thing": thing, "error": type(error).__name__, "detail": str(error)[:200]},
            )
        lane.failing = True
        self._schedule_if_due(thing, lane)

    def _schedule_if_due(self, thing: str, lane: _Lane) -> None:
        if lane.failing and lane.outstanding == 0 and lane.timer is None and not self._closed:
            low, high = self._backoff
            delay = min(high, low * 2**lane.attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            lane.attempt += 1
            lane.timer = threading.Timer(delay, self._retry, args=(thing, lane))
            lane.timer.daemon = True
            lane.timer.start()

    def _retry(self, thing: str, lane: _Lane) -> None:
        """Timer thread: republish the lane; whatever happens, the lane is never left stuck."""
        try:
            self._republish(thing, lane)
        except Exception as error:
            log.exception("retry failed; trying again", extra={"thing": thing})
            with self._lock:
                lane.timer = None
                self._fail(thing, lane, error)

    def _republish(self, thing: str, lane: _Lane) -> None:
        abandoned: list[_Entry] = []
        dead: list[_Entry] = []
        with self._lock:
            lane.timer = None
            if self._closed:
                return
            if lane.needs_resume:
                try:
                    self._publisher.resume_publish(self._topic, thing)
                except RuntimeError:
                    # The client fails a batch's futures before it pauses the key; a
                    # publish in between would join the failed batch. Wait for the pause
                    # (a few times; then publishing is tried anyway and tells).
                    lane.resume_waits += 1
                    if lane.resume_waits < 20:
                        lane.attempt = 0
                        self._schedule_if_due(thing, lane)
                        return
                lane.needs_resume = False
                lane.resume_waits = 0
            lane.failing = False
            for entry in list(lane.entries):
                if entry.message.qos > 0 and not self._is_current(entry.message.ticket):
                    lane.entries.remove(entry)
                    abandoned.append(entry)
                elif entry.dead_reason is not None:
                    lane.entries.remove(entry)
                    dead.append(entry)
                elif lane.failing:
                    break  # a publish failed synchronously: keep the order, retry later
                else:
                    self._send(thing, lane, entry)
            self._schedule_if_due(thing, lane)
            self._maybe_forget(thing, lane)
        for entry in abandoned:
            # The broker redelivers it on the current connection: a duplicate, not a loss.
            self._finish(entry)
        for entry in dead:
            self._send_dead_letter(entry, entry.dead_reason or "rejected")

    def _maybe_forget(self, thing: str, lane: _Lane) -> None:
        idle = not lane.entries and not lane.failing and lane.outstanding == 0
        if idle and self._lanes.get(thing) is lane:
            del self._lanes[thing]

    # -- dead letters --------------------------------------------------------------

    def _send_dead_letter(self, entry: _Entry, reason: str, attempt: int = 0) -> None:
        attributes = {**self._attributes(entry), "deadLetterReason": reason}
        if not entry.thing:
            del attributes["thing"]
        payload = entry.message.payload
        try:
            future = self._publisher.publish(self._dead_letter, payload, **attributes)
        except (ValueError, TypeError):
            # Too large or malformed even for the dead-letter topic: keep the evidence.
            attributes["payloadDropped"] = f"{len(payload)} bytes"
            future = self._publisher.publish(self._dead_letter, b"", **attributes)
        except Exception as error:  # flow control, shutdown: try again later
            self._later(entry, reason, attempt, error)
            return

        def done(f: Any) -> None:
            error = f.exception()
            if error is None:
                self._metrics.dead_lettered.labels(reason=reason.split(":")[0]).inc()
                log.warning(
                    "telemetry sent to the dead-letter topic",
                    extra={"reason": reason, "mqttTopic": entry.message.topic[:256]},
                )
                self._finish(entry)
            else:
                self._later(entry, reason, attempt, error)

        future.add_done_callback(lambda f: self._results.put(lambda: done(f)))

    def _later(self, entry: _Entry, reason: str, attempt: int, error: BaseException) -> None:
        self._metrics.failed.inc()
        if self._closed:
            return
        low, high = self._backoff
        timer = threading.Timer(
            min(high, low * 2**attempt), self._send_dead_letter, args=(entry, reason, attempt + 1)
        )
        timer.daemon = True
        timer.start()

    # -- completion ------------------------------------------------------------------

    def _handle_results(self) -> None:
        while True:
            job = self._results.get()
            try:
                job()
            except Exception:
                log.exception("handling a publish result failed")

    def _finish(self, entry: _Entry) -> None:
        self._metrics.latency.observe(time.monotonic() - entry.message.received_mono)
        with self._lock:
            self._inflight -= 1
            self._inflight_bytes -= len(entry.message.payload)
            self._metrics.inflight.set(self._inflight)
            if not self._inflight:
                self._idle.notify_all()
        entry.on_done()
