"""Remote commands: the catalogue, the request and response envelopes, and their rules.

The everyday path of remote operation: an operator asks the broker to send a
named command to one thing; the device runs only a registered handler and
answers. The same rules are applied by the broker (before publishing), by the
device (before running anything) and by whoever collects responses.

Topics stay exact and per thing (``cmd/{thing}/commands`` and one responses
topic): the command id travels in the payload and, on MQTT 5, as correlation
data next to a response topic; never in a topic name, so no device policy
needs a wildcard.

Standard library only: the Lambda functions, the CLI and the device import it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import SchemaError, check_schema, shown, validate
from iot_remote_access.core.rule_error import RuleError
from iot_remote_access.core.topics import (
    THING_NAME_RULE,
    TopicModel,
    TopicModelError,
    render_topic,
    validate_thing_name,
)

ENVELOPE_VERSION = 1
COMMAND_NAME_RULE = "[a-z][a-z0-9-]{0,62}"
PURPOSE_RULE = "[a-z][a-z0-9-]{0,62}"
_COMMAND_NAME_RE = re.compile(rf"\A{COMMAND_NAME_RULE}\Z")
_PURPOSE_RE = re.compile(rf"\A{PURPOSE_RULE}\Z")
#: An IAM role or user ARN (optionally with a path). Exact principals only: no wildcards.
SENDER_RULE = r"arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}"
_SENDER_RE = re.compile(rf"\A{SENDER_RULE}\Z")
#: A Google principal as IAM writes a member (GCP path): a service account or a user.
#: Groups are not accepted: the command service cannot see group membership.
GCP_SENDER_RULE = (
    r"(serviceAccount|user):[A-Za-z0-9._%+-]{1,128}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}"
)
_GCP_SENDER_RE = re.compile(rf"\A{GCP_SENDER_RULE}\Z")
#: A Microsoft Entra ID object id (Azure path): a user, a service principal or a
#: managed identity, as the ``oid`` claim of its access token names it.
AZURE_SENDER_RULE = (
    r"objectId:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_AZURE_SENDER_RE = re.compile(rf"\A{AZURE_SENDER_RULE}\Z")
_COMMAND_ID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 30
MAX_COMMANDS = 64
MAX_SENDERS = 32
MAX_REASON_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 512
MAX_ERROR_LENGTH = 512
#: Bounds on the wire. AWS IoT's own message limit is 128 KB; commands stay far below.
MAX_REQUEST_BYTES = 8 * 1024
MAX_COMMAND_BYTES = 8 * 1024
MAX_RESPONSE_BYTES = 16 * 1024
MAX_DEPTH = 8

#: What a response may say happened on the device.
RESPONSE_STATUSES = ("succeeded", "failed", "rejected")
REQUEST_FIELDS = ("thing", "name", "arguments", "reason", "purpose", "clientToken")
CLIENT_TOKEN_RULE = "[A-Za-z0-9_-]{1,64}"  # noqa: S105 - a pattern, not a secret
_CLIENT_TOKEN_RE = re.compile(rf"\A{CLIENT_TOKEN_RULE}\Z")
#: Ids derived from a client token live in their own UUID namespace.
_CLIENT_TOKEN_NAMESPACE = uuid.UUID("0b6f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b")
COMMAND_FIELDS = ("v", "id", "thing", "name", "arguments", "issuedAt", "expiresAt")
RESPONSE_FIELDS = ("v", "id", "thing", "status", "result", "error")
EMPTY_ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}
EMPTY_RESULT: dict[str, Any] = EMPTY_ARGUMENTS


class CommandRuleError(RuleError):
    """A catalogue, request, command or response that breaks a rule."""

    @classmethod
    def from_schema(cls, error: SchemaError, *, status: int = 400) -> CommandRuleError:
        return cls(error.field, error.problem, status=status)


# -- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """One command devices understand and operators may send.

    :param name: ``[a-z][a-z0-9-]{0,62}``, e.g. ``diagnostics``.
    :param purpose: why the command exists (GDPR Art. 5(1)(b) and 25: purpose
        limitation). The requester must state the same purpose; it is recorded.
    :param senders: who may send it, exact principals only; empty means nobody. IAM
        role or user ARNs on AWS (a role covers all its sessions), ``serviceAccount:`` or
        ``user:`` emails on GCP, ``objectId:<Entra object id>`` on Azure.
    :param arguments: JSON Schema (the subset of ``core/argument_schema.py``).
    :param result: JSON Schema of the response's ``result``. Default: an empty object.
    :param timeout_seconds: how long the device has to answer, 1..3600.
    :param things: a regular expression the thing name must match in full (which
        devices the command is for). Default: any thing of the fleet.
    """

    name: str
    purpose: str
    senders: tuple[str, ...]
    arguments: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_ARGUMENTS))
    result: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_RESULT))
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    things: str = THING_NAME_RULE
    description: str = ""

    def __post_init__(self) -> None:
        validate_command_name(self.name)
        validate_purpose(self.purpose, "purpose")
        object.__setattr__(self, "senders", validate_senders(self.senders))
        object.__setattr__(self, "arguments", _schema(self.arguments, "arguments"))
        object.__setattr__(self, "result", _schema(self.result, "result"))
        validate_timeout(self.timeout_seconds)
        _validate_things(self.things)
        if not isinstance(self.description, str) or len(self.description) > MAX_DESCRIPTION_LENGTH:
            raise CommandRuleError(
                "description", f"allowed: text of at most {MAX_DESCRIPTION_LENGTH} characters"
            )

    def may_send(self, principal: str) -> bool:
        """Whether ``principal`` (a caller ARN as IAM reports it) is one of the senders."""
        return any(sender_matches(sender, principal) for sender in self.senders)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "senders": list(self.senders),
            "arguments": dict(self.arguments),
            "result": dict(self.result),
            "timeoutSeconds": self.timeout_seconds,
            "things": self.things,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Self:
        return cls(
            name=raw["name"],
            purpose=raw["purpose"],
            senders=tuple(raw.get("senders", ())),
            arguments=raw.get("arguments", EMPTY_ARGUMENTS),
            result=raw.get("result", EMPTY_RESULT),
            timeout_seconds=raw.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
            things=raw.get("things", THING_NAME_RULE),
            description=raw.get("description", ""),
        )


def _schema(value: object, field_name: str) -> dict[str, Any]:
    try:
        return check_schema(value, field_name=field_name)
    except SchemaError as error:
        raise CommandRuleError.from_schema(error) from None


@dataclass(frozen=True)
class CommandCatalogue:
    """Every command of the fleet, by name. Empty: no command may be sent."""

    commands: tuple[CommandSpec, ...] = ()

    def __post_init__(self) -> None:
        if len(self.commands) > MAX_COMMANDS:
            raise CommandRuleError(
                "commands", f"{len(self.commands)} commands; allowed: at most {MAX_COMMANDS}"
            )
        seen: set[str] = set()
        for index, spec in enumerate(self.commands):
            if spec.name in seen:
                raise CommandRuleError(
                    f"commands[{index}].name", f"{spec.name!r} appears twice; allowed: unique"
                )
            seen.add(spec.name)

    def get(self, name: object) -> CommandSpec:
        """The command called ``name``, or a 404 naming the known ones."""
        allowed = ", ".join(spec.name for spec in self.commands) or "none (the catalogue is empty)"
        if not isinstance(name, str) or not _COMMAND_NAME_RE.match(name):
            raise CommandRuleError(
                "name", f"{shown(name)} is not a command name; allowed: {allowed}"
            )
        for spec in self.commands:
            if spec.name == name:
                return spec
        raise CommandRuleError(
            "name", f"{name!r} is not in the catalogue; allowed: {allowed}", status=404
        )

    def to_json(self) -> str:
        return strict_json.dumps([spec.to_dict() for spec in self.commands])

    @classmethod
    def from_json(cls, text: str) -> Self:
        raw = strict_json.loads(text, max_bytes=256 * 1024, max_depth=2 * MAX_DEPTH)
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: object) -> Self:
        """A catalogue from a list of command objects; errors name ``commands[i].field``."""
        if not isinstance(raw, list):
            raise CommandRuleError("commands", f"{shown(raw)} is not a list of commands")
        specs = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping) or "name" not in item or "purpose" not in item:
                raise CommandRuleError(
                    f"commands[{index}]", "allowed: an object with at least name and purpose"
                )
            try:
                specs.append(CommandSpec.from_dict(item))
            except CommandRuleError as error:
                raise CommandRuleError(f"commands[{index}].{error.field}", error.problem) from None
        return cls(tuple(specs))


def validate_command_name(value: object) -> str:
    if not isinstance(value, str) or not _COMMAND_NAME_RE.match(value):
        raise CommandRuleError(
            "name", f"{shown(value)} is not a command name; allowed: {COMMAND_NAME_RULE}"
        )
    return value


def validate_purpose(value: object, field_name: str = "purpose") -> str:
    if not isinstance(value, str) or not _PURPOSE_RE.match(value):
        raise CommandRuleError(
            field_name,
            f"{shown(value)} is not a purpose; allowed: {PURPOSE_RULE}, e.g. 'diagnostics'",
        )
    return value


def validate_senders(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise CommandRuleError("senders", f"{shown(value)} is not a list of IAM role/user ARNs")
    if len(value) > MAX_SENDERS:
        raise CommandRuleError("senders", f"{len(value)} senders; allowed: at most {MAX_SENDERS}")
    for sender in value:
        if not isinstance(sender, str) or not (
            _SENDER_RE.match(sender)
            or _GCP_SENDER_RE.match(sender)
            or _AZURE_SENDER_RE.match(sender)
        ):
            # An ARN keeps the AWS message; anything else also hears of the other clouds.
            other_clouds = (
                ""
                if isinstance(sender, str) and sender.startswith("arn:")
                else " (GCP: serviceAccount:<email> or user:<email>; "
                "Azure: objectId:<Entra object id>)"
            )
            raise CommandRuleError(
                "senders",
                f"{shown(sender)} is not an IAM role or user ARN; allowed: "
                f"arn:aws:iam::<account>:role/<name> or :user/<name>, no wildcards{other_clouds}",
            )
    return tuple(value)


def sender_cloud(sender: str) -> str:
    """Which cloud's principal a (valid) sender names: ``aws``, ``gcp`` or ``azure``."""
    if sender.startswith("arn:"):
        return "aws"
    return "azure" if sender.startswith("objectId:") else "gcp"


def sender_matches(sender: str, principal: str) -> bool:
    """Whether the caller ``principal`` is ``sender``.

    A function URL with AWS_IAM auth reports a role session as
    ``arn:aws:sts::<account>:assumed-role/<role name>/<session>``; the role ARN
    ``arn:aws:iam::<account>:role/<path/><role name>`` covers every session of it.
    A Google principal (``serviceAccount:<email>``, ``user:<email>``) or an Entra
    object id (``objectId:<guid>``) matches the same principal, ignoring the case
    of the email or guid; never an AWS ARN.
    """
    if sender == principal:
        return True
    if sender_cloud(sender) != "aws":
        # Google emails and Entra object ids are case-insensitive; the prefix is not.
        kind, _, name = sender.partition(":")
        other_kind, _, other_name = principal.partition(":")
        return kind == other_kind and bool(name) and name.lower() == other_name.lower()
    match = re.fullmatch(r"arn:(aws[a-z-]*):iam::([0-9]{12}):role/(?:.*/)?([^/]+)", sender)
    if match is None:
        return False
    partition, account, role = match.groups()
    prefix = f"arn:{partition}:sts::{account}:assumed-role/{role}/"
    return principal.startswith(prefix) and "/" not in principal[len(prefix) :]


def validate_timeout(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandRuleError(
            "timeoutSeconds",
            f"{shown(value)} is not a whole number; allowed: seconds from "
            f"{MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}",
        )
    if not MIN_TIMEOUT_SECONDS <= value <= MAX_TIMEOUT_SECONDS:
        raise CommandRuleError(
            "timeoutSeconds",
            f"{value} is outside {MIN_TIMEOUT_SECONDS}..{MAX_TIMEOUT_SECONDS}; allowed: seconds",
        )
    return value


def _validate_things(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise CommandRuleError("things", f"{shown(value)}; allowed: a regular expression")
    try:
        re.compile(value)
    except re.error as error:
        raise CommandRuleError(
            "things", f"{shown(value)} is not a regular expression ({error})"
        ) from None
    return value


# -- the operator's request (to the broker) ---------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """A checked request: ``spec`` is the catalogue entry, ``arguments`` valid against it."""

    thing: str
    spec: CommandSpec
    arguments: dict[str, Any]
    reason: str
    purpose: str
    client_token: str | None = None


def parse_send_request(
    raw: object,
    catalogue: CommandCatalogue,
    *,
    requester: str,
    thing_name_pattern: str = THING_NAME_RULE,
) -> SendRequest:
    """Check a decoded request body against every rule, in the order a caller fixes them.

    Raises :class:`CommandRuleError`: 400 for malformed input, 403 for a caller or
    purpose not allowed, 404 for an unknown command.
    """
    if not isinstance(raw, dict):
        raise CommandRuleError(
            "body", f"{shown(raw)} is not an object; allowed: {', '.join(REQUEST_FIELDS)}"
        )
    unknown = sorted(set(raw) - set(REQUEST_FIELDS))
    if unknown:
        raise CommandRuleError(
            unknown[0], f"is not a request field; allowed: {', '.join(REQUEST_FIELDS)}"
        )
    thing = validate_thing(raw.get("thing"), pattern=thing_name_pattern)
    spec, arguments, reason, purpose = check_command_fields(raw, catalogue, requester=requester)
    check_thing_for(spec, thing)
    return SendRequest(thing, spec, arguments, reason, purpose, _client_token(raw))


def check_command_fields(
    raw: Mapping[str, Any], catalogue: CommandCatalogue, *, requester: str
) -> tuple[CommandSpec, dict[str, Any], str, str]:
    """The command part of a request (name, caller, purpose, arguments, reason), any thing.

    Shared by single sends and fleet fan-outs. Returns (spec, arguments, reason, purpose).
    """
    spec = catalogue.get(raw.get("name"))
    if not spec.may_send(requester):
        raise CommandRuleError(
            "name",
            f"{spec.name!r} may not be sent by {shown(requester, 120)}; allowed: the command's "
            "senders in the catalogue",
            status=403,
        )
    purpose = validate_purpose(raw.get("purpose"), "purpose")
    if purpose != spec.purpose:
        raise CommandRuleError(
            "purpose",
            f"{purpose!r} is not the purpose of {spec.name!r}; allowed: {spec.purpose!r} "
            "(purpose limitation: a command serves the one purpose it was declared for)",
            status=403,
        )
    arguments = raw.get("arguments", {})
    try:
        validate(arguments, spec.arguments)
    except SchemaError as error:
        raise CommandRuleError.from_schema(error) from None
    return spec, arguments, validate_reason(raw.get("reason")), purpose


def check_thing_for(spec: CommandSpec, thing: str) -> None:
    """403 unless ``thing`` is one of the devices ``spec`` is for."""
    if re.fullmatch(spec.things, thing) is None:
        raise CommandRuleError(
            "thing",
            f"{thing!r} is not a device {spec.name!r} is for; allowed: things matching "
            f"{spec.things!r}",
            status=403,
        )


def client_token(raw: Mapping[str, Any]) -> str | None:
    """The request's optional ``clientToken``, checked."""
    return _client_token(raw)


def _client_token(raw: Mapping[str, Any]) -> str | None:
    token = raw.get("clientToken")
    if token is None:
        return None
    if not isinstance(token, str) or not _CLIENT_TOKEN_RE.match(token):
        raise CommandRuleError(
            "clientToken", f"{shown(token)} is not a client token; allowed: {CLIENT_TOKEN_RULE}"
        )
    return token


def command_id_for(requester: str, client_token: str) -> str:
    """The command id of a retried request: the same for the same requester and token.

    Scoped by requester, so one caller's token can never name another's command.
    """
    return str(uuid.uuid5(_CLIENT_TOKEN_NAMESPACE, f"{requester}\n{client_token}"))


def validate_thing(value: object, *, pattern: str = THING_NAME_RULE) -> str:
    if value is None:
        raise CommandRuleError("thing", f"missing; allowed: a thing name ({THING_NAME_RULE})")
    try:
        name = validate_thing_name(value, field_name="thing")
    except TopicModelError as error:
        raise CommandRuleError("thing", error.problem) from None
    if pattern != THING_NAME_RULE and re.fullmatch(pattern, name) is None:
        raise CommandRuleError(
            "thing", f"{shown(name)} does not match the fleet's thing names; allowed: {pattern}"
        )
    return name


def validate_reason(value: object) -> str:
    allowed = f"allowed: 1 to {MAX_REASON_LENGTH} printable characters (a ticket id or why)"
    if not isinstance(value, str) or not value.strip():
        raise CommandRuleError("reason", f"{shown(value)} is missing or empty; {allowed}")
    text = value.strip()
    if len(text) > MAX_REASON_LENGTH or not text.isprintable():
        raise CommandRuleError("reason", f"{shown(text)} is not allowed; {allowed}")
    return text


def arguments_digest(arguments: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical arguments: what the audit records instead of the values."""
    return hashlib.sha256(strict_json.dumps(dict(arguments)).encode("utf-8")).hexdigest()


# -- the command on the wire (broker -> device) -------------------------------------------------


@dataclass(frozen=True)
class CommandMessage:
    """What the device receives on its commands topic."""

    id: str
    thing: str
    name: str
    arguments: dict[str, Any]
    issued_at: datetime
    expires_at: datetime

    def payload(self) -> bytes:
        body = strict_json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "id": self.id,
                "thing": self.thing,
                "name": self.name,
                "arguments": self.arguments,
                "issuedAt": format_time(self.issued_at),
                "expiresAt": format_time(self.expires_at),
            }
        ).encode("utf-8")
        if len(body) > MAX_COMMAND_BYTES:
            raise CommandRuleError(
                "arguments",
                f"the command is {len(body)} bytes; allowed: at most {MAX_COMMAND_BYTES}",
                status=413,
            )
        return body


def new_command(
    request: SendRequest, *, now: datetime, command_id: str | None = None
) -> CommandMessage:
    return CommandMessage(
        id=command_id or str(uuid.uuid4()),
        thing=request.thing,
        name=request.spec.name,
        arguments=request.arguments,
        issued_at=now,
        expires_at=now + timedelta(seconds=request.spec.timeout_seconds),
    )


@dataclass(frozen=True)
class Routing:
    """The exact topics of one thing's commands and its responses."""

    commands: str
    responses: str

    @classmethod
    def of(cls, topics: TopicModel, thing: str) -> Self:
        return cls(render_topic(topics.commands, thing), render_topic(topics.responses, thing))


def correlation_data(command_id: str) -> bytes:
    """MQTT 5 correlation data: the command id's ASCII bytes (also in the payload)."""
    return command_id.encode("ascii")


def parse_command(
    payload: bytes, catalogue: CommandCatalogue, *, thing: str, now: datetime
) -> CommandMessage:
    """The device's check of a received command; nothing runs unless this passes."""
    document = _decode(payload, "command", MAX_COMMAND_BYTES)
    _fields(document, COMMAND_FIELDS, "command")
    _version(document)
    command_id = validate_command_id(document.get("id"))
    if document.get("thing") != thing:
        raise CommandRuleError(
            "thing", f"{shown(document.get('thing'))} is not this device; allowed: {thing!r}"
        )
    spec = catalogue.get(document.get("name"))
    arguments = document.get("arguments")
    try:
        validate(arguments, spec.arguments)
    except SchemaError as error:
        raise CommandRuleError.from_schema(error) from None
    issued = parse_time(document.get("issuedAt"), "issuedAt")
    expires = parse_time(document.get("expiresAt"), "expiresAt")
    if expires <= now:
        raise CommandRuleError(
            "expiresAt", f"{format_time(expires)} has passed; allowed: a command not yet expired"
        )
    if expires - issued > timedelta(seconds=spec.timeout_seconds):
        raise CommandRuleError(
            "expiresAt",
            f"lasts longer than {spec.name!r}'s timeout ({spec.timeout_seconds} s); "
            "allowed: within it",
        )
    return CommandMessage(command_id, thing, spec.name, arguments, issued, expires)  # type: ignore[arg-type]


# -- the response on the wire (device -> responses topic) ------------------------------------------


@dataclass(frozen=True)
class ResponseMessage:
    id: str
    thing: str
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def payload(self) -> bytes:
        body: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "id": self.id,
            "thing": self.thing,
            "status": self.status,
            "result": self.result,
        }
        if self.error is not None:
            body["error"] = self.error[:MAX_ERROR_LENGTH]
        data = strict_json.dumps(body).encode("utf-8")
        if len(data) > MAX_RESPONSE_BYTES:
            raise CommandRuleError(
                "result",
                f"the response is {len(data)} bytes; allowed: at most {MAX_RESPONSE_BYTES}",
            )
        return data


def parse_response(
    payload: bytes,
    *,
    thing: str,
    spec: CommandSpec | None = None,
    correlation: bytes | None = None,
) -> ResponseMessage:
    """Check a response that arrived on ``thing``'s responses topic.

    ``thing`` comes from the topic (which the broker's policy ties to the
    publishing certificate), never from the payload: a payload naming another
    thing is refused, so no device can answer for another's command.
    """
    document = _decode(payload, "response", MAX_RESPONSE_BYTES)
    _fields(document, RESPONSE_FIELDS, "response")
    _version(document)
    command_id = validate_command_id(document.get("id"))
    if correlation is not None and correlation != correlation_data(command_id):
        raise CommandRuleError(
            "id", f"{command_id!r} differs from the correlation data; allowed: the same id"
        )
    if document.get("thing") != thing:
        raise CommandRuleError(
            "thing",
            f"{shown(document.get('thing'))} is not the thing whose topic carried the response; "
            f"allowed: {thing!r}",
        )
    status = document.get("status")
    if status not in RESPONSE_STATUSES:
        raise CommandRuleError(
            "status", f"{shown(status)}; allowed: one of {', '.join(RESPONSE_STATUSES)}"
        )
    result = document.get("result", {})
    if spec is not None and status == "succeeded":
        try:
            validate(result, spec.result, field_name="result")
        except SchemaError as error:
            raise CommandRuleError.from_schema(error) from None
    elif not isinstance(result, dict):
        raise CommandRuleError("result", f"{shown(result)} is not an object")
    problem = document.get("error")
    if problem is not None and (not isinstance(problem, str) or len(problem) > MAX_ERROR_LENGTH):
        raise CommandRuleError("error", f"allowed: text of at most {MAX_ERROR_LENGTH} characters")
    return ResponseMessage(command_id, thing, status, result, problem)


# -- shared helpers -----------------------------------------------------------------------------


def validate_command_id(value: object) -> str:
    if not isinstance(value, str) or not _COMMAND_ID_RE.match(value):
        raise CommandRuleError(
            "id", f"{shown(value)} is not a command id; allowed: a lowercase UUID"
        )
    return value


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object, field_name: str) -> datetime:
    allowed = "allowed: UTC time as YYYY-MM-DDTHH:MM:SSZ"
    if not isinstance(value, str) or len(value) != 20:
        raise CommandRuleError(field_name, f"{shown(value)}; {allowed}")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CommandRuleError(field_name, f"{shown(value)}; {allowed}") from None


def _decode(payload: bytes, what: str, limit: int) -> dict[str, Any]:
    try:
        document = strict_json.loads(payload, max_bytes=limit, max_depth=MAX_DEPTH)
    except strict_json.StrictJsonError as error:
        raise CommandRuleError(
            what, error.problem, status=413 if error.too_large else 400
        ) from None
    if not isinstance(document, dict):
        raise CommandRuleError(what, f"{shown(document)} is not an object")
    return document


def _fields(document: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(document) - set(allowed))
    if unknown:
        raise CommandRuleError(
            shown(unknown[0], 40).strip("'"),
            f"is not a {what} field; allowed: {', '.join(allowed)}",
        )


def _version(document: Mapping[str, Any]) -> None:
    if document.get("v") != ENVELOPE_VERSION:
        raise CommandRuleError("v", f"{shown(document.get('v'))}; allowed: {ENVELOPE_VERSION}")


def audit_record(**fields: object) -> dict[str, object]:
    """One structured audit record; empty fields left out, long strings shortened."""
    record: dict[str, object] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str) and len(value) > 2 * MAX_REASON_LENGTH:
            value = value[: 2 * MAX_REASON_LENGTH] + "..."
        record[key] = value
    return record


def decode_request_body(body: str | bytes) -> object:
    """A broker request body, strictly decoded (size, depth, duplicate keys)."""
    try:
        return strict_json.loads(body, max_bytes=MAX_REQUEST_BYTES, max_depth=MAX_DEPTH)
    except strict_json.StrictJsonError as error:
        status = 413 if error.too_large else 400
        raise CommandRuleError("body", error.problem, status=status) from None
