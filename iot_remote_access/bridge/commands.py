"""Commands: a Pub/Sub subscription -> ``cmd/{thing}/commands`` on the broker.

The thing comes from the message attribute ``thing`` and must be a valid thing
name (and match the fleet's pattern): anything else - missing, a wildcard, a
'/' that would reach another topic - goes to the commands dead-letter topic and
never to the broker. A command is acknowledged to Pub/Sub only after the
broker's PUBACK; one the broker refuses (reason code >= 0x80) is dead-lettered.
The subscription has message ordering on, so a thing's commands arrive in order:
the Pub/Sub client hands over a key's next message only after this one is acked.

A remote command from the command service carries the attributes ``commandId`` and
``expiresAt``: the bridge then publishes it as MQTT 5 with the command id as correlation
data, the thing's responses topic as response topic (responses path on) and a message
expiry of the time left, so a command that waited in Pub/Sub past its timeout is
dropped by the broker, never run late; one already expired is dead-lettered
(``expired``). A malformed ``commandId`` or ``expiresAt`` is dead-lettered too.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from google.cloud.pubsub_v1.types import FlowControl
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_remote_access.bridge.cause_log import CauseLog
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.core.commands import (
    CommandRuleError,
    correlation_data,
    parse_time,
    validate_command_id,
)
from iot_remote_access.core.topics import TopicModelError, render_topic, validate_thing_name

log = logging.getLogger("iot_remote_access.bridge.commands")

#: Called with None on success, else the broker's refusal as text.
PubackCallback = Callable[[str | None], None]


class CommandLink(Protocol):
    """What the relay needs from the broker connection."""

    def wait_connected(self, timeout: float) -> bool: ...
    def publish_command(
        self,
        topic: str,
        payload: bytes,
        on_puback: PubackCallback,
        properties: Properties | None = None,
    ) -> bool: ...


class CommandRelay:
    """Streams the commands subscription and relays each message to the broker.

    The streaming pull restarts with backoff if it ends (subscription missing,
    server unreachable). ``max_inflight`` bounds the messages held at once
    (Pub/Sub flow control).
    """

    def __init__(
        self,
        subscriber: Any,
        publisher: Any,
        link: CommandLink,
        *,
        subscription_path: str,
        dead_letter_path: str,
        template: str,
        thing_name_pattern: str,
        metrics: BridgeMetrics,
        max_inflight: int,
        backoff: tuple[float, float] = (0.5, 30.0),
        log_interval: float = 10.0,
        responses_template: str | None = None,
    ) -> None:
        self._responses = responses_template
        self._subscriber = subscriber
        self._publisher = publisher
        self._link = link
        self._subscription = subscription_path
        self._dead_letter = dead_letter_path
        self._template = template
        self._pattern = re.compile(thing_name_pattern)
        self._metrics = metrics
        self._flow = FlowControl(max_messages=max_inflight, max_bytes=16 * 1024 * 1024)
        self._backoff = backoff
        self._causes = CauseLog(log, log_interval)
        self._stop = threading.Event()
        self._future: Any = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self.streaming = False
        self._thread = threading.Thread(target=self._run, name="bridge-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The stream's supervising thread runs (until stop())."""
        return self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Stop pulling; wait up to ``timeout`` for commands awaiting their PUBACK."""
        self._stop.set()
        future = self._future
        if future is not None:
            future.cancel()
            # Cancelled or already failed: either way the stream has ended.
            with contextlib.suppress(Exception):
                future.result(timeout=timeout)
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # -- the stream --------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._future = self._subscriber.subscribe(
                    self._subscription,
                    self._on_message,
                    flow_control=self._flow,
                    await_callbacks_on_shutdown=True,
                )
                self.streaming = True
                self._future.result()
            except Exception as error:
                if self._stop.is_set():
                    break
                log.warning(
                    "commands stream ended; reconnecting",
                    extra={"error": type(error).__name__, "detail": str(error)[:200]},
                )
            finally:
                self.streaming = False
            if time.monotonic() - started > 60:
                attempt = 0
            low, high = self._backoff
            self._stop.wait(min(high, low * 2**attempt))
            attempt += 1

    def _on_message(self, message: Any) -> None:
        self._metrics.commands_received.inc()
        thing = message.attributes.get("thing")
        try:
            validate_thing_name(thing, field_name="attribute 'thing'")
            if not self._pattern.fullmatch(thing):
                raise TopicModelError(
                    "attribute 'thing'",
                    f"{thing!r} does not match the fleet's thing name pattern "
                    f"{self._pattern.pattern!r}",
                )
        except TopicModelError as error:
            self._dead_letter_message(message, "invalid-thing", str(error))
            return
        topic = render_topic(self._template, thing)
        try:
            properties = self._properties(message.attributes, thing)
        except CommandRuleError as error:
            reason = "expired" if error.field == "expired" else "invalid-command-attributes"
            self._dead_letter_message(message, reason, f"{error.field}: {error.problem}")
            return
        while not self._link.wait_connected(1.0):
            if self._stop.is_set():
                message.nack()
                return
        with self._lock:
            self._inflight += 1
            self._metrics.commands_inflight.set(self._inflight)

        def on_puback(refusal: str | None) -> None:
            if refusal is None:
                message.ack()
                self._metrics.commands_delivered.inc()
            else:
                self._dead_letter_message(message, "broker-refused", refusal)
            self._done()

        published = (
            self._link.publish_command(topic, message.data, on_puback, properties)
            if properties is not None
            else self._link.publish_command(topic, message.data, on_puback)
        )
        if not published:
            self._metrics.commands_failed.inc()
            message.nack()
            self._done()

    def _properties(self, attributes: Any, thing: str) -> Properties | None:
        """MQTT 5 properties of a remote command (None for any other message)."""
        command_id = attributes.get("commandId")
        if command_id is None:
            return None
        validate_command_id(command_id)
        expires = parse_time(attributes.get("expiresAt"), "expiresAt")
        left = int((expires - datetime.now(UTC)).total_seconds())
        if left <= 0:
            raise CommandRuleError("expired", f"the command expired at {attributes['expiresAt']}")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.CorrelationData = correlation_data(command_id)
        properties.MessageExpiryInterval = left
        properties.ContentType = "application/json"
        if self._responses is not None:
            properties.ResponseTopic = render_topic(self._responses, thing)
        return properties

    def _done(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._metrics.commands_inflight.set(self._inflight)
            if not self._inflight:
                self._idle.notify_all()

    def _dead_letter_message(self, message: Any, reason: str, detail: str) -> None:
        attributes = {
            **{k: v for k, v in message.attributes.items() if k != "deadLetterReason"},
            "deadLetterReason": reason,
            "deadLetterDetail": detail[:500],
            "sourceSubscription": self._subscription,
            "sourceMessageId": message.message_id,
        }
        try:
            future = self._publisher.publish(self._dead_letter, message.data, **attributes)
        except Exception as error:
            self._dead_letter_failed(error, message)
            return

        def done(f: Any) -> None:
            error = f.exception()
            if error is not None:
                self._dead_letter_failed(error, message)
                return
            # Logged only now: the dead-letter topic has it.
            log.warning(
                "command sent to the dead-letter topic",
                extra={"reason": reason, "detail": detail[:200], "messageId": message.message_id},
            )
            self._metrics.commands_dead_lettered.labels(reason=reason).inc()
            message.ack()

        future.add_done_callback(done)

    def _dead_letter_failed(self, error: BaseException, message: Any) -> None:
        """Not dead-lettered: nack, so Pub/Sub redelivers it (and its own dead-letter policy
        applies after its maximum delivery attempts)."""
        self._metrics.commands_failed.inc()
        self._causes.report(
            "command dead-letter publish failed; the command is nacked for redelivery",
            f"{type(error).__name__}: {str(error)[:300]}",
            deadLetterTopic=self._dead_letter,
        )
        message.nack()
