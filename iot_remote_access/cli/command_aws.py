"""The AWS side of `iot-remote-access command`: the command broker's function URL.

Every call is signed with SigV4 (the operator's own AWS credentials, service
``lambda``), as `tunnel open` signs its call to the tunnel broker: the function URL
has AWS_IAM auth and the operator policy allows invoking it. Routes:
``POST /commands`` (send), ``GET /commands/<id>`` (get), ``GET /commands?thing=&status=&limit=``
(list), ``POST /fanouts`` and ``GET /fanouts/<id>`` (fleet fan-out).

The broker's refusals (4xx ``{"field", "message"}``) become
:class:`~iot_remote_access.core.commands.CommandRuleError` with the same field and
status; a broker that cannot be reached, or answers 5xx or outside the protocol,
becomes :class:`~iot_remote_access.core.command_backend.CommandBackendError`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from iot_remote_access.cli.errors import InputError
from iot_remote_access.cli.tunnel import _FUNCTION_URL_HOST, _LOOPBACK_HOSTS, _session, shown
from iot_remote_access.core.command_backend import CommandBackendError
from iot_remote_access.core.command_executions import ListQuery
from iot_remote_access.core.commands import CommandRuleError

URL_VARIABLE = "IOT_REMOTE_ACCESS_COMMAND_URL"
_TIMEOUT_SECONDS = 30
#: The most of an answer read: a listing of 100 records is about 60 KB.
_MAX_ANSWER_BYTES = 1024 * 1024


def backend(settings: Any, options: Mapping[str, Any]) -> AwsCommandBackend:
    """The broker behind ``options["endpoint"]`` (the stack output CommandBrokerUrl)."""
    return AwsCommandBackend(
        endpoint(options.get("endpoint")), options.get("region"), options.get("profile")
    )


def endpoint(url: str | None) -> str:
    """The broker's base URL: https, or http on loopback (a local stand-in)."""
    if not url:
        raise InputError(
            f"--endpoint: missing; give the stack output CommandBrokerUrl or set {URL_VARIABLE}"
        )
    parsed = urllib.parse.urlsplit(url)
    loopback = parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
    if not (parsed.scheme == "https" or loopback) or not parsed.hostname:
        raise InputError(
            f"--endpoint: {url[:100]!r} is not an https URL; allowed: "
            "the function URL https://<id>.lambda-url.<region>.on.aws/"
        )
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, "", "", ""))


class AwsCommandBackend:
    """:class:`~iot_remote_access.core.command_backend.CommandBackend` over the broker URL."""

    def __init__(self, base_url: str, region: str | None, profile: str | None) -> None:
        self.base_url = base_url
        self.profile = profile
        match = _FUNCTION_URL_HOST.match(urllib.parse.urlsplit(base_url).hostname or "")
        self.region = match.group(1) if match else region

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._object(self._call("POST", "/commands", body))

    def get(self, command_id: str) -> dict[str, Any]:
        return self._object(self._call("GET", f"/commands/{urllib.parse.quote(command_id)}"))

    def list(self, *, thing: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode(ListQuery(thing, status, limit).parameters())
        answer = self._object(self._call("GET", f"/commands?{query}"))
        items = answer.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise CommandBackendError("the broker's listing has no list of records")
        return items

    def fanout(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._object(self._call("POST", "/fanouts", body))

    def fanout_status(self, fanout_id: str) -> dict[str, Any]:
        return self._object(self._call("GET", f"/fanouts/{urllib.parse.quote(fanout_id)}"))

    @staticmethod
    def _object(answer: object) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise CommandBackendError("the broker's answer is not a JSON object")
        return answer

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> object:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = _session(self.region, self.profile)
        credentials = session.get_credentials()
        if credentials is None:
            raise InputError("no AWS credentials found; configure a profile or use --profile")
        data = json.dumps(dict(body)).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = AWSRequest(
            method=method, url=f"{self.base_url}{path}", data=data, headers=headers
        )
        region = str(self.region or session.region_name)
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
        prepared = request.prepare()
        http_request = urllib.request.Request(  # noqa: S310 - scheme checked in endpoint()
            prepared.url, data=prepared.body, headers=dict(prepared.headers.items()), method=method
        )
        try:
            with urllib.request.urlopen(http_request, timeout=_TIMEOUT_SECONDS) as reply:  # noqa: S310
                return json.loads(reply.read(_MAX_ANSWER_BYTES))
        except urllib.error.HTTPError as error:
            raise _refusal(error) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CommandBackendError(
                f"cannot reach the broker at {self.base_url}: {shown(reason)}"
            ) from None
        except (ValueError, RecursionError):
            raise CommandBackendError("the broker's answer is not JSON") from None


def _refusal(error: urllib.error.HTTPError) -> Exception:
    """A 4xx with the broker's ``{"field", "message"}`` as a rule error; anything else not."""
    raw = error.read(_MAX_ANSWER_BYTES)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return CommandBackendError(f"broker answered HTTP {error.code}: {shown(error.reason)}")
    if body.get("Message") == "Forbidden" or body.get("message") == "Forbidden":
        # AWS itself refused the signature or the identity: the broker never ran.
        return CommandRuleError(
            "requester", "Forbidden (is the operator policy attached to your identity?)", status=403
        )
    field, message = str(body.get("field", "broker")), str(body.get("message", ""))
    problem = shown(message.removeprefix(f"{field}: ") or "no details")
    if 400 <= error.code < 500:
        return CommandRuleError(shown(field, 80), problem, status=error.code)
    return CommandBackendError(f"broker answered HTTP {error.code}: {field}: {problem}")
