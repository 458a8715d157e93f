"""IoT Hub's service REST API for device twins (azure-core, no extra SDK): the Azure inventory.

Three calls, all ``api-version=2021-04-12`` and a Microsoft Entra token for
``https://iothubs.azure.net/.default`` (role "IoT Hub Twin Contributor", or "IoT Hub
Data Reader" for the read-only ``certs plan`` and ``inventory export``):

- ``POST /devices/query`` with ``{"query": "SELECT * FROM devices WHERE ..."}``: twins,
  a page at a time (``x-ms-max-item-count``, at most 100 twins per page as IoT Hub
  documents; the next page's token in the ``x-ms-continuation`` header),
- ``GET /twins/{id}``: one twin with its ``etag``,
- ``PATCH /twins/{id}`` with ``If-Match: <etag>`` and ``{"tags": {...}}``: a JSON merge
  patch of the tags; a stale etag is 412, so two writers never overwrite each other.

Why not ``azure-iot-hub``: the service SDK is not among the pinned Azure packages; the
pipeline the direct methods use (azure-core) is enough for three calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

API_VERSION = "2021-04-12"
SCOPE = "https://iothubs.azure.net/.default"
#: Twins per query page (IoT Hub's maximum for twin queries).
PAGE_SIZE = 100
#: A twin is at most 32 KB of tags and properties (IoT Hub's limits); a page of 100 fits.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class HubServiceError(Exception):
    """IoT Hub refused or failed a twin call: ``status`` (HTTP; 0: not sent) and ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"IoT Hub: {status} {code}: {message}"[:300])
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Twin:
    """A device twin as the hub returns it: its id, etag, tags and reported properties."""

    device_id: str
    etag: str
    tags: dict[str, Any]
    reported: dict[str, Any]

    @classmethod
    def from_json(cls, document: Any) -> Twin:
        if not isinstance(document, dict) or not isinstance(document.get("deviceId"), str):
            raise HubServiceError(200, "MalformedTwin", "a twin without a deviceId")
        properties = document.get("properties") or {}
        reported = properties.get("reported") if isinstance(properties, dict) else None
        tags = document.get("tags")
        return cls(
            document["deviceId"],
            str(document.get("etag") or ""),
            tags if isinstance(tags, dict) else {},
            reported if isinstance(reported, dict) else {},
        )


def hub_pipeline(endpoint: str, credential: Any, *, retry_total: int) -> Any:
    """An azure-core pipeline to the hub's service API with a bearer token for ``SCOPE``."""
    from azure.core import PipelineClient
    from azure.core.pipeline import policies

    return PipelineClient(
        base_url=endpoint.rstrip("/"),
        policies=[
            policies.HeadersPolicy({"Content-Type": "application/json"}),
            policies.UserAgentPolicy("iot-remote-access"),
            policies.RetryPolicy(retry_total=retry_total),
            policies.BearerTokenCredentialPolicy(credential, SCOPE),
            policies.NetworkTraceLoggingPolicy(),
        ],
    )


class TwinClient:
    """Queries and patches twins of one hub. Query and GET are retried (throttling, 5xx);
    the PATCH too, which is safe: it carries the etag it was computed from."""

    def __init__(
        self, endpoint: str, credential: Any, *, connection_verify: str | bool = True
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._client: Any = hub_pipeline(self.endpoint, credential, retry_total=5)
        self._verify = connection_verify

    def query(self, sql: str) -> Iterator[Twin]:
        """Every twin ``sql`` selects, page after page."""
        continuation: str | None = None
        while True:
            headers = {"x-ms-max-item-count": str(PAGE_SIZE)}
            if continuation:
                headers["x-ms-continuation"] = continuation
            body = json.dumps({"query": sql}, separators=(",", ":")).encode("utf-8")
            response = self._send("POST", "/devices/query", body, headers)
            page = _json(response)
            if not isinstance(page, list):
                raise HubServiceError(200, "MalformedAnswer", "a query page is not a JSON array")
            for document in page:
                yield Twin.from_json(document)
            continuation = response.headers.get("x-ms-continuation")
            if not continuation:
                return

    def get(self, device_id: str) -> Twin:
        return Twin.from_json(_json(self._send("GET", _twin_path(device_id), None, {})))

    def patch_tags(self, device_id: str, tags: dict[str, Any], etag: str) -> Twin:
        """Merge ``tags`` into the twin's tags if it is still at ``etag`` (412 otherwise)."""
        body = json.dumps({"tags": tags}, separators=(",", ":")).encode("utf-8")
        response = self._send("PATCH", _twin_path(device_id), body, {"If-Match": etag})
        return Twin.from_json(_json(response))

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        request = HttpRequest(
            method,
            f"{self.endpoint}{path}",
            params={"api-version": API_VERSION},
            headers=headers,
            content=body,
        )
        try:
            response = self._client.send_request(request, connection_verify=self._verify)
        except AzureError as error:
            raise HubServiceError(0, type(error).__name__, str(error)[:200]) from None
        if not 200 <= response.status_code < 300:
            code, message = hub_error(response.text()[:4096])
            raise HubServiceError(response.status_code, code, message)
        return response


def _twin_path(device_id: str) -> str:
    return f"/twins/{quote(device_id, safe='')}"


def _json(response: Any) -> Any:
    data = response.read()
    if len(data) > MAX_RESPONSE_BYTES:
        raise HubServiceError(200, "AnswerTooLarge", f"{len(data)} bytes")
    try:
        return json.loads(data)
    except ValueError:
        raise HubServiceError(200, "MalformedAnswer", "the hub's answer is not JSON") from None


def hub_error(text: str) -> tuple[str, str]:
    """IoT Hub's error body: ``{"errorCode": 404103, "message": "..."}`` -> (code, message)."""
    try:
        document = json.loads(text)
    except ValueError:
        return "", text[:200]
    if not isinstance(document, dict):
        return "", text[:200]
    code = str(document.get("errorCode") or document.get("ErrorCode") or "")
    return code, str(document.get("message") or document.get("Message") or "")[:200]
