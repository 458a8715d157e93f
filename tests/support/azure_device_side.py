"""Parts for the Azure device-side rotation test: a DPS device-API STAND-IN and a STAND-IN
for IoT Hub's MQTT side (mosquitto plus a bridge to the service stand-in).

``DpsStandIn`` answers the DPS device API over HTTPS with mutual TLS the way DPS documents
it for X.509 enrollment groups (api-version ``2021-10-01``): ``PUT
/{idScope}/registrations/{id}/register`` is 202 with an ``operationId``; ``GET
.../operations/{operationId}`` is 200 ``assigned`` with ``registrationState.assignedHub``.
It accepts only a client certificate that chains to the group's CA (the TLS handshake
checks it) and whose CN is the registration id (401 otherwise). What it does not do like
DPS: one enrollment group, no allocation policy (always the same hub), no custom payloads
or reprovisioning policies, no throttling. Every request is recorded with the serial of
the certificate presented.

``HubMqttStandIn`` plays IoT Hub between the service API stand-in and a device on mosquitto:
a direct method the service invokes is published on ``$iothub/methods/POST/{name}/?$rid=N``
and the device's ``$iothub/methods/res/{status}/?$rid=N`` becomes the answer; a reported
properties PATCH the device publishes updates the twin. Unlike IoT Hub, mosquitto does not
scope ``$iothub/...`` topics per connection, so it serves one device.
"""

from __future__ import annotations

import json
import queue
import re
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.pki import TestCa

DPS_API_VERSION = "2021-10-01"


@dataclass(frozen=True)
class DpsRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    presented_serial: int
    presented_cn: str


class DpsStandIn:
    """The stand-in (a context manager); ``port`` and ``ca.ca_file`` aim the device at it."""

    def __init__(self, ca: TestCa, *, id_scope: str, assigned_hub: str) -> None:
        self.ca = ca
        self.id_scope = id_scope
        self.assigned_hub = assigned_hub
        self.requests: list[DpsRequest] = []
        self._operations: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> DpsStandIn:
        creds = self.ca.server("dps-standin")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(creds.cert_file), str(creds.key_file))
        context.verify_mode = ssl.CERT_REQUIRED  # X.509 attestation: the group's CA
        context.load_verify_locations(str(self.ca.ca_file))
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                standin._handle(self)

            def do_GET(self) -> None:
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
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        der = handler.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        presented = x509.load_der_x509_certificate(der)
        cn = str(presented.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        request = DpsRequest(
            handler.command, parts.path, dict(parse_qsl(parts.query)), body,
            presented.serial_number, cn,
        )  # fmt: skip
        self.requests.append(request)
        status, answer = self._answer(request)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if status == 202:
            handler.send_header("retry-after", "1")
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, request: DpsRequest) -> tuple[int, dict[str, Any]]:
        if request.query.get("api-version") != DPS_API_VERSION:
            return 400, {"errorCode": 400001, "message": "stand-in: unsupported api-version"}
        register = re.fullmatch(r"/([^/]+)/registrations/([^/]+)/register", request.path)
        operation = re.fullmatch(r"/([^/]+)/registrations/([^/]+)/operations/([^/]+)", request.path)
        found = register or operation
        if found is None or unquote(found[1]) != self.id_scope:
            return 404, {"errorCode": 404001, "message": "stand-in: no such scope or route"}
        registration_id = unquote(found[2])
        if request.presented_cn != registration_id:
            return 401, {"errorCode": 401002, "message": "stand-in: CN is not the registration id"}
        if register is not None:
            if request.method != "PUT" or request.body != {"registrationId": registration_id}:
                return 400, {"errorCode": 400004, "message": "stand-in: bad registration body"}
            operation_id = f"op-{len(self._operations) + 1}"
            self._operations[operation_id] = registration_id
            return 202, {"operationId": operation_id, "status": "assigning"}
        assert operation is not None
        if self._operations.get(unquote(operation[3])) != registration_id:
            return 404, {"errorCode": 404002, "message": "stand-in: no such operation"}
        return 200, {
            "operationId": unquote(operation[3]),
            "status": "assigned",
            "registrationState": {
                "registrationId": registration_id,
                "assignedHub": self.assigned_hub,
                "deviceId": registration_id,
                "status": "assigned",
                "x509": {"enrollmentGroupId": "fleet"},
            },
        }


class HubMqttStandIn:
    """IoT Hub's device side for one device: direct methods and reported properties."""

    def __init__(
        self, hub: IotHubServiceStandIn, thing: str, port: int, ca: TestCa, *, timeout: float = 30
    ) -> None:
        self.hub = hub
        self.timeout = timeout
        self.thing = thing
        self._answers: dict[str, queue.Queue[tuple[int, Any]]] = {}
        self._rid = 0
        self._lock = threading.Lock()
        self.client = mqtt5_client("iothub-standin", ca.client("iothub-standin"))
        self.client.message_callback_add("$iothub/methods/res/#", self._method_answer)
        self.client.message_callback_add("$iothub/twin/PATCH/properties/reported/#", self._reported)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe(
            [("$iothub/methods/res/#", 1), ("$iothub/twin/PATCH/properties/reported/#", 1)]
        )
        assert subscribed.wait(10), "the hub stand-in could not subscribe"
        hub.answer_methods(thing, self.call)

    def call(self, method: str, payload: Any) -> tuple[int, Any]:
        with self._lock:
            self._rid += 1
            rid = str(self._rid)
            self._answers[rid] = queue.Queue()
        topic = f"$iothub/methods/POST/{method}/?$rid={rid}"
        self.client.publish(topic, json.dumps(payload), qos=1)
        try:
            return self._answers[rid].get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"{method}: no answer in {self.timeout} s") from None

    def _method_answer(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        found = re.fullmatch(r"\$iothub/methods/res/(\d+)/\?\$rid=(.+)", message.topic)
        if found and found[2] in self._answers:
            self._answers[found[2]].put((int(found[1]), json.loads(message.payload)))

    def _reported(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.hub.report(self.thing, json.loads(message.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
