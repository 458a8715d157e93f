"""STAND-INS for Azure Storage, for the ledger's anchor tests only (no Azure emulator is used).

- ``StorageArmStandIn``: the ARM stand-in (``azure_arm_standin.ArmStandIn``) plus the
  storage resources the anchor container needs, as ARM documents them: storage accounts,
  blob containers, a container's immutability policy (``PUT``, ``GET``) and its
  ``lock`` and ``extend`` actions (``If-Match`` required and checked: 412). A locked
  policy refuses PUT (409) and shortening (400). Error codes marked "stand-in's own"
  may differ from Azure's.
- ``BlobStandIn``: the Blob service data plane on loopback HTTP (path-style URLs,
  ``http://127.0.0.1:port/<account>/<container>/<blob>``, as Azurite uses): Put Blob
  with ``If-None-Match: *`` (409 ``BlobAlreadyExists``), overwriting a blob of a
  container with a locked policy refused (409 ``BlobImmutableDueToPolicy``), List Blobs
  and Get Blob. Anonymous requests only (the SDK refuses bearer tokens over HTTP).
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.support.azure_arm_standin import FAKE_TOKEN, ArmError, ArmStandIn

STORAGE_API = "2023-05-01"
_ACCOUNT = (
    r"/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
    r"/providers/microsoft\.storage/storageaccounts/(?P<acct>[^/]+)"
)
_CONTAINER = _ACCOUNT + r"/blobservices/default/containers/(?P<c>[^/]+)"
STORAGE_ROUTES = [
    ("policy_action", re.compile(_CONTAINER + r"/immutabilitypolicies/default/(?P<action>lock|extend)$")),
    ("policy", re.compile(_CONTAINER + r"/immutabilitypolicies/default$")),
    ("container", re.compile(_CONTAINER + "$")),
    ("account", re.compile(_ACCOUNT + "$")),
]  # fmt: skip


def _etag() -> str:
    return f'"{uuid.uuid4().hex}"'


@dataclass
class StorageArmStandIn(ArmStandIn):
    """The ARM stand-in with storage accounts, containers and immutability policies."""

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        lower = path.lower()
        found = next(((k, m) for k, p in STORAGE_ROUTES if (m := p.match(lower))), None)
        if found is None:
            return super()._dispatch(method, path, query, headers, body)
        if headers.get("authorization") != f"Bearer {FAKE_TOKEN}":
            raise ArmError(401, "AuthenticationFailed", "The 'Authorization' header is missing.")
        if query.get("api-version") != STORAGE_API:
            raise ArmError(
                400, "InvalidApiVersionParameter", f"api-version {query.get('api-version')}"
            )
        kind, match = found
        self._require_group(match["sub"], match["rg"])
        return getattr(self, f"_storage_{kind}")(method, path, match, headers, body)  # type: ignore[no-any-return]

    def _storage_account(
        self, method: str, path: str, match: re.Match[str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET":
            return self._get(path, "Microsoft.Storage/storageAccounts")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        for required in ("location", "kind", "sku"):
            if not (body or {}).get(required):
                raise ArmError(400, "InvalidRequestContent", f"{required} is required")
        stored = copy.deepcopy(body)
        stored.update(id=path, name=match["acct"], type="Microsoft.Storage/storageAccounts")
        stored.setdefault("properties", {})["provisioningState"] = "Succeeded"
        self.resources[path.lower()] = stored
        return 200, {}, copy.deepcopy(stored)

    def _storage_container(
        self, method: str, path: str, match: re.Match[str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET":
            return self._get(path, "Microsoft.Storage/storageAccounts/blobServices/containers")
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        account = path.lower().split("/blobservices/")[0]
        if account not in self.resources:
            raise ArmError(404, "ResourceNotFound", "The storage account was not found.")
        stored = {
            "id": path,
            "name": match["c"],
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
            "etag": _etag(),
            "properties": {
                "publicAccess": ((body or {}).get("properties") or {}).get("publicAccess", "None"),
                "hasImmutabilityPolicy": False,
            },
        }
        existing = self.resources.get(path.lower())
        self.resources[path.lower()] = stored
        return (200 if existing else 201), {}, copy.deepcopy(stored)

    def _storage_policy(
        self, method: str, path: str, match: re.Match[str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        key = path.lower()
        container = key.split("/immutabilitypolicies/")[0]
        if container not in self.resources:
            raise ArmError(404, "ContainerNotFound", "The specified container does not exist.")
        existing = self.resources.get(key)
        if method == "GET":
            if existing is None:  # stand-in's own code
                raise ArmError(404, "ImmutabilityPolicyNotFound", "no immutability policy")
            return 200, {}, copy.deepcopy(existing)
        if method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        if existing is not None:
            if existing["properties"]["state"] == "Locked":
                raise ArmError(409, "ImmutabilityPolicyOperationNotAllowed",  # stand-in's own
                               "A locked immutability policy can only be extended.")  # fmt: skip
            if headers.get("if-match") != existing["etag"]:
                raise ArmError(412, "ConditionNotMet", "If-Match does not match the policy's ETag.")
        props = (body or {}).get("properties") or {}
        days = props.get("immutabilityPeriodSinceCreationInDays")
        if not isinstance(days, int) or not 1 <= days <= 146_000:
            raise ArmError(400, "InvalidImmutabilityPeriod", f"period {days!r}")
        policy = {
            "id": path,
            "name": "default",
            "type": "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies",
            "etag": _etag(),
            "properties": {
                "immutabilityPeriodSinceCreationInDays": days,
                "state": "Unlocked",
                "allowProtectedAppendWrites": bool(props.get("allowProtectedAppendWrites")),
            },
        }
        self.resources[key] = policy
        self.resources[container]["properties"]["hasImmutabilityPolicy"] = True
        return 200, {}, copy.deepcopy(policy)

    def _storage_policy_action(
        self, method: str, path: str, match: re.Match[str], headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if method != "POST":
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported")
        key = path.lower().rsplit("/", 1)[0]
        policy = self.resources.get(key)
        if policy is None:
            raise ArmError(404, "ImmutabilityPolicyNotFound", "no immutability policy")
        if headers.get("if-match") != policy["etag"]:
            raise ArmError(412, "ConditionNotMet", "If-Match does not match the policy's ETag.")
        state = policy["properties"]
        if match["action"] == "lock":
            state["state"] = "Locked"
        else:
            if state["state"] != "Locked":
                raise ArmError(400, "ImmutabilityPolicyNotLocked", "extend needs a locked policy")
            days = ((body or {}).get("properties") or {}).get(
                "immutabilityPeriodSinceCreationInDays"
            )
            if not isinstance(days, int) or days < state["immutabilityPeriodSinceCreationInDays"]:
                raise ArmError(400, "ImmutabilityPeriodCannotBeShortened",  # stand-in's own
                               "A locked policy can be extended, not shortened.")  # fmt: skip
            state["immutabilityPeriodSinceCreationInDays"] = days
        policy["etag"] = _etag()
        return 200, {}, copy.deepcopy(policy)

    def locked_days(self, container_id: str) -> int | None:
        policy = self.resources.get(f"{container_id.lower()}/immutabilitypolicies/default")
        if policy is None or policy["properties"]["state"] != "Locked":
            return None
        return int(policy["properties"]["immutabilityPeriodSinceCreationInDays"])


@dataclass
class BlobStandIn:
    """The Blob service data plane on loopback HTTP; ``locked`` containers refuse overwrites."""

    blobs: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    locked: set[tuple[str, str]] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> BlobStandIn:
        handler = type("Handler", (_BlobHandler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def container_url(self, account: str, container: str) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/{account}/{container}"

    def handle(
        self, method: str, raw: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw)
        query = dict(parse_qsl(parts.query))
        account, container, *rest = [unquote(s) for s in parts.path.strip("/").split("/")]
        name = "/".join(rest)
        with self._lock:
            self.requests.append((method, parts.path, {k.lower(): v for k, v in headers.items()}))
            if method == "GET" and not name and query.get("comp") == "list":
                return self._list(account, container, query.get("prefix", ""))
            key = (account, container, name)
            if method == "PUT":
                return self._put(key, headers, body)
            if method == "GET" and key in self.blobs:
                data = self.blobs[key]
                return (
                    206,
                    {
                        "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
                        "x-ms-blob-type": "BlockBlob",
                        "ETag": '"0x1"',
                        "Last-Modified": "Wed, 02 Dec 2026 05:00:00 GMT",
                    },
                    data,
                )
            return _error(404, "BlobNotFound", "The specified blob does not exist.")

    def _put(
        self, key: tuple[str, str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("x-ms-blob-type") != "BlockBlob":
            return _error(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob")
        if key in self.blobs:
            if lowered.get("if-none-match") == "*":
                return _error(409, "BlobAlreadyExists", "The specified blob already exists.")
            if key[:2] in self.locked:
                return _error(409, "BlobImmutableDueToPolicy",
                              "This operation is not permitted as the blob is immutable due "
                              "to a policy.")  # fmt: skip
        self.blobs[key] = body
        return 201, {"ETag": '"0x1"', "Last-Modified": "Wed, 02 Dec 2026 05:00:00 GMT"}, b""

    def _list(self, account: str, container: str, prefix: str) -> tuple[int, dict[str, str], bytes]:
        names = sorted(
            n for (a, c, n) in self.blobs if (a, c) == (account, container) and n.startswith(prefix)
        )
        items = "".join(
            f"<Blob><Name>{escape(n)}</Name><Properties><Last-Modified>Wed, 02 Dec 2026 "
            f"05:00:00 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>"
            f"{len(self.blobs[(account, container, n)])}</Content-Length><BlobType>BlockBlob"
            "</BlobType></Properties></Blob>"
            for n in names
        )
        xml = (
            '<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
            f'ServiceEndpoint="http://127.0.0.1/{account}" ContainerName="{container}">'
            f"<Prefix>{escape(prefix)}</Prefix><Blobs>{items}</Blobs><NextMarker /></EnumerationResults>"
        )
        return 200, {"Content-Type": "application/xml"}, xml.encode()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    xml = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return status, {"x-ms-error-code": code, "Content-Type": "application/xml"}, xml.encode()


class _BlobHandler(BaseHTTPRequestHandler):
    owner: BlobStandIn
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.owner.handle(self.command, self.path, dict(self.headers), body)
        self.send_response(status)
        headers.setdefault("x-ms-version", "2025-01-05")
        headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return
