"""A loopback STAND-IN for the command broker's AWS_IAM function URL (not AWS Lambda).

It recomputes the SigV4 signature (service ``lambda``) of each request from the
caller's known credentials, answers 403 ``{"Message": "Forbidden"}`` like AWS when it
does not match, and otherwise hands the request to the real broker handler as a
function URL event (payload 2.0) whose IAM identity is the ARN those credentials
belong to. So the CLI's signing, routes and query strings are exercised as on AWS.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iot_remote_access.lambdas.command_broker import handler as broker
from tests.support.tunneling_stub import LambdaContext, captured_powertools_log, url_event

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})"
)


@dataclass
class BrokerUrl:
    #: access key -> (credentials, the IAM identity AWS would report)
    callers: dict[str, tuple[Credentials, str]]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    broker_output: io.StringIO = field(default_factory=io.StringIO)

    def identity(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """The caller's ARN if the signature is valid, else None."""
        match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
        if not match or match["key"] not in self.callers or match["service"] != "lambda":
            return None
        credentials, arn = self.callers[match["key"]]
        request = AWSRequest(
            method=method,
            url=f"{self.url}{path}",
            data=body,
            headers={name: headers[name] for name in match["signed"].split(";") if name != "host"},
        )
        request.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(credentials, "lambda", match["region"])
        expected = auth.signature(
            auth.string_to_sign(request, auth.canonical_request(request)), request
        )
        return arn if expected == match["sig"] else None

    def event(self, method: str, target: str, body: bytes, arn: str) -> dict[str, Any]:
        path, _, query = target.partition("?")
        event = url_event(
            body.decode("utf-8") if body else None, method=method, path=path, user_arn=arn
        )
        event["rawQueryString"] = query
        if query:
            event["queryStringParameters"] = {
                key: ",".join(values) for key, values in urllib.parse.parse_qs(query).items()
            }
        return event


@contextmanager
def broker_url(callers: dict[str, tuple[Credentials, str]]) -> Iterator[BrokerUrl]:
    state = BrokerUrl(callers)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            arn = state.identity(self.command, self.path, headers, body)
            state.requests.append({"method": self.command, "path": self.path, "arn": arn})
            if arn is None:
                status, payload = 403, json.dumps({"Message": "Forbidden"})
            else:
                # The broker's EMF metrics and logs are kept apart from the CLI's output.
                with (
                    redirect_stdout(state.broker_output),
                    captured_powertools_log(broker.logger) as log,
                ):
                    event = state.event(self.command, self.path, body, arn)
                    result = broker.handler(event, LambdaContext())
                state.broker_output.write(log.getvalue())
                status, payload = result["statusCode"], result["body"]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        do_POST = do_GET = do_PUT = _serve

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
