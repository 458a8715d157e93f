"""Acknowledge QoS 1 deliveries to the broker in the order they arrived, each once it is done.

MQTT requires PUBACKs in the order the PUBLISH packets were received (MQTT 5,
4.6.0-2), while Pub/Sub confirms different things' messages in any order. A
message's PUBACK therefore waits for every earlier one's. Packet ids belong to
one connection: after a reconnect the broker redelivers everything
unacknowledged, so tickets of an older connection are never acknowledged on
the new one (their message is published again: a counted duplicate).

One undeliverable message must not hold every later PUBACK back for ever (the
broker stops sending at Receive Maximum): :meth:`AckSequencer.stalled` finds head
tickets that waited longer than the stall bound while later ones are done, and
:meth:`AckSequencer.release` acknowledges them anyway ("parked": the forwarder
keeps retrying them, they are no longer the broker's to redeliver).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Ticket:
    generation: int
    mid: int
    qos: int
    done: bool = field(default=False)
    #: Acknowledged before it was delivered (see AckSequencer.release).
    parked: bool = field(default=False)
    #: The forwarder is done with its message (delivered, dead-lettered or abandoned).
    settled: bool = field(default=False)
    created: float = field(default_factory=time.monotonic)


class AckSequencer:
    def __init__(self, send_ack: Callable[[int, int], object]) -> None:
        self._send_ack = send_ack
        self._lock = threading.Lock()
        self._queue: deque[Ticket] = deque()
        self._done_behind = 0  # done tickets in the queue (they wait for the head)
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def new_connection(self) -> int:
        """Start a new connection's sequence; older tickets are dropped."""
        with self._lock:
            self._generation += 1
            self._queue.clear()
            self._done_behind = 0
            return self._generation

    def track(self, mid: int, qos: int) -> Ticket:
        with self._lock:
            ticket = Ticket(self._generation, mid, qos)
            if qos > 0:
                self._queue.append(ticket)
            return ticket

    def done(self, ticket: Ticket) -> int:
        """Mark ``ticket`` done; send every PUBACK now due. Returns how many were sent."""
        with self._lock:
            return self._done_locked(ticket)

    def done_many(self, tickets: list[Ticket]) -> int:
        """:meth:`done` for each of ``tickets``, under one lock. Returns PUBACKs sent."""
        with self._lock:
            return sum(self._done_locked(ticket) for ticket in tickets)

    def _done_locked(self, ticket: Ticket) -> int:
        if ticket.done:
            return 0
        ticket.done = True
        if ticket.generation != self._generation or ticket.qos == 0:
            return 0
        self._done_behind += 1
        sent = 0
        queue = self._queue
        while queue and queue[0].done:
            head = queue.popleft()
            self._done_behind -= 1
            self._send_ack(head.mid, head.qos)
            sent += 1
        return sent

    def stalled(self, older_than: float, limit: int) -> list[Ticket]:
        """Head tickets not done for ``older_than`` seconds that hold back a done one (at most
        ``limit``): what :meth:`release` should acknowledge."""
        now = time.monotonic()
        found: list[Ticket] = []
        with self._lock:
            if not self._done_behind:
                return found  # nothing waits behind them: nobody is held back
            for ticket in self._queue:
                if ticket.done or len(found) >= limit:
                    break
                if now - ticket.created < older_than:
                    break  # younger ones are not stalled yet
                found.append(ticket)
        return found

    def release(self, ticket: Ticket) -> int:
        """Acknowledge ``ticket`` before it is delivered (it is parked). Returns PUBACKs sent."""
        with self._lock:
            if ticket.done:
                return 0
            ticket.parked = True
            return self._done_locked(ticket)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)
