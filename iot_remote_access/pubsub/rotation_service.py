"""The GCP rotation service: Pub/Sub in, ``RotationProtocol``, Pub/Sub out; health over HTTP.

Devices publish CSRs on ``rot/{thing}/csr`` and confirmations on ``rot/{thing}/confirm``;
the bridge forwards each to a Pub/Sub topic with the attribute ``thing`` (from the MQTT
topic). This service streams both subscriptions, hands each message to the protocol and
publishes the answers on the certificate topic, which the bridge relays to
``rot/{thing}/certificate``.

A message is acknowledged once the protocol is done with it (issued and answered,
refused and answered, confirmed). One to be tried again (the CA throttled, the CSR is
being issued by another delivery) is held for ``retry_after`` seconds, then handed back
(nack): Pub/Sub redelivers it, here or to another replica. A crash before the ack
leaves the message to Pub/Sub's redelivery; the inventory's transactions make the
redelivery safe.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from iot_remote_access.pubsub.probe_server import ProbeServer
from iot_remote_access.pubsub.rotation_protocol import Decision, RotationProtocol

log = logging.getLogger("iot_remote_access.pubsub.rotation")
#: Seconds a publish of an answer may take before the message is retried.
PUBLISH_TIMEOUT_SECONDS = 30.0

Handler = Callable[[bytes, dict[str, str]], Decision]


class PubsubReplies:
    """Publishes answers to the certificate topic (attribute ``thing``, as the bridge reads)."""

    def __init__(self, publisher: Any, topic_path: str) -> None:
        self._publisher = publisher
        self._topic = topic_path

    def send(self, thing: str, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self._publisher.publish(self._topic, data, thing=thing).result(
            timeout=PUBLISH_TIMEOUT_SECONDS
        )


class RotationService:
    """Streams the CSR and confirmation subscriptions into ``protocol``.

    ``start()`` returns at once; ``stop()`` ends the streams; ``run()`` does both
    around SIGTERM/SIGINT.
    """

    def __init__(
        self,
        protocol: RotationProtocol,
        subscriber: Any,
        *,
        csr_subscription: str,
        confirm_subscription: str,
        max_inflight: int = 10,
        lease_extension_seconds: int = 10,
        http: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        from google.cloud.pubsub_v1.types import FlowControl

        self.protocol = protocol
        self._subscriber = subscriber
        # Short lease extensions: a message held by a replica that died is redelivered
        # (to another) within about this many seconds, not the client's default minute.
        self._flow = FlowControl(
            max_messages=max_inflight,
            min_duration_per_lease_extension=lease_extension_seconds,
            max_duration_per_lease_extension=lease_extension_seconds,
        )
        self._stop = threading.Event()
        #: Messages handled, by "kind/outcome" (shown in /readyz).
        self.handled: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._streams = {
            "csr": _Stream(csr_subscription, self._handler("csr", protocol.on_csr)),
            "confirm": _Stream(confirm_subscription, self._handler("confirm", protocol.on_confirm)),
        }
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"rotation-{k}", daemon=True)
            for k, s in self._streams.items()
        ]
        self.http = ProbeServer(http[0], http[1], {"/healthz": self.live, "/readyz": self.ready})

    # -- probes -------------------------------------------------------------------------

    def live(self) -> tuple[bool, dict[str, Any]]:
        alive = all(t.is_alive() for t in self._threads)
        return alive and not self._stop.is_set(), {"streamThreads": alive}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks = {f"{k}Streaming": s.streaming for k, s in self._streams.items()}
        ok = all(checks.values()) and not self._stop.is_set()
        with self._count_lock:
            return ok, {**checks, "handled": dict(self.handled)}

    # -- messages -------------------------------------------------------------------------

    def _handler(self, kind: str, handle: Handler) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            try:
                decision = handle(bytes(message.data), dict(message.attributes))
            except Exception as error:  # Firestore or Pub/Sub failed: nothing was lost
                log.warning(
                    "rotation message failed; retried later",
                    extra={"kind": kind, "error": type(error).__name__},
                )
                decision = Decision("error", 503, self.protocol.retry_seconds)
            with self._count_lock:
                key = f"{kind}/{decision.outcome}"
                self.handled[key] = self.handled.get(key, 0) + 1
            if decision.retry_after is None:
                message.ack()
                return
            # Held, then handed back: Pub/Sub redelivers it after the wait.
            timer = threading.Timer(decision.retry_after, message.nack)
            timer.daemon = True
            timer.start()

        return on_message

    def _run(self, stream: _Stream) -> None:
        attempt = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                stream.future = self._subscriber.subscribe(
                    stream.path, stream.callback, flow_control=self._flow
                )
                stream.streaming = True
                stream.future.result()
            except Exception as error:
                if self._stop.is_set():
                    break
                log.warning(
                    "rotation stream ended; reconnecting",
                    extra={"subscription": stream.path, "error": type(error).__name__},
                )
            finally:
                stream.streaming = False
            attempt = 0 if time.monotonic() - started > 60 else attempt + 1
            self._stop.wait(min(30.0, 0.5 * 2**attempt))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.http.start()
        for thread in self._threads:
            thread.start()
        log.info("rotation service started", extra={"httpPort": self.http.port})

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for stream in self._streams.values():
            if stream.future is not None:
                stream.future.cancel()
        for thread in self._threads:
            thread.join(timeout)
        self.http.stop()

    def run(self) -> int:
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.start()
        stop.wait()
        self.stop()
        return 0


class _Stream:
    def __init__(self, path: str, callback: Callable[[Any], None]) -> None:
        self.path = path
        self.callback = callback
        self.future: Any = None
        self.streaming = False
