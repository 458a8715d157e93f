"""Acknowledge QoS 1 deliveries to the broker in the order they arrived, each once it is done.

MQTT requires PUBACKs in the order the PUBLISH packets were received (MQTT 5,
4.6.0-2), while Pub/Sub confirms different things' messages in any order. A
message's PUBACK therefore waits for every earlier one's. Packet ids belong to
one connection: after a reconnect the broker redelivers everything
unacknowledged, so tickets of an older connection are never acknowledged on
the new one (their message is published again: a counted duplicate).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Ticket:
    generation: int
    mid: int
    qos: int
    done: bool = field(default=False)


class AckSequencer:
    def __init__(self, send_ack: Callable[[int, int], object]) -> None:
        self._send_ack = send_ack
        self._lock = threading.Lock()
        self._queue: deque[Ticket] = deque()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def new_connection(self) -> int:
        """Start a new connection's sequence; older tickets are dropped."""
        with self._lock:
            self._generation += 1
            self._queue.clear()
            return self._generation

    def track(self, mid: int, qos: int) -> Ticket:
        with self._lock:
            ticket = Ticket(self._generation, mid, qos)
            if qos > 0:
                self._queue.append(ticket)
            return ticket

    def done(self, ticket: Ticket) -> int:
        """Mark ``ticket`` done; send every PUBACK now due. Returns how many were sent."""
        sent = 0
        with self._lock:
            ticket.done = True
            if ticket.generation != self._generation:
                return 0
            while self._queue and self._queue[0].done:
                head = self._queue.popleft()
                self._send_ack(head.mid, head.qos)
                sent += 1
        return sent

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)
