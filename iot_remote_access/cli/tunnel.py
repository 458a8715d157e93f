"""`tunnel open|list|close`: Secure Tunneling for operators, through the broker.

``open`` signs its request to the broker's function URL with SigV4 (the
operator's own AWS credentials; service ``lambda``), after checking the
arguments with the broker's own rules. The source access token is written to a
file only the operator can read, and the printed ``localproxy`` command reads it
into the environment variable ``AWSIOT_TUNNEL_ACCESS_TOKEN``: a token on a command
line would show in ``ps`` and shell history. ``list`` and ``close`` call AWS IoT
Secure Tunneling directly, as the operator policy allows.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.core.tunnel_rules import (
    TAG_EXPIRES_AT,
    TAG_REQUESTER,
    TunnelRuleError,
    validate_minutes,
    validate_reason,
    validate_service,
    validate_thing,
    validate_tunnel_id,
)

BROKER_URL_VARIABLE = "IOT_REMOTE_ACCESS_BROKER_URL"
TOKEN_VARIABLE = "AWSIOT_TUNNEL_ACCESS_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_TOKEN_DIR = Path("~/.iot-remote-access/tunnels")
_FUNCTION_URL_HOST = re.compile(r"\A[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws\Z")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TIMEOUT_SECONDS = 30
#: The most of a broker's (or AWS's) text shown on the operator's terminal.
MAX_SHOWN_CHARACTERS = 300
#: The most of an answer read: a broker answer is a few hundred bytes.
_MAX_ANSWER_BYTES = 1024 * 1024
# Terminal escape sequences (CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL|ESC \``, and
# two-character ``ESC x``): disjoint character classes, so matching stays linear.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -~]?)")

region_option = click.option("--region", help="AWS region. Default: the profile's.")
profile_option = click.option(
    "--profile", help="AWS named profile. Default: the default credential chain."
)


@click.group()
def tunnel() -> None:
    """Open (through the broker), list and close Secure Tunneling tunnels."""


@tunnel.command("open")
@click.option("--thing", required=True, help="the device's thing name")
@click.option("--service", default="SSH", show_default=True, help="destination service")
@click.option("--minutes", help="lifetime, 1..720. Default: the deployment's (60)")
@click.option("--reason", required=True, help="ticket id or justification, 1..256 characters")
@click.option(
    "--broker-url",
    envvar=BROKER_URL_VARIABLE,
    help=f"the stack output TunnelBrokerUrl. Default: ${BROKER_URL_VARIABLE}",
)
@click.option(
    "--local-port",
    type=click.IntRange(1, 65535),
    default=2222,
    show_default=True,
    help="port localproxy listens on",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    help=f"where to keep the access token. Default: {DEFAULT_TOKEN_DIR}/<tunnel id>.token",
)
@region_option
@profile_option
def open_(
    thing: str,
    service: str,
    minutes: str | None,
    reason: str,
    broker_url: str | None,
    local_port: int,
    token_file: Path | None,
    region: str | None,
    profile: str | None,
) -> None:
    """Ask the broker for a tunnel; print its id, expiry and the localproxy command."""
    try:
        body: dict[str, Any] = {
            "thing": validate_thing(thing),
            "service": validate_service(service),
            "reason": validate_reason(reason),
        }
        if minutes is not None:
            body["minutes"] = validate_minutes(minutes)
    except TunnelRuleError as error:
        raise InputError(f"--{error}") from None
    url = _broker_endpoint(broker_url)
    result = _call_broker(url, body, _signing_region(url, region, profile), profile)
    try:
        tunnel_id = validate_tunnel_id(result["tunnelId"])
        token = str(result["sourceAccessToken"])
    except (KeyError, TypeError, TunnelRuleError):
        raise OperationError("the broker's answer has no tunnel id or token") from None
    path = (token_file or DEFAULT_TOKEN_DIR / f"{tunnel_id}.token").expanduser()
    try:
        _write_secret(path, token)
    except OSError as error:
        # Without its token the tunnel is useless: close it rather than leave it open.
        client = tunneling_client(tunnel_region_of(result, url, region, profile), profile)
        _aws(lambda: client.close_tunnel(tunnelId=tunnel_id, delete=False), "CloseTunnel")
        raise OperationError(
            f"--token-file: cannot write {path} ({error.strerror}); "
            f"tunnel {tunnel_id} was closed again"
        ) from None
    # The answer's words go to the terminal and into a command line: filtered and quoted.
    tunnel_region = shlex.quote(shown(tunnel_region_of(result, url, region, profile), 40))
    quoted = shlex.quote(str(path))
    lines = [
        f"Tunnel {tunnel_id} opened to {shown(result.get('thing', thing), 130)} "
        f"({shown(result.get('service', service), 130)}) until "
        f"{shown(result.get('expiresAt', '?'), 40)} ({shown(result.get('minutes', minutes), 20)} "
        "minutes).",
        f"Access token saved to {path} (readable by you only).",
        "",
        "Connect (localproxy reads the token from the environment, never the command line):",
        f'  {TOKEN_VARIABLE}="$(cat {quoted})" localproxy -r {tunnel_region} -s {local_port}',
    ]
    if result.get("service", service) == "SSH":
        lines += ["Then, in another terminal:", f"  ssh -p {local_port} <user>@localhost"]
    lines += ["Close it when you are done:", f"  iot-remote-access tunnel close {tunnel_id}"]
    click.echo("\n".join(lines))


@tunnel.command("list")
@click.option("--thing", help="only this thing's tunnels")
@click.option("--all", "show_all", is_flag=True, help="closed tunnels too")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@region_option
@profile_option
def list_(
    thing: str | None, show_all: bool, output_format: str, region: str | None, profile: str | None
) -> None:
    """List tunnels (open ones by default) with thing, expiry, requester and connections."""
    if thing is not None:
        try:
            validate_thing(thing)
        except TunnelRuleError as error:
            raise InputError(f"--{error}") from None
    client = tunneling_client(region, profile)
    rows = [
        _describe(client, summary) if summary.get("status") == "OPEN" else _row(summary)
        for summary in _list(client, thing)
        if show_all or summary.get("status") == "OPEN"
    ]
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "tunnel id", "status", "thing", "expires", "source", "device", "requester", "reason"
    )
    for row in rows:
        table.add_row(
            *(
                Text(shown(row.get(key) or "", 1000))
                for key in (
                    "tunnelId",
                    "status",
                    "thing",
                    "expiresAt",
                    "source",
                    "destination",
                    "requester",
                    "reason",
                )
            )
        )
    Console(soft_wrap=True).print(table if rows else "no tunnels")


@tunnel.command("close")
@click.argument("tunnel_id")
@region_option
@profile_option
def close(tunnel_id: str, region: str | None, profile: str | None) -> None:
    """Close a tunnel now (it stays listed as CLOSED; a closed tunnel cannot reopen)."""
    try:
        validate_tunnel_id(tunnel_id)
    except TunnelRuleError as error:
        raise InputError(str(error)) from None
    client = tunneling_client(region, profile)
    _aws(
        lambda: client.close_tunnel(tunnelId=tunnel_id, delete=False),
        "CloseTunnel",
        not_found=f"tunnel {tunnel_id} does not exist in this account and region",
    )
    token = (DEFAULT_TOKEN_DIR / f"{tunnel_id}.token").expanduser()
    token.unlink(missing_ok=True)
    click.echo(f"Tunnel {tunnel_id} closed.")


# -- AWS ---------------------------------------------------------------------------


def tunneling_client(region: str | None, profile: str | None) -> Any:
    """The operator's iotsecuretunneling client (tests replace this function)."""
    return _session(region, profile).client("iotsecuretunneling")


def _session(region: str | None, profile: str | None) -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as error:
        raise InputError(f"--profile: {error}") from None
    if session.region_name is None:
        raise InputError("--region: no region given and none configured for the profile")
    return session


def _aws(call: Any, action: str, *, not_found: str | None = None) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return call()
    except NoCredentialsError:
        raise InputError("no AWS credentials found; configure a profile or use --profile") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code == "ResourceNotFoundException" and not_found:
            raise OperationError(not_found) from None
        raise OperationError(f"AWS IoT Secure Tunneling refused {action}: {code}") from None
    except BotoCoreError as error:
        raise OperationError(f"cannot reach AWS IoT Secure Tunneling: {error}") from None


def _list(client: Any, thing: str | None) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        arguments: dict[str, Any] = {"maxResults": 100}
        if thing:
            arguments["thingName"] = thing
        if token:
            arguments["nextToken"] = token
        page = _aws(lambda arguments=arguments: client.list_tunnels(**arguments), "ListTunnels")
        summaries.extend(page.get("tunnelSummaries", []))
        token = page.get("nextToken")
        if not token:
            return summaries


def _row(summary: dict[str, Any]) -> dict[str, Any]:
    created = summary.get("createdAt")
    return {
        "tunnelId": summary.get("tunnelId"),
        "status": summary.get("status"),
        "reason": summary.get("description"),
        "createdAt": created.isoformat() if isinstance(created, datetime) else created,
    }


def _describe(client: Any, summary: dict[str, Any]) -> dict[str, Any]:
    tunnel_id = summary.get("tunnelId")
    described = _aws(lambda: client.describe_tunnel(tunnelId=tunnel_id), "DescribeTunnel")
    tunnel = described.get("tunnel", {})
    tags = {t["key"]: t["value"] for t in tunnel.get("tags") or []}
    destination = tunnel.get("destinationConfig") or {}
    return {
        **_row(summary),
        "thing": destination.get("thingName"),
        "services": destination.get("services"),
        "expiresAt": tags.get(TAG_EXPIRES_AT),
        "requester": tags.get(TAG_REQUESTER),
        "source": (tunnel.get("sourceConnectionState") or {}).get("status"),
        "destination": (tunnel.get("destinationConnectionState") or {}).get("status"),
    }


# -- the broker ----------------------------------------------------------------------


def _broker_endpoint(broker_url: str | None) -> str:
    if not broker_url:
        raise InputError(
            f"--broker-url: missing; give the stack output TunnelBrokerUrl "
            f"or set {BROKER_URL_VARIABLE}"
        )
    parsed = urllib.parse.urlsplit(broker_url)
    loopback = parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
    if not (parsed.scheme == "https" or loopback) or not parsed.hostname:
        raise InputError(
            f"--broker-url: {broker_url[:100]!r} is not an https URL; allowed: "
            "the function URL https://<id>.lambda-url.<region>.on.aws/"
        )
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, "/tunnels", "", ""))


def _signing_region(url: str, region: str | None, profile: str | None) -> str:
    match = _FUNCTION_URL_HOST.match(urllib.parse.urlsplit(url).hostname or "")
    if match:
        return match.group(1)
    return str(_session(region, profile).region_name)


def _call_broker(url: str, body: dict[str, Any], region: str, profile: str | None) -> Any:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = _session(region, profile).get_credentials()
    if credentials is None:
        raise InputError("no AWS credentials found; configure a profile or use --profile")
    request = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    prepared = request.prepare()
    http_request = urllib.request.Request(  # noqa: S310 - scheme checked in _broker_endpoint
        prepared.url, data=prepared.body, headers=dict(prepared.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(http_request, timeout=_TIMEOUT_SECONDS) as reply:  # noqa: S310
            return json.loads(reply.read(_MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as error:
        raise OperationError(f"broker refused (HTTP {error.code}): {_message(error)}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OperationError(f"cannot reach the broker at {url}: {shown(reason)}") from None
    except (ValueError, RecursionError):
        raise OperationError("the broker's answer is not JSON") from None


def _message(error: urllib.error.HTTPError) -> str:
    """The broker's (or AWS's) reason, filtered and shortened for the terminal."""
    raw = error.read(_MAX_ANSWER_BYTES + 1)
    if len(raw) > _MAX_ANSWER_BYTES:  # no broker answers that much: show the beginning
        return shown(raw[: 4 * MAX_SHOWN_CHARACTERS + 1].decode("utf-8", "replace"))
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return shown(error.reason or "no details")
    if isinstance(body, dict):
        message = body.get("message") or body.get("Message")
        if message == "Forbidden":
            return "Forbidden (is the operator policy attached to your identity?)"
        if message:
            return shown(message)
    return shown(error.reason or "no details")


def shown(text: object, limit: int = MAX_SHOWN_CHARACTERS) -> str:
    """Text from the broker or AWS as safe to print on one terminal line.

    Terminal escape sequences, bidi overrides (U+202E...), zero-width and other
    control or format characters are removed, line breaks become spaces, and the
    result is cut to ``limit`` characters with ``(shortened)``: an answer can
    neither rewrite the operator's screen nor hide what it says.
    """
    raw = str(text)
    cut = len(raw) > 4 * limit  # filtering only removes characters: look at a bounded head
    raw = _ESCAPE_SEQUENCE.sub("", raw[: 4 * limit])
    kept = "".join(
        " " if character in "\t\n\r\v\f\x85\u2028\u2029" else character
        for character in raw
        if character in "\t\n\r\v\f\x85\u2028\u2029"
        or unicodedata.category(character) not in _UNSAFE_CATEGORIES
    )
    if cut or len(kept) > limit:
        return f"{kept[:limit]} (shortened)"
    return kept


#: Control, format (bidi, zero-width), surrogate, private-use and unassigned characters.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def tunnel_region_of(
    result: dict[str, Any], url: str, region: str | None, profile: str | None
) -> str:
    return str(result.get("region") or _signing_region(url, region, profile))


def _write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` readable by the owner only (created 0600 in a 0700 folder)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secret)
    path.chmod(0o600)
