"""The Teleport session writer on Google Cloud: Pub/Sub (the audit sink's topic) -> the chain.

Pulls the Cloud Logging entries the sink of ``gcp.accessProxy.auditSinkDestination``
publishes (one ``LogEntry`` JSON per message), maps each with
``core.teleport_sessions.SessionMapper`` and appends the session records to the
``ObjectChain`` in the anchor bucket; anchors the chain every ``anchor_every``.

At least once, never lost: a message is acknowledged only after its record is stored
(or it is not a session event, or it is not a log entry at all: logged and counted,
never retried forever). When the ledger cannot be written, nothing of the batch after
the failure is acknowledged; Pub/Sub redelivers it after the ack deadline. A
redelivered entry already appended is recognised by its ``insertId`` (kept for the
last 100,000 entries), so it is not appended twice by the same writer.

Synchronous pull in batches, sorted by the entries' timestamps, so an access request
is normally seen before the sessions under it (Pub/Sub does not keep order).
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.ledger import LedgerError
from iot_remote_access.core.ledger_records import shortened
from iot_remote_access.core.teleport_sessions import SessionMapper, UnusableEntry
from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
from iot_remote_access.lambdas.anchor_sinks.sinks import TailBroken
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

logger = logging.getLogger("iot_remote_access.ledger.gcp_sessions")
MAX_MESSAGES = 100
#: A message larger than this is not one of Teleport's session events.
MAX_MESSAGE_BYTES = 64 * 1024
SEEN_LIMIT = 100_000


@dataclass
class WriterStats:
    appended: int = 0
    skipped: int = 0
    unusable: int = 0
    duplicates: int = 0
    anchors: int = 0
    failures: list[str] = field(default_factory=list)


class SessionWriter:
    """Drains a subscription into the chain; ``subscriber`` is a Pub/Sub SubscriberClient."""

    def __init__(
        self,
        subscriber: Any,
        subscription: str,
        chain: ObjectChain,
        *,
        anchor_every: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.chain = chain
        self.mapper = SessionMapper()
        self.anchor_every = anchor_every
        self.clock = clock
        self.stats = WriterStats()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_anchor: datetime | None = None

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> WriterStats:
        """Pull and write until ``stop`` is set (or, ``until_idle``, a pull returns nothing);
        anchors every ``anchor_every`` and once at the end."""
        self._last_anchor = self.clock()
        while not stop.is_set():
            request: dict[str, Any] = {
                "subscription": self.subscription,
                "max_messages": MAX_MESSAGES,
            }
            if until_idle:
                # A job drains what is there: an empty answer at once ends it (a service
                # waits for messages instead).
                request["return_immediately"] = True
            with warnings.catch_warnings():
                # return_immediately is deprecated for services (they should wait); a
                # draining job is exactly its use.
                warnings.simplefilter("ignore", DeprecationWarning)
                received = self.subscriber.pull(request=request, timeout=30).received_messages
            if received:
                if not self.write_batch(received) and (until_idle or stop.wait(5)):
                    break  # the ledger is down: a job ends (failed); a service retries in 5 s
            elif until_idle:
                break
            if self._anchor_due():
                self.anchor()
        self.anchor()
        return self.stats

    def write_batch(self, received: list[Any]) -> bool:
        """Write one pulled batch; False if the ledger failed (the rest is handed back)."""
        entries = sorted(
            ((self._entry(m.message), m.ack_id) for m in received),
            key=lambda pair: str(pair[0].get("timestamp", "")) if pair[0] else "",
        )
        done: list[str] = []
        try:
            for entry, ack_id in entries:
                if entry is not None:
                    self._write(entry)
                done.append(ack_id)
        except LedgerUnavailable as error:
            self.stats.failures.append(str(error)[:300])
            logger.error("session not recorded; left for redelivery: %s", str(error)[:300])
            # Handed back at once (deadline 0) rather than after the ack deadline.
            rest = [ack_id for _, ack_id in entries[len(done) :]]
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": self.subscription,
                    "ack_ids": rest,
                    "ack_deadline_seconds": 0,
                }
            )
        if done:
            self.subscriber.acknowledge(
                request={"subscription": self.subscription, "ack_ids": done}
            )
        return len(done) == len(entries)

    def _entry(self, message: Any) -> dict[str, Any] | None:
        data = bytes(message.data)
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                raise UnusableEntry(f"message is {len(data)} bytes; allowed: a log entry")
            entry = json.loads(data)
            if not isinstance(entry, dict):
                raise UnusableEntry("message is not a JSON object (a LogEntry)")
        except (ValueError, RecursionError, UnusableEntry) as error:
            self._unusable(message, error)
            return None
        return entry

    def _write(self, entry: dict[str, Any]) -> None:
        key = str(entry.get("insertId") or "")
        if key and key in self._seen:
            self.stats.duplicates += 1
            return
        try:
            record = self.mapper.record_of(entry)
        except UnusableEntry as error:
            self._unusable(None, error)
            return
        except RecursionError:  # a payload nested deeper than any Teleport event
            self._unusable(None, UnusableEntry("jsonPayload: nested too deeply"))
            return
        if record is None:
            self.stats.skipped += 1
        else:
            try:
                stored = self.chain.append(record)
            except LedgerError:
                # Over the ledger's 16 KiB (text of escaped control characters): the
                # session is still recorded, its texts cut short and marked so.
                stored = self.chain.append(shortened(record))
            self.stats.appended += 1
            logger.info(
                "session recorded: %s %s seq %d",
                record["decision"],
                record["sessionId"],
                stored.seq,
            )
        if key:
            self._seen[key] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)

    def _unusable(self, message: Any, error: Exception) -> None:
        self.stats.unusable += 1
        where = "" if message is None else f" (message {str(message.message_id)[:40]})"
        logger.warning("not a Teleport log entry%s: %s", where, str(error)[:300])

    def _anchor_due(self) -> bool:
        last = self._last_anchor
        return last is None or self.clock() - last >= self.anchor_every

    def anchor(self) -> None:
        """Anchor the chain's head in the bucket (skipped, and logged, if the tail is broken)."""
        now = self.clock()
        try:
            result = self.chain.anchor(now)
        except TailBroken as error:
            self.stats.failures.append(f"tail broken: {error}")
            logger.error("ledger tail does not hold; not anchored: %s", error)
            return
        except Exception as error:  # any SDK error: the next run anchors instead
            self.stats.failures.append(f"could not anchor: {type(error).__name__}")
            logger.error("ledger not anchored: %s", type(error).__name__)
            return
        self._last_anchor = now
        if result.get("anchored") is not None:
            self.stats.anchors += 1
