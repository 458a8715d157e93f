"""The device side of remote commands: receive, check, run a registered handler, answer.

A Linux gateway runs this with its own certificate (client id = thing name):
it subscribes to its exact commands topic, checks each command against the
catalogue it was given (``core/commands.py``: this thing, a known command,
arguments valid against the schema, not expired), runs only the Python handler
registered for that name, and answers on its exact responses topic with the
command id as MQTT 5 correlation data. It never executes a shell string: a
handler is a function, its arguments are validated JSON values.

Handlers run in a worker thread with the command's timeout. Python cannot stop
a thread, so a handler that overruns gets a ``failed`` (timed out) answer at the
deadline and keeps its worker slot until it returns; while all slots are taken
new commands are answered ``rejected`` (busy) instead of piling up.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import SchemaError, validate
from iot_remote_access.core.commands import (
    MAX_COMMAND_BYTES,
    MAX_DEPTH,
    CommandCatalogue,
    CommandMessage,
    CommandRuleError,
    ResponseMessage,
    Routing,
    correlation_data,
    parse_command,
    validate_command_id,
)
from iot_remote_access.core.topics import TopicModel, validate_thing_name

#: A handler takes the validated arguments and returns the result object.
Handler = Callable[[dict[str, Any]], dict[str, Any]]
#: How many command ids are remembered, so a QoS 1 redelivery never runs twice.
REMEMBERED_IDS = 1024

logger = logging.getLogger(__name__)


class CommandDevice:
    """One thing's command endpoint.

    :param thing: this device's thing name (also its MQTT client id).
    :param catalogue: the fleet's catalogue (the same the broker enforces).
    :param handlers: command name -> function; each name must be in the catalogue.
    :param topics: the fleet's topic model. Default: ``TopicModel()``.
    :param workers: handlers that may run at once. Default: 1.
    :param clock: the current time (tests). Default: the system clock in UTC.
    :param send: how an answer leaves (tests). Default: publish on the attached client.
    """

    def __init__(
        self,
        *,
        thing: str,
        catalogue: CommandCatalogue,
        handlers: Mapping[str, Handler],
        topics: TopicModel | None = None,
        workers: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        send: Callable[[ResponseMessage, bytes | None], None] | None = None,
    ) -> None:
        self.thing = validate_thing_name(thing)
        self.catalogue = catalogue
        for name in handlers:
            catalogue.get(name)  # raises naming the unknown command
        self.handlers = dict(handlers)
        self.routing = Routing.of(topics or TopicModel(), thing)
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="command")
        self._slots = threading.BoundedSemaphore(workers)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._send = send or self._publish

    # -- MQTT wiring -------------------------------------------------------------------------

    def attach(self, client: mqtt.Client) -> None:
        """Subscribe on every (re)connect and handle what arrives on the commands topic."""
        self._client = client
        client.message_callback_add(self.routing.commands, self._on_message)

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            client.subscribe(self.routing.commands, qos=1)

        client.on_connect = on_connect

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        response_topic = getattr(message.properties, "ResponseTopic", None)
        if response_topic not in (None, self.routing.responses):
            # Never answer where a message says: only on this thing's own topic.
            logger.warning("ignoring response topic %.80r; answering on my own", response_topic)
        answer = self.receive(bytes(message.payload))
        if answer is not None:
            self._send(answer, correlation)

    def _publish(self, response: ResponseMessage, correlation: bytes | None) -> None:
        if self._client is None:
            raise RuntimeError("attach() the device to an MQTT client first")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        expected = correlation_data(response.id)
        # Echo the broker's correlation data only when it is this command's id.
        properties.CorrelationData = correlation if correlation == expected else expected
        properties.ContentType = "application/json"
        self._client.publish(
            self.routing.responses, response.payload(), qos=1, properties=properties
        )

    # -- the rules, without MQTT (what the unit tests drive) ---------------------------------

    def receive(self, payload: bytes) -> ResponseMessage | None:
        """Check a command; start its handler, or return the immediate answer to send.

        Returns None when nothing is to be sent now (the handler's answer follows
        through ``publish``) or when the message cannot be answered at all (no id).
        """
        try:
            command = parse_command(payload, self.catalogue, thing=self.thing, now=self.clock())
        except CommandRuleError as error:
            command_id = _id_of(payload)
            logger.warning("command refused: %s", error)
            if command_id is None:
                return None
            return ResponseMessage(command_id, self.thing, "rejected", {}, str(error))
        if not self._first_time(command.id):
            logger.info("command %s delivered again; not run twice", command.id)
            return None
        handler = self.handlers.get(command.name)
        if handler is None:
            problem = f"name: {command.name!r} has no handler on this device"
            return ResponseMessage(command.id, self.thing, "rejected", {}, problem)
        if not self._slots.acquire(blocking=False):
            problem = "busy: every handler slot is taken; allowed: retry later"
            return ResponseMessage(command.id, self.thing, "rejected", {}, problem)
        self._start(command, handler)
        return None

    def _first_time(self, command_id: str) -> bool:
        with self._lock:
            if command_id in self._seen:
                return False
            self._seen[command_id] = None
            while len(self._seen) > REMEMBERED_IDS:
                self._seen.popitem(last=False)
            return True

    def _start(self, command: CommandMessage, handler: Handler) -> None:
        answered = threading.Event()

        def answer_once(response: ResponseMessage) -> None:
            with self._lock:
                if answered.is_set():
                    return
                answered.set()
            self._send(response, None)

        seconds = max(0.0, (command.expires_at - self.clock()).total_seconds())
        timer = threading.Timer(
            seconds,
            answer_once,
            args=[
                ResponseMessage(
                    command.id,
                    self.thing,
                    "failed",
                    {},
                    f"timeout: no result within {seconds:.0f} s",
                )
            ],
        )
        timer.daemon = True

        def done(future: Future[dict[str, Any]]) -> None:
            self._slots.release()
            timer.cancel()
            answer_once(self._outcome(command, future))

        timer.start()
        self._pool.submit(handler, dict(command.arguments)).add_done_callback(done)

    def _outcome(self, command: CommandMessage, future: Future[dict[str, Any]]) -> ResponseMessage:
        error = future.exception()
        if error is not None:
            # The type and a short message only: a traceback could carry local secrets.
            return ResponseMessage(
                command.id, self.thing, "failed", {}, f"{type(error).__name__}: {str(error)[:200]}"
            )
        result = future.result()
        try:
            validate(result, self.catalogue.get(command.name).result, field_name="result")
        except SchemaError as problem:
            return ResponseMessage(command.id, self.thing, "failed", {}, str(problem))
        return ResponseMessage(command.id, self.thing, "succeeded", result)


def _id_of(payload: bytes) -> str | None:
    """The id of a refused command, if it has a valid one: the requester learns why."""
    try:
        document = strict_json.loads(payload, max_bytes=MAX_COMMAND_BYTES, max_depth=MAX_DEPTH)
        return validate_command_id(document.get("id")) if isinstance(document, dict) else None
    except (strict_json.StrictJsonError, CommandRuleError):
        return None
