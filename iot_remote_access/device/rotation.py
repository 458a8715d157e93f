"""The device side of certificate rotation (the firmware contract of docs/certificate-rotation.md).

On ``{"type": "rotate-certificate"}`` on its commands topic (or ``rotate()``), the
device generates a new key in its key store, sends a CSR (CN = its thing name) on
its rotation CSR topic, checks the certificate that comes back on its certificate
topic (chains to the expected CA, names exactly this thing, carries the new key),
stores it *next to* the working pair, reconnects with it, confirms on the confirm
topic, and only then forgets the old pair. If the new pair cannot connect and
confirm within ``switch_timeout`` it goes back to the old one (which stays ACTIVE
in the cloud until the confirmation arrives).

Power may fail at any instant: every file is replaced atomically and the state file
(``rotation_state.py``) says which step the device is in, so ``start()`` resumes the
rotation or rolls it back. The device is never left without a pair that connects.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from iot_remote_access.core import strict_json
from iot_remote_access.core.csr_policy import ALREADY_BEING_SIGNED
from iot_remote_access.core.topics import TopicModel, render_topic, validate_thing_name
from iot_remote_access.device.certificate_check import (
    MAX_CERTIFICATE_BYTES,
    CertificateRefused,
    check_issued,
)
from iot_remote_access.device.rotation_state import CredentialStore, Phase, Progress

#: Step boundaries, in order; ``step_hook`` is called after each is durable.
STEPS = (
    "requested",  # the pending pair id is recorded
    "key",  # its private key exists
    "csr",  # its CSR is on disk
    "sent",  # the CSR was acknowledged by the broker
    "received",  # the checked certificate is on disk
    "switching",  # the switch deadline is recorded, the old connection closes
    "connected",  # connected with the new pair, not yet confirmed
    "confirmed",  # confirmation acknowledged; the state names the new pair current
    "cleaned",  # the old pair is deleted
)
ROTATE_COMMAND = "rotate-certificate"
MAX_MESSAGE_BYTES = MAX_CERTIFICATE_BYTES + 4096

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Broker:
    """Where the device connects.

    :param host: the broker's name (AWS IoT: the account's ATS endpoint).
    :param port: Default 8883.
    :param server_ca_file: CA bundle that verifies the *broker*. Default: the system's.
    :param keepalive: seconds. Default 60.
    """

    host: str
    port: int = 8883
    server_ca_file: Path | None = None
    keepalive: int = 60


class RotationDevice:
    """Rotates one device's certificate; owns its MQTT connection (a new pair needs a new one).

    :param thing: the thing name (client id, and the only name a new certificate may carry).
    :param store: the device's pairs and rotation state (provisioned).
    :param broker: where to connect.
    :param expected_cas: the CAs a new certificate must chain to.
    :param topics: the fleet's topic model. Default: ``TopicModel()``.
    :param switch_timeout: seconds the new pair has to connect and confirm. Default 120.
    :param connect_timeout: seconds one connection attempt may take. Default 10.
    :param attempt_timeout: seconds to wait for a certificate before giving up. Default 86400.
    :param on_client: called with every new client before it connects (attach
        ``CommandDevice`` here); it may set ``on_connect``, which is chained, and
        register its own callback on the commands topic, which keeps working.
    :param step_hook: called with each name of ``STEPS`` once durable (tests, metrics).
    """

    def __init__(
        self,
        *,
        thing: str,
        store: CredentialStore,
        broker: Broker,
        expected_cas: Sequence[x509.Certificate],
        topics: TopicModel | None = None,
        switch_timeout: float = 120.0,
        connect_timeout: float = 10.0,
        attempt_timeout: float = 86400.0,
        on_client: Callable[[mqtt.Client], None] | None = None,
        step_hook: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.thing = validate_thing_name(thing)
        self.store = store
        self.broker = broker
        self.expected_cas = tuple(expected_cas)
        model = topics or TopicModel()
        self.commands_topic = render_topic(model.commands, thing)
        # Client-side dispatch only (the subscription stays exact): a filter that is not
        # the exact topic lets a handler registered on the exact topic (CommandDevice)
        # keep receiving the commands too, since paho calls every matching callback.
        self._commands_filter = render_topic(model.commands, "+", validate=False)
        self.csr_topic = render_topic(model.rotation_csr, thing)
        self.certificate_topic = render_topic(model.rotation_certificate, thing)
        self.confirm_topic = render_topic(model.rotation_confirm, thing)
        self.switch_timeout = switch_timeout
        self.connect_timeout = connect_timeout
        self.attempt_timeout = attempt_timeout
        self.on_client = on_client
        self.step_hook = step_hook or (lambda _step: None)
        self.clock = clock
        self.client: mqtt.Client | None = None
        self._events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Resume or roll back whatever a power loss interrupted, connect, and listen."""
        progress = self.store.recover()
        if progress.phase in (Phase.RECEIVED, Phase.SWITCHING):
            self._switch(progress)
        else:
            if progress.phase is Phase.IDLE and progress.previous is not None:
                progress = self._clean(progress)
            self._settle(progress)
            if progress.phase in (Phase.KEY, Phase.CSR, Phase.SENT):
                self._events.put(("rotate", b""))  # continue: same key, same CSR
        self._worker = threading.Thread(target=self._work, name="rotation", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        self._events.put(("stop", b""))
        if self._worker is not None:
            self._worker.join(timeout=self.connect_timeout + 5)
        self._close(self.client)
        self.client = None

    def rotate(self) -> None:
        """Start a rotation now (what the planner's rotate-certificate command does)."""
        self._events.put(("rotate", b""))

    @property
    def progress(self) -> Progress:
        return self.store.load()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no rotation is in flight and the old pair is gone (tests, scripts)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while not self._is_idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.2))
        return True

    def _is_idle(self) -> bool:
        progress = self.store.load()
        return progress.phase is Phase.IDLE and progress.previous is None and self._events.empty()

    def _step(self, name: str) -> None:
        self.step_hook(name)
        with self._idle:
            self._idle.notify_all()

    # -- the worker: one event at a time, never inside paho's network thread --------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                kind, payload = self._events.get(timeout=1.0)
            except queue.Empty:
                kind, payload = self._tick(), b""
            try:
                if kind == "tick":
                    self._give_up_if_late()
                elif kind == "rotate":
                    self._rotate()
                elif kind == "certificate":
                    self._on_certificate(payload)
            except Exception:  # the worker must survive; the state file is consistent
                logger.exception("rotation step failed; the working certificate stays")
            with self._idle:
                self._idle.notify_all()

    def _tick(self) -> str:
        """Nothing arrived: a CSR the broker never acknowledged (connection lost while
        sending) is sent again; otherwise check the attempt's age."""
        progress = self.store.load()
        return "rotate" if progress.phase is Phase.CSR else "tick"

    def _give_up_if_late(self) -> None:
        progress = self.store.load()
        late = (
            progress.started is not None and self.clock() - progress.started > self.attempt_timeout
        )
        if progress.phase in (Phase.KEY, Phase.CSR, Phase.SENT) and late:
            logger.warning("no certificate within %.0f s; rotation abandoned", self.attempt_timeout)
            self._abandon(progress)

    # -- CSR out -------------------------------------------------------------------------------

    def _rotate(self) -> None:
        progress = self.store.load()
        if progress.phase is Phase.IDLE:
            if progress.previous is not None:
                progress = self._clean(progress)
            progress = self.store.save(
                progress.to(Phase.KEY, pending=self.store.new_pair_id(), started=self.clock())
            )
            self._step("requested")
        pending = progress.pending
        if progress.phase not in (Phase.KEY, Phase.CSR, Phase.SENT) or pending is None:
            logger.info("rotation already past the CSR (%s); nothing to send", progress.phase)
            return
        if progress.phase is Phase.KEY:
            if not self.store.keys.has_key(pending):
                self.store.keys.generate(pending)
            self._step("key")
            request = self.store.keys.certificate_request(pending, self.thing)
            self.store.write_pair_file(self.store.request_file(pending), request)
            progress = self.store.save(progress.to(Phase.CSR))
            self._step("csr")
        self._send_csr(pending)
        if progress.phase is Phase.CSR:
            self.store.save(progress.to(Phase.SENT))
            self._step("sent")

    def _send_csr(self, pending: str) -> None:
        client = self._require_client()
        csr = self.store.request_file(pending).read_text(encoding="ascii")
        info = client.publish(self.csr_topic, json.dumps({"csr": csr}), qos=1)
        info.wait_for_publish(timeout=self.connect_timeout)
        if not info.is_published():
            raise RuntimeError("the broker did not acknowledge the CSR; sent again on restart")

    # -- certificate in ------------------------------------------------------------------------

    def _on_certificate(self, payload: bytes) -> None:
        progress = self.store.load()
        if progress.phase is not Phase.SENT or progress.pending is None:
            logger.info("certificate message while %s; ignored", progress.phase)
            return
        try:
            document = strict_json.loads(payload, max_bytes=MAX_MESSAGE_BYTES, max_depth=4)
        except strict_json.StrictJsonError as error:
            logger.warning("certificate message refused: %s", error.problem)
            return
        status = document.get("status") if isinstance(document, dict) else None
        if status == "rejected" and document.get("reason") == ALREADY_BEING_SIGNED:
            logger.info("the CSR sent again is still being signed; waiting for it")
            return
        if status == "rejected":
            reason = str(document.get("reason"))[:200]
            logger.warning("the signer rejected the CSR: %s; rotation abandoned", reason)
            self._abandon(progress)
            return
        if status != "issued":
            logger.warning("certificate message refused: status %.40r", status)
            return
        try:
            leaf = check_issued(
                document.get("certificatePem"),
                thing=self.thing,
                expected_cas=self.expected_cas,
                public_key_der=self.store.keys.public_key_der(progress.pending),
                now=datetime.now(UTC),
            )
        except CertificateRefused as refused:
            logger.warning("certificate not installed: %s; the working one stays", refused)
            return
        pem = str(document["certificatePem"]).encode("ascii")
        self.store.write_pair_file(self.store.certificate_file(progress.pending), pem)
        logger.info("certificate serial %x checked and stored", leaf.serial_number)
        progress = self.store.save(progress.to(Phase.RECEIVED))
        self._step("received")
        self._switch(progress)

    # -- switch, confirm, roll back ------------------------------------------------------------

    def _switch(self, progress: Progress) -> None:
        if progress.phase is Phase.RECEIVED or progress.deadline is None:
            deadline = self.clock() + self.switch_timeout
            progress = self.store.save(progress.to(Phase.SWITCHING, deadline=deadline))
        self._step("switching")
        self._close(self.client)
        self.client = None
        assert progress.pending is not None and progress.deadline is not None
        pause = 0.5
        while self.clock() < progress.deadline and not self._stopping.is_set():
            client = self._connect(progress.pending)
            if client is not None:
                self._step("connected")
                if self._confirm(client):
                    self.client = client
                    self._commit(progress)
                    return
                self._close(client)
            time.sleep(max(0.0, min(pause, progress.deadline - self.clock())))
            pause = min(pause * 2, 10.0)
        logger.warning("the new certificate did not connect in time; back to the old one")
        self._settle(self.store.load())

    def _confirm(self, client: mqtt.Client) -> bool:
        info = client.publish(self.confirm_topic, b"{}", qos=1)
        try:
            info.wait_for_publish(timeout=self.connect_timeout)
        except (RuntimeError, ValueError):  # the connection dropped before the PUBACK
            return False
        return info.is_published()

    def _commit(self, progress: Progress) -> None:
        committed = self.store.save(
            Progress(Phase.IDLE, current=str(progress.pending), previous=progress.current)
        )
        self._step("confirmed")
        self._clean(committed)

    def _clean(self, progress: Progress) -> Progress:
        if progress.previous is not None:
            self.store.remove_pair(progress.previous)
        progress = self.store.save(progress.to(progress.phase, previous=None))
        self._step("cleaned")
        return progress

    def _abandon(self, progress: Progress) -> None:
        """Forget the pending pair (state first: a restart must never pick it up half-made)."""
        self.store.save(Progress(Phase.IDLE, current=progress.current))
        if progress.pending is not None:
            self.store.remove_pair(progress.pending)

    # -- connections ---------------------------------------------------------------------------

    def _settle(self, progress: Progress) -> None:
        """Connect with a pair that works, retrying until one does.

        Normally the current pair. After a switch ran out of time the old pair is
        tried first (rolling back); if it no longer connects, the cloud already took
        the confirmation of the new one (power failed just after it), so the new
        pair is confirmed again and kept.
        """
        pause = 1.0
        while not self._stopping.is_set():
            client = self._connect(progress.current)
            if client is not None:
                if progress.phase is Phase.SWITCHING:
                    self._abandon(progress)
                self.client = client
                return
            pending = progress.pending
            if progress.phase is Phase.SWITCHING and self.store.has_certificate(pending):
                client = self._connect(str(pending))
                if client is not None and self._confirm(client):
                    self.client = client
                    self._commit(progress)
                    return
                self._close(client)
            logger.warning("no certificate connected; retrying in %.0f s", pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)

    def _connect(self, pair: str) -> mqtt.Client | None:
        """A connected client presenting ``pair``, or None (refused, unreachable, timed out)."""
        context = ssl.create_default_context(
            cafile=str(self.broker.server_ca_file) if self.broker.server_ca_file else None
        )
        try:
            self.store.keys.load_into(pair, context, self.store.certificate_file(pair))
        except (OSError, ssl.SSLError) as error:
            logger.warning("pair %s cannot be loaded: %s", pair, type(error).__name__)
            return None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.thing, protocol=mqtt.MQTTv5
        )
        client.tls_set_context(context)
        if self.on_client is not None:
            self.on_client(client)
        connected = self._wire(client)
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive)
        except (OSError, ssl.SSLError) as error:
            logger.warning("pair %s: connection failed (%s)", pair, type(error).__name__)
            return None
        client.loop_start()
        if connected.wait(self.connect_timeout) and client.is_connected():
            return client
        self._close(client)
        return None

    def _wire(self, client: mqtt.Client) -> threading.Event:
        """Subscribe on every (re)connect, chained with whatever ``on_client`` set.

        The event is set at the SUBACK, not the CONNACK: a message another client
        publishes right after must find the subscription in place.
        """
        ready = threading.Event()
        ours: set[int] = set()
        user_on_connect: Any = client.on_connect  # paho types it as a union of signatures
        user_on_subscribe: Any = client.on_subscribe

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                mid = c.subscribe(self._subscriptions())[1]
                if mid is not None:
                    ours.add(mid)
            if user_on_connect is not None:
                user_on_connect(c, userdata, flags, reason, props)

        def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
            if mid in ours:
                if any(code.is_failure for code in codes):
                    logger.warning("the broker refused a rotation subscription: %s", codes)
                ready.set()
            if user_on_subscribe is not None:
                user_on_subscribe(c, userdata, mid, codes, props)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        self._add_callbacks(client)
        return ready

    # Transport hooks: what a connection subscribes to and who handles what arrives
    # (device/rotation_azure.py replaces them with IoT Hub's topics).

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [(self.certificate_topic, 1), (self.commands_topic, 1)]

    def _add_callbacks(self, client: mqtt.Client) -> None:
        client.message_callback_add(self.certificate_topic, self._certificate_message)
        client.message_callback_add(self._commands_filter, self._command_message)

    def _certificate_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(("certificate", bytes(message.payload)))

    def _command_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.commands_topic and _is_rotate_command(bytes(message.payload)):
            self.rotate()

    def _require_client(self) -> mqtt.Client:
        if self.client is None:
            raise RuntimeError("not connected")
        return self.client

    @staticmethod
    def _close(client: mqtt.Client | None) -> None:
        if client is None:
            return
        client.disconnect()
        client.loop_stop()


def _is_rotate_command(payload: bytes) -> bool:
    try:
        document = strict_json.loads(payload, max_bytes=4096, max_depth=4)
    except strict_json.StrictJsonError:
        return False
    return isinstance(document, dict) and document.get("type") == ROTATE_COMMAND
