"""IoT Hub direct methods over the hub's service REST API (azure-core, no extra SDK).

``POST https://<hub>.azure-devices.net/twins/<device id>/methods?api-version=2021-04-12``
with ``{"methodName", "payload", "responseTimeoutInSeconds", "connectTimeoutInSeconds"}``,
authenticated with a Microsoft Entra token for ``https://iothubs.azure.net/.default``
(the caller needs the hub's "IoT Hub Data Contributor" role or a role with
``Microsoft.Devices/IotHubs/directMethods/invoke/action``). The answer is
``{"status": <the device's status code>, "payload": <its JSON>}``.

IoT Hub's limits (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods):
the response timeout is 5 to 300 seconds (default 30), the connect timeout (how long the
hub waits for an offline device to connect) 0 to 300 (default 0: the device must be
online), and request and response payloads are JSON documents of at most 128 KB.

Why not ``azure-iot-hub``: the service SDK is not among the pinned Azure packages, and
one POST does not need it; azure-core (pinned) brings the pipeline, the credential
policy and the transport the ARM clients already use. No retries: a direct method is not
idempotent, so a lost answer is reported, never re-sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from iot_remote_access.arm.hub_service import SCOPE as SCOPE  # re-exported: cli/command_azure
from iot_remote_access.arm.hub_service import hub_error, hub_pipeline

API_VERSION = "2021-04-12"
MIN_RESPONSE_TIMEOUT = 5
MAX_RESPONSE_TIMEOUT = 300
MAX_CONNECT_TIMEOUT = 300
#: IoT Hub's limit on a method's request and response payloads.
MAX_PAYLOAD_BYTES = 128 * 1024
_HOST_RE = re.compile(r"\A[a-z0-9][a-z0-9-]{1,48}[a-z0-9]\.azure-devices\.net\Z")


#: ``DirectMethodError.status`` when the request never reached the hub (connection failed).
NOT_SENT = 0
#: ``DirectMethodError.status`` when the request was sent but no answer came back (the
#: device may have run the method).
ANSWER_LOST = 598


class DirectMethodError(Exception):
    """IoT Hub refused or could not complete the call: ``status`` (HTTP, or
    :data:`NOT_SENT` / :data:`ANSWER_LOST`), ``code`` (IoT Hub's error code, e.g.
    ``404103`` device not online), one-line ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MethodResult:
    """The device's answer: its status code and its payload (any JSON)."""

    status: int
    payload: Any


def hub_endpoint(hub_name: str) -> str:
    host = f"{hub_name}.azure-devices.net"
    if not _HOST_RE.match(host):
        raise ValueError(f"iotHub.name: {hub_name[:60]!r} gives no IoT Hub host name")
    return f"https://{host}"


class DirectMethodClient:
    """Invokes direct methods on one hub. ``endpoint``: ``https://<hub>.azure-devices.net``
    (or a stand-in in tests); ``credential``: an azure-core ``TokenCredential``."""

    def __init__(
        self, endpoint: str, credential: Any, *, connection_verify: str | bool = True
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # No retries: a direct method is not idempotent.
        self._client: Any = hub_pipeline(self.endpoint, credential, retry_total=0)
        self._verify = connection_verify

    def invoke(
        self,
        device_id: str,
        method_name: str,
        payload: Any,
        *,
        response_timeout: int,
        connect_timeout: int = 0,
    ) -> MethodResult:
        """Call ``method_name`` on ``device_id``; raises :class:`DirectMethodError`."""
        if not MIN_RESPONSE_TIMEOUT <= response_timeout <= MAX_RESPONSE_TIMEOUT:
            raise ValueError(f"responseTimeoutInSeconds {response_timeout}; allowed: 5 to 300")
        if not 0 <= connect_timeout <= MAX_CONNECT_TIMEOUT:
            raise ValueError(f"connectTimeoutInSeconds {connect_timeout}; allowed: 0 to 300")
        body = json.dumps(
            {
                "methodName": method_name,
                "payload": payload,
                "responseTimeoutInSeconds": response_timeout,
                "connectTimeoutInSeconds": connect_timeout,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise DirectMethodError(413, "PayloadTooLarge", f"{len(body)} bytes; allowed: 128 KB")
        from azure.core.exceptions import AzureError, ServiceRequestError

        request = self._request(device_id, body)
        try:
            response = self._client.send_request(
                request,
                connection_verify=self._verify,
                # The hub answers after the device (or the timeouts): wait a little longer.
                read_timeout=response_timeout + connect_timeout + 15,
            )
        except ServiceRequestError as error:
            raise DirectMethodError(NOT_SENT, type(error).__name__, str(error)[:200]) from None
        except AzureError as error:
            raise DirectMethodError(ANSWER_LOST, type(error).__name__, str(error)[:200]) from None
        return _result(response)

    def _request(self, device_id: str, body: bytes) -> Any:
        from azure.core.rest import HttpRequest

        return HttpRequest(
            "POST",
            f"{self.endpoint}/twins/{quote(device_id, safe='')}/methods",
            params={"api-version": API_VERSION},
            content=body,
        )


def _result(response: Any) -> MethodResult:
    status = int(response.status_code)
    text = response.text()[: 2 * MAX_PAYLOAD_BYTES]
    if status != 200:
        code, message = hub_error(text)
        raise DirectMethodError(status, code, message)
    try:
        document = json.loads(text)
    except ValueError:
        raise DirectMethodError(status, "MalformedAnswer", "the hub's answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("status"), int):
        raise DirectMethodError(status, "MalformedAnswer", "no status in the hub's answer")
    return MethodResult(document["status"], document.get("payload"))
