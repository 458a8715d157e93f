"""`iot-remote-access tunnel`: end to end against the broker handler behind a loopback
HTTP server (moto for things, a STUBBED Secure Tunneling API: moto has none).

The loopback server plays the function URL's part: it recomputes the SigV4
signature (service ``lambda``) from the request and the operator's credentials,
answers 403 like AWS when it does not match, and otherwise hands the request to
the real broker handler as a function URL event.
"""

from __future__ import annotations

import io
import json
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from iot_remote_access.cli import tunnel as tunnel_cli
from iot_remote_access.lambdas.tunnel_broker import handler as broker
from tests.support.cli_runner import CliResult, run_cli
from tests.support.tunneling_stub import (
    OPERATOR_ARN,
    REGION,
    LambdaContext,
    StubbedSecureTunneling,
    captured_powertools_log,
    described,
    summary,
    url_event,
)

THING = "sensor-1"
#: The operator's (fake) temporary credentials the CLI signs with.
OPERATOR_CREDENTIALS = ("ASIAEXAMPLEOPERATOR", "operator-secret-key", "operator-session-token")
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})"
)


@dataclass
class FunctionUrlStandIn:
    """A loopback stand-in for the broker's AWS_IAM function URL."""

    credentials: Credentials
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    broker_output: io.StringIO = field(default_factory=io.StringIO)

    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
        if not match or match["key"] != self.credentials.access_key or match["service"] != "lambda":
            return False
        signed = match["signed"].split(";")
        request = AWSRequest(
            method=method,
            url=f"{self.url}{path}",
            data=body,
            headers={name: headers[name] for name in signed if name != "host"},
        )
        request.context["timestamp"] = headers["x-amz-date"]
        auth = SigV4Auth(self.credentials, "lambda", match["region"])
        expected = auth.signature(
            auth.string_to_sign(request, auth.canonical_request(request)), request
        )
        return bool(expected == match["sig"])


@pytest.fixture
def standin() -> Iterator[FunctionUrlStandIn]:
    state = FunctionUrlStandIn(credentials=Credentials(*OPERATOR_CREDENTIALS))

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = state.verify(self.command, self.path, headers, body)
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": headers,
                    "verified": verified,
                }
            )
            if not verified:
                status, payload = 403, json.dumps({"Message": "Forbidden"})
            else:
                event = url_event(
                    body.decode("utf-8"), method=self.command, path=self.path, user_arn=OPERATOR_ARN
                )
                # The CLI waits meanwhile: what the broker prints (EMF metrics) and logs is
                # kept apart from the CLI's own output.
                with (
                    redirect_stdout(state.broker_output),
                    captured_powertools_log(broker.logger) as log,
                ):
                    result = broker.handler(event, LambdaContext())
                state.broker_output.write(log.getvalue())
                status, payload = result["statusCode"], result["body"]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        do_POST = do_GET = _serve

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


@pytest.fixture
def aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, standin: FunctionUrlStandIn
) -> Iterator[StubbedSecureTunneling]:
    """moto IoT with one thing; one stubbed Secure Tunneling API for the broker and the CLI."""
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing(thingName=THING)
        tunneling = StubbedSecureTunneling()
        monkeypatch.setattr(broker, "_clients", broker.Clients(iot=iot, tunneling=tunneling.client))
        monkeypatch.delenv(broker.POLICY_VARIABLE, raising=False)
        monkeypatch.setattr(
            tunnel_cli, "tunneling_client", lambda region, profile: tunneling.client
        )
        monkeypatch.setenv("HOME", str(tmp_path))
        # After mock_aws, which sets its own fake credentials.
        for name, value in zip(
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
            OPERATOR_CREDENTIALS,
            strict=True,
        ):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(tunnel_cli.BROKER_URL_VARIABLE, standin.url)
        yield tunneling


def _one_line_error(result: CliResult, code: int, message: str) -> None:
    assert result.code == code, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_open_list_close_end_to_end(
    aws: StubbedSecureTunneling, standin: FunctionUrlStandIn, tmp_path: Path
) -> None:
    aws.expect_list([], thing=THING)
    tunnel_id = aws.expect_open(thing=THING, minutes=30, reason="INC-1234 inspect logs")
    aws.expect_list([summary(tunnel_id)], thing=THING)

    opened = run_cli(
        "tunnel",
        "open",
        "--thing",
        THING,
        "--service",
        "SSH",
        "--minutes",
        "30",
        "--reason",
        "INC-1234 inspect logs",
    )

    assert opened.code == 0, opened
    token = aws.tokens[0]
    token_file = tmp_path / ".iot-remote-access" / "tunnels" / f"{tunnel_id}.token"
    assert token_file.read_text() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert token not in opened.stdout + opened.stderr
    assert '"decision":"allowed"' in standin.broker_output.getvalue()
    assert token not in standin.broker_output.getvalue()
    assert f"Tunnel {tunnel_id} opened to {THING} (SSH) until " in opened.stdout
    assert re.search(r"until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(30 minutes\)", opened.stdout)
    assert (
        f'  AWSIOT_TUNNEL_ACCESS_TOKEN="$(cat {token_file})" localproxy -r {REGION} -s 2222'
        in opened.stdout.splitlines()
    )
    assert "  ssh -p 2222 <user>@localhost" in opened.stdout
    (request,) = standin.requests
    assert request["verified"], "the loopback function URL could not verify the SigV4 signature"
    assert re.match(
        rf"AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEOPERATOR/\d{{8}}/{REGION}/lambda/aws4_request, ",
        request["headers"]["authorization"],
    )
    assert request["headers"]["x-amz-security-token"] == "operator-session-token"
    assert (request["method"], request["path"]) == ("POST", "/tunnels")

    aws.expect_list([summary(tunnel_id, description="INC-1234 inspect logs")], thing=THING)
    tags_expiry = aws.sent("OpenTunnel")[0]["tags"][2]["value"]
    aws.expect_describe(described(tunnel_id, created=datetime.now(UTC), expires_at=tags_expiry))
    listed = run_cli("tunnel", "list", "--thing", THING, "--format", "json")
    assert listed.code == 0, listed
    (row,) = json.loads(listed.stdout)
    assert row | {"createdAt": None} == {
        "tunnelId": tunnel_id,
        "status": "OPEN",
        "reason": "INC-1234 inspect logs",
        "createdAt": None,
        "thing": THING,
        "services": ["SSH"],
        "expiresAt": tags_expiry,
        "requester": OPERATOR_ARN,
        "source": "DISCONNECTED",
        "destination": "CONNECTED",
    }

    aws.expect_close(tunnel_id)
    closed = run_cli("tunnel", "close", tunnel_id)
    assert (closed.code, closed.stdout) == (0, f"Tunnel {tunnel_id} closed.\n")
    assert aws.sent("CloseTunnel") == [{"tunnelId": tunnel_id, "delete": False}]
    assert not token_file.exists()
    aws.stubber.assert_no_pending_responses()


def test_list_as_a_table_and_closed_tunnels_on_request(aws: StubbedSecureTunneling) -> None:
    aws.expect_list([summary("t-closed", status="CLOSED")])
    result = run_cli("tunnel", "list", "--all")
    assert result.code == 0, result
    assert "t-closed" in result.stdout and "CLOSED" in result.stdout
    aws.expect_list([summary("t-closed", status="CLOSED")])
    assert run_cli("tunnel", "list").stdout == "no tunnels\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--minutes", "0"],
            r"^error: --minutes: 0 is outside 1\.\.720; allowed: a whole number of minutes from 1 to 720$",
        ),
        (["--minutes", "721"], r"--minutes: 721 is outside 1\.\.720"),
        (["--minutes", "-5"], r"--minutes: -5 is outside 1\.\.720"),
        (["--minutes", "ten"], r"--minutes: 'ten' is not a whole number"),
        (
            ["--thing", "dt/sensor-1"],
            r"--thing: 'dt/sensor-1' is not a valid thing name; allowed: \[a-zA-Z0-9:_-\]\{1,128\}",
        ),
        (["--thing", "sensor+"], "--thing: 'sensor\\+' is not a valid thing name"),
        (["--thing", "sensor#"], "--thing: 'sensor#' is not a valid thing name"),
        (["--thing", "sensor*"], r"--thing: 'sensor\*' is not a valid thing name"),
        (["--thing", "s" * 129], "is not a valid thing name"),
        (["--reason", ""], "--reason: '' is empty; allowed: 1 to 256 printable characters"),
        (["--reason", "r" * 257], "--reason: is 257 characters long"),
        (["--reason", "INC-1\x07"], r"--reason: contains the non-printable character U\+0007"),
        (["--service", "S S"], "--service: 'S S' is not a service name"),
        (
            ["--broker-url", "http://broker.example.com/"],
            "--broker-url: 'http://broker.example.com/' is not an https URL",
        ),
        (["--local-port", "0"], "--local-port"),
    ],
)
def test_open_checks_arguments_before_any_call(
    aws: StubbedSecureTunneling, standin: FunctionUrlStandIn, args: list[str], message: str
) -> None:
    base = {"--thing": THING, "--reason": "INC-1", "--minutes": "30"}
    for name, value in zip(args[::2], args[1::2], strict=True):
        base[name] = value
    result = run_cli("tunnel", "open", *[part for pair in base.items() for part in pair])
    _one_line_error(result, 2, message)
    assert standin.requests == []
    assert aws.calls == []


def test_open_without_reason_or_broker_url_is_a_usage_error(
    aws: StubbedSecureTunneling, standin: FunctionUrlStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    _one_line_error(run_cli("tunnel", "open", "--thing", THING), 2, "Missing option '--reason'")
    monkeypatch.delenv(tunnel_cli.BROKER_URL_VARIABLE)
    _one_line_error(
        run_cli("tunnel", "open", "--thing", THING, "--reason", "INC-1"),
        2,
        "--broker-url: missing; give the stack output TunnelBrokerUrl or set IOT_REMOTE_ACCESS_BROKER_URL",
    )
    assert standin.requests == []


def test_broker_refusals_are_one_line_with_exit_1(
    aws: StubbedSecureTunneling, standin: FunctionUrlStandIn
) -> None:
    result = run_cli("tunnel", "open", "--thing", "ghost-7", "--reason", "INC-1")
    _one_line_error(
        result,
        1,
        r"^error: broker refused \(HTTP 404\): thing: 'ghost-7' does not exist in this account and region; allowed: a registered thing$",
    )
    aws.expect_list([summary("t-open")], thing=THING)
    result = run_cli("tunnel", "open", "--thing", THING, "--reason", "INC-1")
    _one_line_error(
        result, 1, r"broker refused \(HTTP 409\): thing: 'sensor-1' already has 1 open tunnel"
    )
    assert aws.count("OpenTunnel") == 0
    assert all(r["verified"] for r in standin.requests)


def test_a_bad_signature_is_refused_like_aws_does(
    aws: StubbedSecureTunneling, standin: FunctionUrlStandIn
) -> None:
    standin.credentials = Credentials(
        "ASIAEXAMPLEOPERATOR", "another-secret", "operator-session-token"
    )
    result = run_cli("tunnel", "open", "--thing", THING, "--reason", "INC-1")
    _one_line_error(
        result,
        1,
        r"broker refused \(HTTP 403\): Forbidden \(is the operator policy attached to your identity\?\)",
    )
    assert [r["verified"] for r in standin.requests] == [False]
    assert aws.calls == []


def test_unreachable_broker_is_exit_1(aws: StubbedSecureTunneling) -> None:
    result = run_cli(
        "tunnel",
        "open",
        "--thing",
        THING,
        "--reason",
        "INC-1",
        "--broker-url",
        "http://127.0.0.1:9",
    )
    _one_line_error(result, 1, r"cannot reach the broker at http://127\.0\.0\.1:9/tunnels")


def test_close_and_list_errors(aws: StubbedSecureTunneling) -> None:
    _one_line_error(run_cli("tunnel", "close", "a b"), 2, "tunnel-id: 'a b' is not a tunnel id")
    aws.expect_error("close_tunnel", "ResourceNotFoundException", 404)
    _one_line_error(
        run_cli("tunnel", "close", "t-404"),
        1,
        "^error: tunnel t-404 does not exist in this account and region$",
    )
    aws.expect_error("list_tunnels", "AccessDeniedException", 403)
    _one_line_error(
        run_cli("tunnel", "list"),
        1,
        "AWS IoT Secure Tunneling refused ListTunnels: AccessDeniedException",
    )
    _one_line_error(
        run_cli("tunnel", "list", "--thing", "a/b"), 2, "--thing: 'a/b' is not a valid thing name"
    )
