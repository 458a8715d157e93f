"""A local STAND-IN for IoT Hub's service API (direct methods and twins), for tests.

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

Twins (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins,
...-query-language): ``GET /twins/{id}`` (404 ``404001`` for an unknown device),
``PATCH /twins/{id}`` with ``If-Match`` (412 ``412002`` on a stale etag; tags merged as a
JSON merge patch, null deletes; a new etag each write) and ``POST /devices/query`` with
``x-ms-max-item-count`` (1..100) and ``x-ms-continuation`` paging. What it does NOT do
like the hub: its query language is only ``SELECT * FROM devices`` with no WHERE, one
``tags.<path> <op> '<string>'`` comparison (``=``, ``<``, ``<=``, ``>``, ``>=``), or
``is_defined(tags.<path>)``; anything else is 400 (the real hub takes far more). Reported
properties change only through :meth:`IotHubServiceStandIn.report` (the device's MQTT side
is not stood in). A device's direct methods can be answered by a handler that also sees the
method name (:meth:`IotHubServiceStandIn.answer_methods`).
"""

from __future__ import annotations

import base64
import copy
import json
import queue
import re
import ssl
import threading
import uuid
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
    methods: Callable[[str, Any], tuple[int, Any]] | None = None
    answers: queue.Queue[ResponseMessage] = field(default_factory=queue.Queue)


class IotHubServiceStandIn:
    """The stand-in (a context manager); ``endpoint`` and ``ca_file`` aim the client at it."""

    def __init__(self, ca: TestCa) -> None:
        self._ca = ca
        self.ca_file = ca.ca_file
        self.requests: list[Recorded] = []
        self.registered: set[str] = set()
        self.twins: dict[str, dict[str, Any]] = {}
        #: Test control: ``refuse_patch(device_id, body)`` -> (status, error body) refuses a
        #: twin write the way the hub refuses one (e.g. 400 400004 for tags over the limit).
        self.refuse_patch: Callable[[str, Any], tuple[int, Any] | None] = lambda _d, _b: None
        self._connected: dict[str, _Connected] = {}
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # -- test controls ---------------------------------------------------------

    def register(self, device_id: str, tags: dict[str, Any] | None = None) -> None:
        self.registered.add(device_id)
        twin = self.twins.setdefault(
            device_id,
            {"deviceId": device_id, "etag": "", "tags": {}, "properties": {"reported": {}}},
        )
        if tags is not None:
            twin["tags"] = copy.deepcopy(tags)
        twin["etag"] = _new_etag()

    def report(self, device_id: str, reported: dict[str, Any]) -> None:
        """What the device's reported-properties PATCH over MQTT would do."""
        twin = self.twins[device_id]
        _merge(twin["properties"]["reported"], copy.deepcopy(reported))
        twin["etag"] = _new_etag()

    def answer_methods(
        self, device_id: str, handler: Callable[[str, Any], tuple[int, Any]]
    ) -> None:
        """A connected device whose answer is ``handler(method_name, payload)``."""
        self.register(device_id)
        self._connected[device_id] = _Connected(methods=handler)

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

            def do_GET(self) -> None:
                standin._handle(self)

            def do_PATCH(self) -> None:
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
        method = handler.command
        self.requests.append(
            Recorded(method, parts.path, dict(parse_qsl(parts.query)), dict(handler.headers), body)
        )
        extra: dict[str, str] = {}
        if method == "POST" and parts.path.endswith("/methods"):
            status, answer = self._answer(
                parts.path, dict(parse_qsl(parts.query)), handler, body, raw
            )
        else:
            status, answer, extra = self._twins(method, parts.path, parts.query, handler, body)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        for name, value in extra.items():
            handler.send_header(name, value)
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

    def _twins(
        self, method: str, path: str, query: str, handler: BaseHTTPRequestHandler, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            return _twin_answer(self, method, path, query, handler, body)

    def _call(self, connected: _Connected, body: dict[str, Any]) -> tuple[int, Any]:
        if connected.methods is not None:
            try:
                status, payload = connected.methods(body["methodName"], body.get("payload"))
            except TimeoutError:
                return 504, {"errorCode": 504101, "message": "stand-in: device did not answer"}
            return 200, {"status": status, "payload": payload}
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


# -- twins -----------------------------------------------------------------------------------

_COMPARISON = re.compile(
    r"\ASELECT \* FROM devices WHERE tags\.(?P<path>[A-Za-z0-9_.]+) "
    r"(?P<op><=|>=|=|<|>) '(?P<value>[^']*)'\Z"
)
_DEFINED = re.compile(
    r"\ASELECT \* FROM devices WHERE is_defined\(tags\.(?P<path>[A-Za-z0-9_.]+)\)\Z"
)
_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _new_etag() -> str:
    return base64.b64encode(uuid.uuid4().bytes[:8]).decode("ascii")


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _lookup(tags: dict[str, Any], path: str) -> Any:
    value: Any = tags
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _matcher(query: str) -> Callable[[dict[str, Any]], bool] | None:
    if query == "SELECT * FROM devices":
        return lambda _twin: True
    defined = _DEFINED.match(query)
    if defined:
        path = defined["path"]
        return lambda twin: _lookup(twin["tags"], path) is not None
    comparison = _COMPARISON.match(query)
    if comparison:
        path, op, value = comparison["path"], _OPS[comparison["op"]], comparison["value"]

        def match(twin: dict[str, Any]) -> bool:
            found = _lookup(twin["tags"], path)
            return isinstance(found, str) and op(found, value)

        return match
    return None


def _twin_answer(
    standin: IotHubServiceStandIn,
    method: str,
    path: str,
    query: str,
    handler: BaseHTTPRequestHandler,
    body: Any,
) -> tuple[int, Any, dict[str, str]]:
    if not (handler.headers.get("Authorization") or "").startswith("Bearer "):
        return 401, {"errorCode": 401002, "message": "stand-in: no bearer token"}, {}
    if dict(parse_qsl(query)).get("api-version") != API_VERSION:
        return 400, {"errorCode": 400001, "message": "stand-in: unsupported api-version"}, {}
    if method == "POST" and path == "/devices/query":
        return _query(standin, handler, body)
    segments = path.split("/")
    if len(segments) != 3 or segments[1] != "twins" or method not in ("GET", "PATCH"):
        return 404, {"errorCode": 404000, "message": "stand-in: no such route"}, {}
    twin = standin.twins.get(unquote(segments[2]))
    if twin is None:
        return 404, {"errorCode": 404001, "message": "stand-in: device not found"}, {}
    if method == "PATCH":
        refused = standin.refuse_patch(twin["deviceId"], body)
        if refused is not None:
            return refused[0], refused[1], {}
        match = handler.headers.get("If-Match")
        if match not in ("*", twin["etag"]):
            return 412, {"errorCode": 412002, "message": "stand-in: etag mismatch"}, {}
        if (
            not isinstance(body, dict)
            or set(body) - {"tags"}
            or not isinstance(body.get("tags"), dict)
        ):
            return 400, {"errorCode": 400004, "message": "stand-in: only tags may be patched"}, {}
        _merge(twin["tags"], copy.deepcopy(body["tags"]))
        twin["etag"] = _new_etag()
    return 200, copy.deepcopy(twin), {}


def _query(
    standin: IotHubServiceStandIn, handler: BaseHTTPRequestHandler, body: Any
) -> tuple[int, Any, dict[str, str]]:
    text = body.get("query") if isinstance(body, dict) else None
    matcher = _matcher(text) if isinstance(text, str) else None
    if matcher is None:
        return 400, {"errorCode": 400017, "message": "stand-in: query not understood"}, {}
    try:
        size = int(handler.headers.get("x-ms-max-item-count") or 100)
        start = int(base64.b64decode(handler.headers.get("x-ms-continuation") or "MA=="))
    except ValueError:
        return 400, {"errorCode": 400017, "message": "stand-in: bad paging header"}, {}
    if not 1 <= size <= 100:
        return 400, {"errorCode": 400017, "message": "stand-in: page size 1..100"}, {}
    selected = [t for _, t in sorted(standin.twins.items()) if matcher(t)]
    page = [copy.deepcopy(t) for t in selected[start : start + size]]
    headers = {"x-ms-item-type": "Twin"}
    if start + size < len(selected):
        headers["x-ms-continuation"] = base64.b64encode(str(start + size).encode()).decode()
    return 200, page, headers
