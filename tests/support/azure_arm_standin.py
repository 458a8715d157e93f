"""A local stand-in for Azure Resource Manager, for tests only.

No public Azure emulator exists, so the tests run the real Azure SDKs over
HTTPS against this stand-in on 127.0.0.1. It implements just what the Azure
constructs use, the way ARM behaves as documented:

- PUT/GET/PATCH/POST on IoT hubs, hub certificates, DPS instances, DPS
  certificates, role assignments, diagnostic settings and scheduled query
  rules, with ETags and ``If-Match`` (IoT Hub requires it to update a hub),
- long-running operations: 201 + ``Azure-AsyncOperation`` header, polled to
  ``Succeeded`` or ``Failed`` (with ARM's error object),
- ARM error bodies (``{"error": {"code", "message"}}``), 404 for absent
  resources and resource groups, 412 for a stale or missing ETag,
- throttling: 429 with ``Retry-After`` on demand,
- proof of possession: verification codes, and a verify step that checks the
  verification certificate's CN and its signature with the uploaded CA key,
- an App Service managed-identity token endpoint, so the real
  DefaultAzureCredential obtains a fake token from it,
- Key Vault's secret GET with its authentication challenge (401 +
  ``WWW-Authenticate``, then the bearer token).

What it does not know, it answers the way ARM answers an unknown type
(400 ``NoRegisteredProviderFound``). Error codes that are the stand-in's own
(``InvalidVerificationCertificate``, ``IotHubLinkUnauthorized``) are marked as
such; real Azure's codes for those cases may differ.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FAKE_TOKEN = "fake-token-from-arm-stand-in"
IDENTITY_HEADER = "stand-in-identity-header"
IOT_HUB_API_VERSIONS = {"2023-06-30", "2023-06-30-preview"}
STREAMS_REGIONS = {"centralus", "centraluseuap", "northeurope", "southeastasia"}
IOT_HUB_DATA_CONTRIBUTOR = "4fc6c259-987e-4a07-842e-c321cc9d413f"
DEFAULT_HUB_POLICIES = [
    {"keyName": "iothubowner", "rights": "RegistryWrite, ServiceConnect, DeviceConnect"},
    {"keyName": "service", "rights": "ServiceConnect"},
    {"keyName": "device", "rights": "DeviceConnect"},
    {"keyName": "registryRead", "rights": "RegistryRead"},
    {"keyName": "registryReadWrite", "rights": "RegistryWrite"},
]

_SEG = r"[^/]+"
_RG = rf"/subscriptions/(?P<sub>{_SEG})/resourcegroups/(?P<rg>{_SEG})"
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    (
        "hub_cert_action",
        re.compile(
            rf"{_RG}/providers/microsoft\.devices/iothubs/(?P<hub>{_SEG})/certificates/(?P<name>{_SEG})"
            r"/(?P<action>generateverificationcode|verify)$"
        ),
    ),
    (
        "hub_cert",
        re.compile(
            rf"{_RG}/providers/microsoft\.devices/iothubs/(?P<hub>{_SEG})/certificates/(?P<name>{_SEG})$"
        ),
    ),
    (
        "hub_listkeys",
        re.compile(rf"{_RG}/providers/microsoft\.devices/iothubs/(?P<hub>{_SEG})/listkeys$"),
    ),
    (
        "dps_cert_action",
        re.compile(
            rf"{_RG}/providers/microsoft\.devices/provisioningservices/(?P<dps>{_SEG})/certificates/"
            rf"(?P<name>{_SEG})/(?P<action>generateverificationcode|verify)$"
        ),
    ),
    (
        "dps_cert",
        re.compile(
            rf"{_RG}/providers/microsoft\.devices/provisioningservices/(?P<dps>{_SEG})/certificates/(?P<name>{_SEG})$"
        ),
    ),
    (
        "role",
        re.compile(
            r"(?P<scope>.+)/providers/microsoft\.authorization/roleassignments/(?P<name>[^/]+)$"
        ),
    ),
    (
        "diag",
        re.compile(
            r"(?P<scope>.+)/providers/microsoft\.insights/diagnosticsettings/(?P<name>[^/]+)$"
        ),
    ),
    ("hub", re.compile(rf"{_RG}/providers/microsoft\.devices/iothubs/(?P<name>{_SEG})$")),
    (
        "dps",
        re.compile(rf"{_RG}/providers/microsoft\.devices/provisioningservices/(?P<name>{_SEG})$"),
    ),
    (
        "rule",
        re.compile(rf"{_RG}/providers/microsoft\.insights/scheduledqueryrules/(?P<name>{_SEG})$"),
    ),
]
API_VERSIONS = {
    "hub": IOT_HUB_API_VERSIONS,
    "hub_cert": IOT_HUB_API_VERSIONS,
    "hub_cert_action": IOT_HUB_API_VERSIONS,
    "hub_listkeys": IOT_HUB_API_VERSIONS,
    "role": {"2022-04-01"},
    "diag": {"2021-05-01-preview"},
    "rule": {"2023-12-01"},
}


class ArmError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    response: Any = None

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")


@dataclass
class _Operation:
    resource_key: str
    polls_left: int
    failure: tuple[str, str] | None
    on_success: Any = None
    status: str = "InProgress"


@dataclass
class _Throttle:
    method: str
    contains: str
    times: int
    retry_after: int


@dataclass
class _Failure:
    contains: str
    code: str
    message: str


def _etag() -> str:
    return f'"{uuid.uuid4()}"'


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


@dataclass
class ArmStandIn:
    """The stand-in server (a context manager); ``endpoint`` and ``ca_bundle`` aim the SDK at it."""

    workdir: Path
    #: Polls that answer InProgress before a long-running operation ends.
    lro_polls: int = 1
    #: Retry-After (seconds) on long-running operations, as ARM sends it; None: no header.
    lro_retry_after: int | None = None
    resource_groups: set[tuple[str, str]] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._operations: dict[str, _Operation] = {}
        self._throttles: list[_Throttle] = []
        self._failures: list[_Failure] = []
        self._codes: dict[str, str] = {}
        self._secrets: dict[str, tuple[str, str | None]] = {}
        self.ca_bundle = self.workdir / "arm-stand-in-ca.pem"
        self._server: ThreadingHTTPServer | None = None

    # -- test controls ---------------------------------------------------------

    def add_resource_group(self, subscription: str, name: str) -> None:
        self.resource_groups.add((subscription.lower(), name.lower()))

    def throttle(
        self, method: str, path_contains: str, *, times: int = 1, retry_after: int = 1
    ) -> None:
        """The next ``times`` matching requests get 429 with ``Retry-After: retry_after``."""
        self._throttles.append(_Throttle(method, path_contains.lower(), times, retry_after))

    def fail_next_operation(self, path_contains: str, *, code: str, message: str) -> None:
        """The next long-running operation on a matching path ends ``Failed``, half-applied."""
        self._failures.append(_Failure(path_contains.lower(), code, message))

    def writes(self, since: int = 0) -> list[Recorded]:
        """Requests that change something (everything but GETs, polls and token requests)."""
        return [
            r
            for r in self.requests[since:]
            if r.method != "GET" and not r.path.startswith("/standin/") and r.path != "/msi/token"
        ]

    def add_secret(self, name: str, value: str, content_type: str | None = None) -> str:
        """A Key Vault secret served at ``{endpoint}/secrets/{name}``; returns its id."""
        self._secrets[name] = (value, content_type)
        return f"{self.endpoint}/secrets/{name}"

    def find(self, method: str, path_contains: str) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.method == method and path_contains.lower() in r.path.lower()
        ]

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_id.lower())

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> ArmStandIn:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert_file, key_file = self._tls_files()
        context.load_cert_chain(cert_file, key_file)
        standin = self

        class Handler(_Handler):
            owner = standin

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

    @property
    def identity_endpoint(self) -> str:
        return f"{self.endpoint}/msi/token"

    def _tls_files(self) -> tuple[Path, Path]:
        """A throwaway CA and a server certificate for 127.0.0.1 (tokens need https)."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ARM stand-in test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress

        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_file = self.workdir / "arm-stand-in-server.pem"
        key_file = self.workdir / "arm-stand-in-server.key"
        cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file

    # -- request handling ---------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query))
        record = Recorded(method, parts.path, query, headers, body)
        with self._lock:
            self.requests.append(record)
            try:
                status, out_headers, out = self._dispatch(method, parts.path, query, headers, body)
            except ArmError as error:
                status, out_headers = error.status, error.headers
                out = {"error": {"code": error.code, "message": error.message}}
            record.status, record.response = status, out
            return status, out_headers, out

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path == "/msi/token":
            if headers.get("x-identity-header") != IDENTITY_HEADER:
                raise ArmError(401, "Unauthorized", "missing or wrong X-IDENTITY-HEADER")
            self.tokens_issued += 1
            expires = int(time.time()) + 3600
            return (
                200,
                {},
                {
                    "access_token": FAKE_TOKEN,
                    "expires_on": str(expires),
                    "resource": query.get("resource", ""),
                    "token_type": "Bearer",
                },
            )
        if path.startswith("/secrets/"):
            return self._secret(path, query, headers)
        if headers.get("authorization") != f"Bearer {FAKE_TOKEN}":
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or invalid.",
            )
        for rule in self._throttles:
            if rule.times > 0 and rule.method == method and rule.contains in path.lower():
                rule.times -= 1
                raise ArmError(
                    429,
                    "TooManyRequests",
                    "The request is being throttled.",
                    {"Retry-After": str(rule.retry_after)},
                )
        if path.startswith("/standin/operations/"):
            return self._poll(path.rsplit("/", 1)[1])
        lower = path.lower()
        found = next(((k, m) for k, p in ROUTES if (m := p.match(lower))), None)
        if found is None:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for {path}",
            )
        kind, match = found
        api_version = query.get("api-version")
        if not api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required.",
            )
        allowed = API_VERSIONS.get(kind)
        if allowed is not None and api_version not in allowed:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for API version '{api_version}'. "
                f"The supported api-versions are '{', '.join(sorted(allowed))}'.",
            )
        groups = match.groupdict()
        if "sub" in groups:
            self._require_group(groups["sub"], groups["rg"])
        handler = getattr(self, f"_{kind}")
        return handler(method, path, match, query, headers, body)  # type: ignore[no-any-return]

    def _require_group(self, sub: str, rg: str) -> None:
        if (sub, rg) not in self.resource_groups:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
            )

    def _get(self, path: str, kind: str) -> tuple[int, dict[str, str], Any]:
        stored = self.resources.get(path.lower())
        if stored is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{kind}/{path.rsplit('/', 1)[1]}' was not found.",
            )
        return 200, {}, copy.deepcopy(stored)

    def _start_operation(self, key: str, on_success: Any = None) -> dict[str, str]:
        failure = next((f for f in self._failures if f.contains in key), None)
        if failure is not None:
            self._failures.remove(failure)
        op_id = uuid.uuid4().hex
        self._operations[op_id] = _Operation(
            key, self.lro_polls, (failure.code, failure.message) if failure else None, on_success
        )
        url = f"{self.endpoint}/standin/operations/{op_id}?api-version=2023-06-30"
        headers = {"Azure-AsyncOperation": url, "Location": url}
        if self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return headers

    def _poll(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        operation = self._operations.get(op_id)
        if operation is None:
            raise ArmError(404, "OperationNotFound", f"operation {op_id} not found")
        if operation.status == "InProgress":
            if operation.polls_left > 0:
                operation.polls_left -= 1
                retry = self.lro_retry_after
                headers = {} if retry is None else {"Retry-After": str(retry)}
                return 200, headers, {"status": "InProgress"}
            resource = self.resources.get(operation.resource_key)
            if operation.failure is not None:
                operation.status = "Failed"
                if resource is not None:
                    # Half-applied: the resource exists, in Failed state, without what was asked.
                    resource["properties"] = {
                        k: v
                        for k, v in resource.get("properties", {}).items()
                        if k in ("hostName", "state", "locations")
                    }
                    resource["properties"]["provisioningState"] = "Failed"
                    resource["etag"] = _etag()
            else:
                operation.status = "Succeeded"
                if resource is not None:
                    resource.setdefault("properties", {})["provisioningState"] = "Succeeded"
                    if operation.on_success is not None:
                        operation.on_success(resource)
        body: dict[str, Any] = {"status": operation.status}
        if operation.failure is not None:
            body["error"] = {"code": operation.failure[0], "message": operation.failure[1]}
        return 200, {}, body

    @staticmethod
    def _require_etag(
        stored: dict[str, Any] | None, headers: dict[str, str], *, required: bool, what: str
    ) -> None:
        if_match = headers.get("if-match")
        if stored is None:
            if if_match:
                raise ArmError(
                    412,
                    "PreconditionFailed",
                    f"{what} does not exist; do not send If-Match to create it",
                )
            return
        if if_match is None:
            if required:
                raise ArmError(
                    412,
                    "PreconditionFailed",
                    f"If-Match with the ETag is required to update {what}",
                )
            return
        if if_match != stored.get("etag") and if_match != "*":
            raise ArmError(
                412,
                "PreconditionFailed",
                f"ETag {if_match} does not match the current ETag of {what}",
            )

    # Key Vault ---------------------------------------------------------------------

    def _secret(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        if headers.get("authorization") != f"Bearer {FAKE_TOKEN}":
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/'
                '00000000-0000-0000-0000-00000000cafe", resource="https://vault.azure.net"'
            )
            raise ArmError(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer token.",
                {"WWW-Authenticate": challenge},
            )
        if "api-version" not in query:
            raise ArmError(400, "BadParameter", "api-version is required")
        parts = path.strip("/").split("/")
        name = parts[1] if len(parts) > 1 else ""
        if name not in self._secrets:
            raise ArmError(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name} was not found in this key vault.",
            )
        value, content_type = self._secrets[name]
        version = parts[2] if len(parts) > 2 and parts[2] else "0123456789abcdef"
        body: dict[str, Any] = {
            "value": value,
            "id": f"{self.endpoint}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": 1767225600, "updated": 1767225600},
        }
        if content_type:
            body["contentType"] = content_type
        return 200, {}, body

    # IoT hub ---------------------------------------------------------------------

    def _hub(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if method == "GET":
            status, out_headers, out = self._get(path, "Microsoft.Devices/IotHubs")
            if query["api-version"] != "2023-06-30-preview":
                out.get("properties", {}).pop("deviceStreams", None)
            return status, out_headers, out
        stored = self.resources.get(key)
        name = path.rsplit("/", 1)[1]
        if method == "PATCH":
            if stored is None:
                raise ArmError(404, "ResourceNotFound", f"IoT hub {name} not found")
            stored["tags"] = dict(body.get("tags") or {})
            stored["etag"] = _etag()
            return 200, {}, copy.deepcopy(stored)
        if method == "POST":
            raise ArmError(405, "MethodNotAllowed", "POST is not supported on an IoT hub")
        self._require_etag(stored, headers, required=True, what=f"IoT hub {name}")
        if not isinstance(body, dict) or "location" not in body or "sku" not in body:
            raise ArmError(400, "InvalidRequestContent", "location and sku are required")
        location = body["location"].replace(" ", "").lower()
        if stored is not None and stored["location"] != location:
            raise ArmError(400, "LocationNotChangeable", "an IoT hub cannot move to another region")
        new = copy.deepcopy(body)
        new.update(
            id=path, name=name, type="Microsoft.Devices/IotHubs", location=location, etag=_etag()
        )
        props = new.setdefault("properties", {})
        if props.get("authorizationPolicies") is None:
            props["authorizationPolicies"] = copy.deepcopy(DEFAULT_HUB_POLICIES)
        props.update(
            hostName=f"{name}.azure-devices.net",
            state="Active",
            provisioningState="Accepted",
            locations=[{"location": location, "role": "primary"}],
        )
        events = props.setdefault("eventHubEndpoints", {}).setdefault("events", {})
        events.setdefault("retentionTimeInDays", 1)
        events.setdefault("partitionCount", 4)
        events["partitionIds"] = [str(i) for i in range(events["partitionCount"])]
        events["endpoint"] = f"sb://{name}.servicebus.windows.net/"
        events["path"] = name
        if query["api-version"] == "2023-06-30-preview" and location in STREAMS_REGIONS:
            props["deviceStreams"] = {
                "streamingEndpoints": [f"https://{location}.streams.azure-devices.net"]
            }
        self.resources[key] = new
        out = copy.deepcopy(new)
        return (200 if stored else 201), self._start_operation(key), out

    def _hub_listkeys(self, *args: Any) -> tuple[int, dict[str, str], Any]:
        # Never called by the library (no iothubowner use); present so a test can prove that.
        return 200, {}, {"value": [dict(p, primaryKey="c2VjcmV0") for p in DEFAULT_HUB_POLICIES]}

    # certificates (hub and DPS) -----------------------------------------------------------

    def _parent(self, path: str, marker: str) -> dict[str, Any]:
        parent_path = path[: path.lower().index(marker)]
        parent = self.resources.get(parent_path.lower())
        if parent is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{parent_path.rsplit('/', 1)[1]}' was not found.",
            )
        return parent

    @staticmethod
    def _load_certificate(value: str, *, base64_body: bool) -> x509.Certificate:
        try:
            raw = base64.b64decode(value) if base64_body else value.encode()
            if b"-----BEGIN" in raw:
                return x509.load_pem_x509_certificate(raw)
            if not base64_body:
                raw = base64.b64decode(value)
            return x509.load_der_x509_certificate(raw)
        except ValueError:
            raise ArmError(
                400, "InvalidCertificate", "the certificate is not a valid X.509 certificate"
            ) from None

    def _certificate(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        *,
        parent_marker: str,
        kind: str,
        base64_body: bool,
    ) -> tuple[int, dict[str, str], Any]:
        self._parent(path, parent_marker)
        key = path.lower()
        if method == "GET":
            return self._get(path, kind)
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        stored = self.resources.get(key)
        self._require_etag(
            stored, headers, required=True, what=f"certificate {path.rsplit('/', 1)[1]}"
        )
        content = (body or {}).get("properties", {}).get("certificate")
        if not isinstance(content, str):
            raise ArmError(400, "InvalidCertificate", "properties.certificate is required")
        certificate = self._load_certificate(content, base64_body=base64_body)
        now = _now()
        new = {
            "id": path,
            "name": path.rsplit("/", 1)[1],
            "type": kind,
            "etag": _etag(),
            "properties": {
                "subject": certificate.subject.rfc4514_string(),
                "expiry": certificate.not_valid_after_utc.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                "thumbprint": certificate.fingerprint(hashes.SHA1()).hex().upper(),
                "isVerified": bool(body["properties"].get("isVerified", False)),
                "created": stored["properties"]["created"] if stored else now,
                "updated": now,
                "certificate": content,
            },
        }
        self.resources[key] = new
        # IoT Hub answers a new certificate with 201, DPS always with 200.
        return (201 if stored is None and not base64_body else 200), {}, copy.deepcopy(new)

    def _certificate_action(
        self,
        path: str,
        match: re.Match[str],
        headers: dict[str, str],
        body: Any,
        *,
        base64_body: bool,
    ) -> tuple[int, dict[str, str], Any]:
        cert_path = path.rsplit("/", 1)[0]
        stored = self.resources.get(cert_path.lower())
        if stored is None:
            raise ArmError(404, "ResourceNotFound", f"certificate {match['name']} not found")
        if headers.get("if-match") is None:
            raise ArmError(
                412, "PreconditionFailed", "If-Match with the certificate's ETag is required"
            )
        self._require_etag(stored, headers, required=True, what=f"certificate {match['name']}")
        if match["action"] == "generateverificationcode":
            code = secrets.token_hex(16).upper()
            self._codes[cert_path.lower()] = code
            stored["etag"] = _etag()
            out = copy.deepcopy(stored)
            out["properties"]["verificationCode"] = code
            return 200, {}, out
        code = self._codes.get(cert_path.lower())
        content = (body or {}).get("certificate")
        if code is None or not isinstance(content, str):
            raise ArmError(
                400,
                "InvalidVerificationCertificate",
                "generate a verification code first (stand-in code)",
            )
        proof = self._load_certificate(content, base64_body=False)
        ca = self._load_certificate(stored["properties"]["certificate"], base64_body=base64_body)
        cn = proof.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            if not cn or cn[0].value != code:
                raise ValueError("CN is not the verification code")
            proof.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception) as error:  # InvalidSignature is not a ValueError
            raise ArmError(
                400,
                "InvalidVerificationCertificate",
                f"verification certificate rejected: {type(error).__name__} (stand-in code)",
            ) from None
        del self._codes[cert_path.lower()]
        stored["properties"]["isVerified"] = True
        stored["properties"]["updated"] = _now()
        stored["etag"] = _etag()
        return 200, {}, copy.deepcopy(stored)

    def _hub_cert(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        return self._certificate(
            method,
            path,
            headers,
            body,
            parent_marker="/certificates/",
            kind="Microsoft.Devices/IotHubs/Certificates",
            base64_body=False,
        )

    def _hub_cert_action(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        self._parent(path, "/certificates/")
        return self._certificate_action(path, match, headers, body, base64_body=False)

    def _dps_cert(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        return self._certificate(
            method,
            path,
            headers,
            body,
            parent_marker="/certificates/",
            kind="Microsoft.Devices/provisioningServices/certificates",
            base64_body=True,
        )

    def _dps_cert_action(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        self._parent(path, "/certificates/")
        return self._certificate_action(path, match, headers, body, base64_body=True)

    # DPS ------------------------------------------------------------------------------------

    def _dps(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if method == "GET":
            return self._get(path, "Microsoft.Devices/provisioningServices")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        stored = self.resources.get(key)
        self._require_etag(stored, headers, required=False, what="the DPS")
        name = path.rsplit("/", 1)[1]
        new = copy.deepcopy(body)
        new.update(
            id=path,
            name=name,
            type="Microsoft.Devices/provisioningServices",
            location=body["location"].replace(" ", "").lower(),
            etag=_etag(),
        )
        identity = new.get("identity") or {}
        if identity.get("type") == "SystemAssigned":
            old = (stored or {}).get("identity") or {}
            identity["principalId"] = old.get("principalId") or str(uuid.uuid4())
            identity["tenantId"] = "00000000-0000-0000-0000-00000000cafe"
        props = new.setdefault("properties", {})
        if props.get("authorizationPolicies") is None:
            props["authorizationPolicies"] = [
                {
                    "keyName": "provisioningserviceowner",
                    "rights": "ServiceConfig, DeviceConnect, EnrollmentWrite",
                }
            ]
        for link in props.get("iotHubs") or []:
            self._check_link(path, link, identity.get("principalId"))
            link["name"] = link.get("hostName")
        props.update(
            idScope="0ne00STANDIN",
            state="Active",
            provisioningState="Accepted",
            serviceOperationsHostName=f"{name}.azure-devices-provisioning.net",
            deviceProvisioningHostName="global.azure-devices-provisioning.net",
        )
        self.resources[key] = new
        return (200 if stored else 201), self._start_operation(key), copy.deepcopy(new)

    def _check_link(self, dps_path: str, link: dict[str, Any], principal: str | None) -> None:
        host = str(link.get("hostName", "")).lower()
        hub = next(
            (
                r
                for r in self.resources.values()
                if r.get("type") == "Microsoft.Devices/IotHubs"
                and r.get("properties", {}).get("hostName", "").lower() == host
            ),
            None,
        )
        if hub is None:
            raise ArmError(400, "IotHubNotFound", f"linked IoT hub {host} not found")
        if link.get("authenticationType") in ("SystemAssigned", "UserAssigned"):
            granted = any(
                r.get("type") == "Microsoft.Authorization/roleAssignments"
                and r["properties"]["scope"].lower() == hub["id"].lower()
                and r["properties"]["principalId"] == principal
                and r["properties"]["roleDefinitionId"].lower().endswith(IOT_HUB_DATA_CONTRIBUTOR)
                for r in self.resources.values()
            )
            if not granted:
                raise ArmError(
                    400,
                    "IotHubLinkUnauthorized",
                    "the DPS identity has no IoT Hub Data Contributor role on the hub "
                    "(stand-in code)",
                )
        elif not link.get("connectionString"):
            raise ArmError(400, "InvalidIotHubLink", "KeyBased links need a connection string")

    # generic ARM: role assignments, diagnostic settings, scheduled query rules ------------------

    def _role(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if method == "GET":
            return self._get(path, "Microsoft.Authorization/roleAssignments")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        scope = path[: len(match["scope"])]
        if scope.lower() not in self.resources:
            raise ArmError(404, "ResourceNotFound", f"scope {scope} not found")
        props = dict((body or {}).get("properties") or {})
        if not props.get("principalId") or not props.get("roleDefinitionId"):
            raise ArmError(
                400, "InvalidRoleAssignmentRequest", "principalId and roleDefinitionId are required"
            )
        try:
            uuid.UUID(match["name"])
        except ValueError:
            raise ArmError(
                400, "InvalidRoleAssignmentId", "the role assignment name must be a GUID"
            ) from None
        stored = self.resources.get(key)
        if stored is not None:
            if any(
                stored["properties"].get(k) != props.get(k)
                for k in ("principalId", "roleDefinitionId")
            ):
                raise ArmError(
                    409, "RoleAssignmentUpdateNotPermitted", "role assignments cannot be updated"
                )
            return 201, {}, copy.deepcopy(stored)
        props["scope"] = scope
        new = {
            "id": path,
            "name": match["name"],
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": props,
        }
        self.resources[key] = new
        return 201, {}, copy.deepcopy(new)

    def _diag(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if method == "GET":
            return self._get(path, "Microsoft.Insights/diagnosticSettings")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        scope = path[: len(match["scope"])]
        if scope.lower() not in self.resources:
            raise ArmError(404, "ResourceNotFound", f"resource {scope} not found")
        props = copy.deepcopy((body or {}).get("properties") or {})
        if not props.get("workspaceId"):
            raise ArmError(400, "BadRequest", "a destination (workspaceId) is required")
        for log in props.get("logs", []):
            log.setdefault("retentionPolicy", {"enabled": False, "days": 0})
            log.setdefault("categoryGroup", None)
        new = {
            "id": path,
            "name": match["name"],
            "type": "Microsoft.Insights/diagnosticSettings",
            "properties": props,
        }
        self.resources[key] = new
        return 200, {}, copy.deepcopy(new)

    def _rule(
        self,
        method: str,
        path: str,
        match: re.Match[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        if method == "GET":
            return self._get(path, "Microsoft.Insights/scheduledQueryRules")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        props = (body or {}).get("properties") or {}
        for required in ("scopes", "criteria", "windowSize", "evaluationFrequency"):
            if required not in props:
                raise ArmError(400, "BadRequest", f"properties.{required} is required")
        stored = self.resources.get(key)
        new = copy.deepcopy(body)
        new.update(
            id=path, name=match["name"], type="Microsoft.Insights/scheduledQueryRules", etag=_etag()
        )
        new["properties"]["createdWithApiVersion"] = query["api-version"]
        new["properties"]["isWorkspaceAlertsStorageConfigured"] = False
        self.resources[key] = new
        return (200 if stored else 201), {}, copy.deepcopy(new)


class _Handler(BaseHTTPRequestHandler):
    owner: ArmStandIn
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, each response waits
    # for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, out = self.owner.handle(self.command, self.path, headers, body)
        payload = json.dumps(out).encode() if out is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _serve
