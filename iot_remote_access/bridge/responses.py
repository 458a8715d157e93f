"""Command responses: ``cmd/{thing}/responses`` on the broker -> a Pub/Sub topic of their own.

The way back of remote commands on GCP. The bridge reads every thing's responses
topic through a shared subscription (``$share/<group>/cmd/+/responses``), so replicas
split them, and publishes each to the responses topic with attributes:

``thing``            taken from the MQTT topic, never from the payload: the broker's
                     ACL lets a device publish only its own responses topic, so the
                     attribute names the device that sent it
``correlationData``  the MQTT 5 correlation data as hex (at most 64 bytes), if any
``mqttTopic``        the topic it came from
``dedupKey``         the same for every copy of the same MQTT message

The payload is not parsed here: the command service checks it against the
catalogue (it is the one place that knows the commands). What cannot be a
response - not a device's responses topic, a thing name outside the fleet's
pattern, more than :data:`~iot_remote_access.core.commands.MAX_RESPONSE_BYTES` -
goes to the dead-letter topic (payload dropped when too large). A message is
acknowledged to the broker only after Pub/Sub confirmed it (or its dead-letter);
a failed publish is retried with backoff while its broker connection lasts (after a
reconnect the broker delivers it again).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.cause_log import CauseLog
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.telemetry import dedup_key
from iot_remote_access.core.commands import MAX_RESPONSE_BYTES
from iot_remote_access.core.topics import thing_from_topic

log = logging.getLogger("iot_remote_access.bridge.responses")
#: Correlation data longer than this is not passed on (a command id is 36 bytes).
MAX_CORRELATION_BYTES = 64


@dataclass(frozen=True, slots=True)
class ResponseInbound:
    """One response delivery from the broker."""

    topic: str
    payload: bytes
    correlation: bytes | None
    ticket: Ticket


class ResponseRelay:
    """Publishes responses with the Pub/Sub client (``publisher.publish``); settles tickets."""

    def __init__(
        self,
        publisher: Any,
        *,
        topic_path: str,
        dead_letter_path: str,
        template: str,
        thing_name_pattern: str,
        metrics: BridgeMetrics,
        settle: Callable[[list[Ticket]], object],
        is_current: Callable[[Ticket], bool],
        backoff: tuple[float, float] = (0.5, 30.0),
        log_interval: float = 10.0,
    ) -> None:
        self._publisher = publisher
        self._topic = topic_path
        self._dead_letter = dead_letter_path
        self._template = template
        self._pattern = re.compile(thing_name_pattern)
        self._metrics = metrics
        self._settle = settle
        self._is_current = is_current
        self._backoff = backoff
        self._causes = CauseLog(log, log_interval)
        self._stopped = threading.Event()

    def stop(self) -> None:
        """No more retries (what is unacknowledged stays with the broker's session)."""
        self._stopped.set()

    def submit(self, message: ResponseInbound) -> None:
        """Take one response from the broker (paho's network thread: never blocks)."""
        self._metrics.responses_received.inc()
        thing = thing_from_topic(self._template, message.topic)
        if thing is None:
            self._send(message, "", dead="not-a-responses-topic", attempt=0)
        elif self._pattern.fullmatch(thing) is None:
            self._send(message, thing, dead="thing-name-pattern", attempt=0)
        elif len(message.payload) > MAX_RESPONSE_BYTES:
            self._send(message, thing, dead="too-large", attempt=0)
        else:
            self._send(message, thing, dead=None, attempt=0)

    def _attributes(self, message: ResponseInbound, thing: str) -> dict[str, str]:
        attributes = {
            "mqttTopic": message.topic[:1024],
            "dedupKey": dedup_key(message.topic, message.payload),
        }
        if thing:
            attributes["thing"] = thing
        correlation = message.correlation
        if correlation and len(correlation) <= MAX_CORRELATION_BYTES:
            attributes["correlationData"] = correlation.hex()
        return attributes

    def _send(
        self, message: ResponseInbound, thing: str, *, dead: str | None, attempt: int
    ) -> None:
        attributes = self._attributes(message, thing)
        data = message.payload
        if dead is not None:
            attributes["deadLetterReason"] = dead
            if len(data) > MAX_RESPONSE_BYTES:
                attributes["payloadDropped"] = f"{len(data)} bytes"
                data = b""
        topic = self._dead_letter if dead is not None else self._topic
        try:
            future = self._publisher.publish(topic, data, **attributes)
        except Exception as error:  # flow control refused it, or the client is stopping
            self._failed(message, thing, dead, attempt, error)
            return

        def done(f: Any) -> None:
            error = f.exception()
            if error is not None:
                self._failed(message, thing, dead, attempt, error)
                return
            if dead is None:
                self._metrics.responses_delivered.inc()
            else:
                self._metrics.responses_dead_lettered.labels(reason=dead).inc()
                log.warning(
                    "command response sent to the dead-letter topic",
                    extra={"reason": dead, "thing": thing, "mqttTopic": message.topic[:200]},
                )
            self._settle([message.ticket])

        future.add_done_callback(done)

    def _failed(
        self,
        message: ResponseInbound,
        thing: str,
        dead: str | None,
        attempt: int,
        error: BaseException,
    ) -> None:
        self._metrics.responses_failed.inc()
        self._causes.report(
            "command response publish failed; retrying",
            f"{type(error).__name__}: {str(error)[:300]}",
            topic=self._dead_letter if dead else self._topic,
        )
        if self._stopped.is_set() or not self._is_current(message.ticket):
            return  # the broker delivers it again on the next connection
        low, high = self._backoff
        timer = threading.Timer(
            min(high, low * 2**attempt),
            self._send,
            args=(message, thing),
            kwargs={"dead": dead, "attempt": attempt + 1},
        )
        timer.daemon = True
        timer.start()
