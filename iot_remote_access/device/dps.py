"""DPS registration over HTTPS with the device's X.509 pair (standard library only).

``PUT https://<dps>/<idScope>/registrations/<registrationId>/register?api-version=2021-10-01``
with ``{"registrationId": ...}``, authenticated by the TLS client certificate (X.509
attestation: DPS finds the enrollment group whose CA the certificate chains to; the
registration id is the certificate's CN). DPS answers 202 with an ``operationId``; the
device polls ``GET .../registrations/<id>/operations/<operationId>`` until ``assigned``
and learns its hub (``registrationState.assignedHub``). Re-registering with a renewed
certificate is how a device tells DPS, and through it the hub, about the new certificate.

Why HTTPS and not DPS's MQTT: one request and a poll need no second MQTT session, and
``http.client`` takes the same ``ssl.SSLContext`` (file or PKCS#11 key) the device's
MQTT connection uses.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

API_VERSION = "2021-10-01"
GLOBAL_ENDPOINT = "global.azure-devices-provisioning.net"
#: Where ``_call`` puts DPS's retry-after header (seconds) in the answer it returns.
RETRY_AFTER = "_retryAfter"
#: Largest DPS answer read (a registration state is well under 8 KB).
MAX_ANSWER_BYTES = 64 * 1024


class DpsError(RuntimeError):
    """DPS refused or did not assign the device (HTTP status and DPS's message, no secrets)."""


@dataclass(frozen=True)
class Dps:
    """Where and how the device registers.

    :param id_scope: the DPS instance's ID scope (``0ne...``).
    :param host: Default: the global device endpoint.
    :param port: Default 443.
    :param server_ca_file: CA bundle that verifies DPS. Default: the system's.
    :param timeout: seconds for the whole registration. Default 60.
    """

    id_scope: str
    host: str = GLOBAL_ENDPOINT
    port: int = 443
    server_ca_file: Path | None = None
    timeout: float = 60.0

    def register(self, registration_id: str, context: ssl.SSLContext) -> str:
        """Register ``registration_id`` presenting the pair in ``context``; the assigned hub."""
        base = f"/{quote(self.id_scope, safe='')}/registrations/{quote(registration_id, safe='')}"
        body = json.dumps({"registrationId": registration_id}).encode("utf-8")
        deadline = time.monotonic() + self.timeout
        status, answer = self._call(context, "PUT", f"{base}/register", body)
        while status == 202 or answer.get("status") == "assigning":
            operation = answer.get("operationId")
            if not isinstance(operation, str) or time.monotonic() > deadline:
                raise DpsError(f"DPS did not assign {registration_id!r} in {self.timeout:.0f} s")
            time.sleep(min(max(float(answer.get(RETRY_AFTER, 1)), 0.2), 5.0))
            status, answer = self._call(
                context, "GET", f"{base}/operations/{quote(operation, safe='')}", None
            )
        state = answer.get("registrationState") or {}
        hub = state.get("assignedHub") if isinstance(state, dict) else None
        if status != 200 or answer.get("status") != "assigned" or not isinstance(hub, str):
            message = str(answer.get("message") or state.get("errorMessage") or "")[:200]
            raise DpsError(f"DPS: {status} {answer.get('status')}: {message}")
        return hub

    def _call(
        self, context: ssl.SSLContext, method: str, path: str, body: bytes | None
    ) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=context, timeout=self.timeout
        )
        try:
            connection.request(
                method,
                f"{path}?api-version={API_VERSION}",
                body=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            response = connection.getresponse()
            data = response.read(MAX_ANSWER_BYTES + 1)
            retry_after = response.getheader("retry-after")
        except ssl.SSLError as error:
            raise DpsError(f"DPS refused the TLS handshake ({type(error).__name__})") from None
        except (OSError, http.client.HTTPException) as error:
            raise DpsError(f"DPS unreachable: {type(error).__name__}") from None
        finally:
            connection.close()
        try:
            answer = json.loads(data) if data and len(data) <= MAX_ANSWER_BYTES else {}
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if retry_after and retry_after.isdigit():
            answer[RETRY_AFTER] = int(retry_after)
        return response.status, answer

    def tls_context(self) -> ssl.SSLContext:
        """A TLS context that verifies DPS; the caller loads the device's pair into it."""
        return ssl.create_default_context(
            cafile=str(self.server_ca_file) if self.server_ca_file else None
        )
