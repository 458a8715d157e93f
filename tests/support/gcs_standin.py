"""GCS STAND-IN: a local HTTP server answering the Cloud Storage JSON API, for tests only.

No Cloud Storage emulator ships with the Google Cloud CLI, so the anchor bucket and the
anchor writer are tested with the real google-cloud-storage client
(``client_options={"api_endpoint": standin.endpoint}``, anonymous credentials) against
this stand-in. It implements what they use, as the JSON API documents it:

- buckets: insert (``POST /storage/v1/b?project=``), get, patch, with ``metageneration``;
  ``lockRetentionPolicy`` (``ifMetagenerationMatch`` required and checked: 412);
  a locked policy can be lengthened, not shortened or removed (403); versioning and a
  retention policy together are refused (400, as Cloud Storage does);
- objects: multipart upload with ``ifGenerationMatch`` (``0``: only if absent, else 412);
  overwriting or deleting an object younger than the retention period is refused (403);
  list with ``prefix``; media download (``alt=media``).

Every request is recorded (``requests``) so a test can assert exactly what was sent.
Error bodies are the JSON API's (``{"error": {"code", "message", "errors"}}``); the
messages are the stand-in's own wording.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


class GcsError(Exception):
    def __init__(self, status: int, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class GcsStandIn:
    """The stand-in server (a context manager); ``endpoint`` aims the client at it."""

    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[tuple[str, str], tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> GcsStandIn:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, method: str, raw: str, body: bytes, content_type: str) -> tuple[int, Any]:
        parts = urlsplit(raw)
        query = dict(parse_qsl(parts.query))
        path = parts.path
        with self._lock:
            record = Request(method, path, query, _shown_body(body, content_type))
            self.requests.append(record)
            try:
                return self._dispatch(method, path, query, body, content_type)
            except GcsError as error:
                return error.status, {
                    "error": {
                        "code": error.status,
                        "message": error.message,
                        "errors": [{"message": error.message, "reason": error.reason}],
                    }
                }

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], body: bytes, content_type: str
    ) -> tuple[int, Any]:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if segments[:3] == ["upload", "storage", "v1"] and method == "POST":
            return self._upload(segments[4], query, body, content_type)
        if segments[:3] == ["download", "storage", "v1"] and method == "GET":
            return self._download(segments[4], "/".join(segments[6:]))
        if segments[:3] != ["storage", "v1", "b"]:
            raise GcsError(404, f"not found: {path}", "notFound")
        rest = segments[3:]
        if not rest:
            if method != "POST":
                raise GcsError(405, f"{method} not allowed")
            return self._insert_bucket(json.loads(body or b"{}"), query)
        bucket = rest[0]
        if len(rest) == 1:
            if method == "GET":
                return 200, copy.deepcopy(self._bucket(bucket))
            if method == "PATCH":
                return self._patch_bucket(bucket, json.loads(body or b"{}"))
        if rest[1:] == ["lockRetentionPolicy"] and method == "POST":
            return self._lock_policy(bucket, query)
        if rest[1:2] == ["o"]:
            return self._object(method, bucket, "/".join(rest[2:]), query)
        raise GcsError(404, f"not found: {path}", "notFound")

    # -- buckets ----------------------------------------------------------------------------

    def _bucket(self, name: str) -> dict[str, Any]:
        found = self.buckets.get(name)
        if found is None:
            raise GcsError(404, "The specified bucket does not exist.", "notFound")
        return found

    def _insert_bucket(self, body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        name = body.get("name", "")
        if not query.get("project"):
            raise GcsError(400, "project is required", "required")
        if name in self.buckets:
            raise GcsError(409, "Your previous request to create the named bucket succeeded "
                           "and you already own it.", "conflict")  # fmt: skip
        bucket = {"kind": "storage#bucket", "id": name, "name": name, "metageneration": "1"}
        bucket["location"] = str(body.get("location") or "US").upper()
        self._apply(bucket, body)
        self.buckets[name] = bucket
        return 200, copy.deepcopy(bucket)

    def _patch_bucket(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        bucket = self._bucket(name)
        if "location" in body and str(body["location"]).upper() != bucket["location"]:
            raise GcsError(400, "location cannot be changed")
        updated = copy.deepcopy(bucket)
        self._apply(updated, body)
        updated["metageneration"] = str(int(bucket["metageneration"]) + 1)
        self.buckets[name] = updated
        return 200, copy.deepcopy(updated)

    def _apply(self, bucket: dict[str, Any], body: dict[str, Any]) -> None:
        old = bucket.get("retentionPolicy")
        if "retentionPolicy" in body:
            new = body["retentionPolicy"]
            if old and old.get("isLocked"):
                if new is None or int(new.get("retentionPeriod", 0)) < int(old["retentionPeriod"]):
                    raise GcsError(
                        403, "Cannot reduce retention duration of a locked retention policy.",
                        "forbidden",
                    )  # fmt: skip
                bucket["retentionPolicy"] = {**old, "retentionPeriod": str(new["retentionPeriod"])}
            elif new is None:
                bucket.pop("retentionPolicy", None)
            else:
                bucket["retentionPolicy"] = {
                    "retentionPeriod": str(new["retentionPeriod"]),
                    "effectiveTime": _now(),
                }
        for key in ("iamConfiguration", "versioning", "labels"):
            if key in body:
                bucket[key] = copy.deepcopy(body[key])
        if bucket.get("retentionPolicy") and (bucket.get("versioning") or {}).get("enabled"):
            raise GcsError(400, "Retention policies and Object Versioning cannot be used together.")

    def _lock_policy(self, name: str, query: dict[str, str]) -> tuple[int, Any]:
        bucket = self._bucket(name)
        if "ifMetagenerationMatch" not in query:
            raise GcsError(400, "ifMetagenerationMatch is required", "required")
        if query["ifMetagenerationMatch"] != bucket["metageneration"]:
            raise GcsError(412, "Precondition Failed", "conditionNotMet")
        if not bucket.get("retentionPolicy"):
            raise GcsError(400, "The bucket has no retention policy to lock.")
        bucket["retentionPolicy"]["isLocked"] = True
        bucket["metageneration"] = str(int(bucket["metageneration"]) + 1)
        return 200, copy.deepcopy(bucket)

    # -- objects ----------------------------------------------------------------------------

    def _upload(
        self, bucket: str, query: dict[str, str], body: bytes, content_type: str
    ) -> tuple[int, Any]:
        self._bucket(bucket)
        if query.get("uploadType") != "multipart":
            raise GcsError(400, "the stand-in supports uploadType=multipart only")
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        metadata_part, data_part = list(message.iter_parts())
        metadata = json.loads(metadata_part.get_payload(decode=True))
        data = data_part.get_payload(decode=True)
        name = metadata["name"]
        existing = self.objects.get((bucket, name))
        if query.get("ifGenerationMatch") == "0" and existing is not None:
            raise GcsError(412, "At least one of the pre-conditions you specified did not hold.",
                           "conditionNotMet")  # fmt: skip
        if existing is not None and self._retained(bucket, existing[0]):
            raise GcsError(403, f"Object '{bucket}/{name}' is subject to bucket's retention "
                           "policy or object retention and cannot be deleted or overwritten "
                           "until ...", "retentionPolicyNotMet")  # fmt: skip
        generation = str(int(datetime.datetime.now(datetime.UTC).timestamp() * 1_000_000))
        resource = {
            "kind": "storage#object",
            "bucket": bucket,
            "name": name,
            "generation": generation,
            "metageneration": "1",
            "contentType": metadata.get("contentType", "application/octet-stream"),
            "size": str(len(data)),
            "timeCreated": _now(),
        }
        policy = self.buckets[bucket].get("retentionPolicy")
        if policy:
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=int(policy["retentionPeriod"])
            )
            resource["retentionExpirationTime"] = expires.isoformat().replace("+00:00", "Z")
        self.objects[(bucket, name)] = (resource, data)
        return 200, copy.deepcopy(resource)

    def _retained(self, bucket: str, resource: dict[str, Any]) -> bool:
        until = resource.get("retentionExpirationTime")
        if until is None:
            return False
        moment = datetime.datetime.fromisoformat(until.replace("Z", "+00:00"))
        return moment > datetime.datetime.now(datetime.UTC)

    def _object(
        self, method: str, bucket: str, name: str, query: dict[str, str]
    ) -> tuple[int, Any]:
        self._bucket(bucket)
        if not name and method == "GET":
            prefix = query.get("prefix", "")
            items = [
                copy.deepcopy(resource)
                for (b, n), (resource, _) in sorted(self.objects.items())
                if b == bucket and n.startswith(prefix)
            ]
            return 200, {"kind": "storage#objects", "items": items}
        found = self.objects.get((bucket, name))
        if found is None:
            raise GcsError(404, "No such object.", "notFound")
        if method == "DELETE":
            if self._retained(bucket, found[0]):
                raise GcsError(403, "Object is subject to bucket's retention policy.",
                               "retentionPolicyNotMet")  # fmt: skip
            del self.objects[(bucket, name)]
            return 204, None
        if query.get("alt") == "media":
            return 200, found[1]
        return 200, copy.deepcopy(found[0])

    def _download(self, bucket: str, name: str) -> tuple[int, Any]:
        return self._object("GET", bucket, name, {"alt": "media"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _shown_body(body: bytes, content_type: str) -> Any:
    if content_type.startswith("application/json") and body:
        return json.loads(body)
    return body


class _Handler(BaseHTTPRequestHandler):
    owner: GcsStandIn
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, out = self.owner.handle(
            self.command, self.path, body, self.headers.get("Content-Type", "")
        )
        data = out if isinstance(out, bytes) else (b"" if out is None else json.dumps(out).encode())
        self.send_response(status)
        kind = "application/octet-stream" if isinstance(out, bytes) else "application/json"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return
