"""A local STAND-IN for IoT Hub's service API (direct methods only), for tests.

No public IoT Hub emulator exists. This HTTPS server on 127.0.0.1 answers
``POST /twins/{deviceId}/methods?api-version=2021-04-12`` the way the hub's documentation
describes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods):

- a bearer token is required (401 without one),
- ``methodName`` is required and ``responseTimeoutInSeconds`` must be 5..300 and
  ``connectTimeoutInSeconds`` 0..300 (400 otherwise), the body at most 128 KB (413),
- an unregistered device: 404 ``errorCode`` 404001; a registered device that is not
  connected (and a connect timeout of 0): 404 ``errorCode`` 404103,
- a connected device gets the call; its answer comes back as
  ``200 {"status": <its code>, "payload": <its JSON>}``; no answer within the response
  timeout: 504 ``errorCode`` 504101.

A connected device is either a real :class:`~iot_remote_access.device.commands.CommandDevice`
(its ``receive`` and ``send`` hooks carry the call and the answer), or a scripted answer
(for malformed answers a real device would never give). The error codes are IoT Hub's
documented ones; message texts are the stand-in's own. Every request is recorded.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from iot_remote_access.core.commands import ResponseMessage
from iot_remote_access.device.commands import CommandDevice
from tests.support.pki import TestCa

API_VERSION = "2021-04-12"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _Connected:
    device: CommandDevice | None = None
    scripted: Callable[[dict[str, Any]], tuple[int, Any]] | None = None
    answers: queue.Queue[ResponseMessage] = field(default_factory=queue.Queue)


class IotHubServiceStandIn:
    """The stand-in (a context manager); ``endpoint`` and ``ca_file`` aim the client at it."""

    def __init__(self, ca: TestCa) -> None:
        self._ca = ca
        self.ca_file = ca.ca_file
        self.requests: list[Recorded] = []
        self.registered: set[str] = set()
        self._connected: dict[str, _Connected] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- test controls ---------------------------------------------------------

    def register(self, device_id: str) -> None:
        self.registered.add(device_id)

    def connect(self, device: CommandDevice) -> None:
        """A real device module behind the hub: it answers through its ``send`` hook."""
        self.register(device.thing)
        self._connected[device.thing] = _Connected(device=device)

    def answer_with(
        self, device_id: str, scripted: Callable[[dict[str, Any]], tuple[int, Any]]
    ) -> None:
        """A connected device whose answer is ``scripted(payload) -> (status, payload)``."""
        self.register(device_id)
        self._connected[device_id] = _Connected(scripted=scripted)

    def device_send(self, device_id: str) -> Callable[[ResponseMessage, bytes | None], None]:
        """The ``send`` hook a CommandDevice for ``device_id`` is built with."""

        def send(response: ResponseMessage, _correlation: bytes | None) -> None:
            self._connected[device_id].answers.put(response)

        return send

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> IotHubServiceStandIn:
        creds = self._ca.server("iothub-standin")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(creds.cert_file), str(creds.key_file))
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                standin._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # -- the API ---------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(
            Recorded("POST", parts.path, dict(parse_qsl(parts.query)), dict(handler.headers), body)
        )
        status, answer = self._answer(parts.path, dict(parse_qsl(parts.query)), handler, body, raw)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(
        self,
        path: str,
        query: dict[str, str],
        handler: BaseHTTPRequestHandler,
        body: Any,
        raw: bytes,
    ) -> tuple[int, Any]:
        if not (handler.headers.get("Authorization") or "").startswith("Bearer "):
            return 401, {"errorCode": 401002, "message": "stand-in: no bearer token"}
        segments = path.split("/")
        if len(segments) != 4 or segments[1] != "twins" or segments[3] != "methods":
            return 404, {"errorCode": 404000, "message": "stand-in: no such route"}
        if query.get("api-version") != API_VERSION:
            return 400, {"errorCode": 400001, "message": "stand-in: unsupported api-version"}
        if len(raw) > 128 * 1024:
            return 413, {"errorCode": 413002, "message": "stand-in: payload over 128 KB"}
        problem = _invalid(body)
        if problem:
            return 400, {"errorCode": 400027, "message": f"stand-in: {problem}"}
        device_id = unquote(segments[2])
        if device_id not in self.registered:
            return 404, {"errorCode": 404001, "message": "stand-in: device not found"}
        connected = self._connected.get(device_id)
        if connected is None:
            return 404, {"errorCode": 404103, "message": "stand-in: device not online"}
        return self._call(connected, body)

    def _call(self, connected: _Connected, body: dict[str, Any]) -> tuple[int, Any]:
        if connected.scripted is not None:
            status, payload = connected.scripted(body["payload"])
            return 200, {"status": status, "payload": payload}
        assert connected.device is not None
        immediate = connected.device.receive(json.dumps(body["payload"]).encode())
        if immediate is not None:
            connected.answers.put(immediate)
        try:
            answer = connected.answers.get(timeout=body["responseTimeoutInSeconds"])
        except queue.Empty:
            return 504, {"errorCode": 504101, "message": "stand-in: device did not answer"}
        return 200, {"status": 200, "payload": json.loads(answer.payload())}


def _invalid(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("methodName"), str):
        return "methodName is required"
    timeout = body.get("responseTimeoutInSeconds", 30)
    if not isinstance(timeout, int) or not 5 <= timeout <= 300:
        return "responseTimeoutInSeconds must be 5..300"
    connect = body.get("connectTimeoutInSeconds", 0)
    if not isinstance(connect, int) or not 0 <= connect <= 300:
        return "connectTimeoutInSeconds must be 0..300"
    return ""
