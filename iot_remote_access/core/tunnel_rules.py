"""Tunnel rules: what the tunnel broker, the sweeper and the CLI enforce.

AWS IoT Secure Tunneling itself limits little (a tunnel lives up to 12 hours,
IAM has no condition key for the lifetime, no reason is recorded), so every
limit lives here, once, and is applied by the broker Lambda before it calls
``OpenTunnel``, by the CLI before it calls the broker, and by the sweeper that
closes tunnels the broker would not have allowed to stay open.

Standard library only: the Lambda functions and the CLI both import it.
Tunnel access tokens never pass through this module.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from iot_remote_access.core.rule_error import RuleError
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModelError, validate_thing_name

#: AWS's own bounds for ``timeoutConfig.maxLifetimeTimeoutMinutes``.
MIN_LIFETIME_MINUTES = 1
MAX_LIFETIME_MINUTES = 720
DEFAULT_LIFETIME_MINUTES = 60
MAX_REASON_LENGTH = 256
DEFAULT_SERVICES = ("SSH",)
DEFAULT_MAX_OPEN_TUNNELS_PER_THING = 1
#: Upper bound for ``max_open_tunnels_per_thing``: a guard against typos, not an AWS limit.
MAX_OPEN_TUNNELS_PER_THING_LIMIT = 10
DEFAULT_CONNECT_GRACE_MINUTES = 15

#: AWS's patterns (botocore's iotsecuretunneling model) for service names, tunnel ids
#: and thing group names.
SERVICE_NAME_RULE = "[a-zA-Z0-9:_-]{1,128}"
TUNNEL_ID_RULE = "[a-zA-Z0-9_+=:-]{1,128}"
THING_GROUP_NAME_RULE = "[a-zA-Z0-9:_-]{1,128}"
_SERVICE_RE = re.compile(rf"\A{SERVICE_NAME_RULE}\Z")
_TUNNEL_ID_RE = re.compile(rf"\A{TUNNEL_ID_RULE}\Z")
_THING_GROUP_RE = re.compile(rf"\A{THING_GROUP_NAME_RULE}\Z")

#: Tags the broker puts on every tunnel it opens; the sweeper reads the expiry back.
TAG_REQUESTER = "iot-remote-access:requester"
TAG_REASON = "iot-remote-access:reason"
TAG_EXPIRES_AT = "iot-remote-access:expires-at"
MAX_TAG_VALUE_LENGTH = 256

#: The fields a request to the broker may carry.
REQUEST_FIELDS = ("thing", "service", "minutes", "reason")

#: Why the sweeper closed a tunnel (the ``closeReason`` of its audit record).
CLOSE_LIFETIME_EXCEEDED = "lifetime-exceeded"
CLOSE_SOURCE_NOT_CONNECTED = "source-not-connected"


class TunnelRuleError(RuleError):
    """A request or setting that breaks a tunnel rule."""


def _shown(value: object, limit: int = 60) -> str:
    """``repr`` of untrusted input, shortened so a huge value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# -- single values ------------------------------------------------------------


def validate_thing(value: object, *, pattern: str = THING_NAME_RULE) -> str:
    """A thing name by AWS's rule and, when narrower, the fleet's ``pattern``."""
    if value is None:
        raise TunnelRuleError("thing", f"missing; allowed: a thing name ({THING_NAME_RULE})")
    if not isinstance(value, str):  # quoted shortened here: a list can be any size
        raise TunnelRuleError(
            "thing", f"{_shown(value)} is not a string; allowed: a thing name ({THING_NAME_RULE})"
        )
    try:
        name = validate_thing_name(value, field_name="thing")
    except TopicModelError as error:
        raise TunnelRuleError("thing", error.problem) from None
    if pattern != THING_NAME_RULE and re.fullmatch(pattern, name) is None:
        raise TunnelRuleError(
            "thing", f"{_shown(name)} does not match the fleet's thing names; allowed: {pattern}"
        )
    return name


def validate_service(value: object, allowed: Sequence[str] | None = None) -> str:
    """A destination service name, and (when ``allowed`` is given) one on the allowlist."""
    if value is None:
        raise TunnelRuleError("service", f"missing; allowed: {_allowed_services(allowed)}")
    if not isinstance(value, str) or not _SERVICE_RE.match(value):
        raise TunnelRuleError(
            "service",
            f"{_shown(value)} is not a service name; allowed: {_allowed_services(allowed)}",
        )
    if allowed is not None and value not in allowed:
        raise TunnelRuleError(
            "service",
            f"{_shown(value)} is not on the allowlist; allowed: {_allowed_services(allowed)}",
            status=403,
        )
    return value


def _allowed_services(allowed: Sequence[str] | None) -> str:
    if allowed is None:
        return f"a service name ({SERVICE_NAME_RULE}), e.g. SSH"
    return ", ".join(allowed)


def validate_minutes(value: object, *, maximum: int = MAX_LIFETIME_MINUTES) -> int:
    """A lifetime in whole minutes, 1..``maximum`` (AWS allows at most 720).

    Accepts an integer, or a string of digits (what a command line gives).
    """
    allowed = f"allowed: a whole number of minutes from {MIN_LIFETIME_MINUTES} to {maximum}"
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,9}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TunnelRuleError("minutes", f"{_shown(value)} is not a whole number; {allowed}")
    if not MIN_LIFETIME_MINUTES <= value <= maximum:
        raise TunnelRuleError(
            "minutes", f"{value} is outside {MIN_LIFETIME_MINUTES}..{maximum}; {allowed}"
        )
    return value


def validate_reason(value: object) -> str:
    """A ticket id or justification: 1..256 printable characters, not only spaces.

    Leading and trailing spaces are dropped before the length is checked.
    """
    allowed = (
        f"allowed: 1 to {MAX_REASON_LENGTH} printable characters (a ticket id or justification)"
    )
    if value is None:
        raise TunnelRuleError("reason", f"missing; {allowed}")
    if not isinstance(value, str):
        raise TunnelRuleError("reason", f"{_shown(value)} is not text; {allowed}")
    text = value.strip()
    if not text:
        raise TunnelRuleError("reason", f"{_shown(value)} is empty; {allowed}")
    if len(text) > MAX_REASON_LENGTH:
        raise TunnelRuleError("reason", f"is {len(text)} characters long; {allowed}")
    for position, character in enumerate(text):
        if not character.isprintable():
            raise TunnelRuleError(
                "reason",
                f"contains the non-printable character U+{ord(character):04X} at position "
                f"{position}; {allowed}",
            )
    return text


def validate_tunnel_id(value: object) -> str:
    if not isinstance(value, str) or not _TUNNEL_ID_RE.match(value):
        raise TunnelRuleError(
            "tunnel-id", f"{_shown(value)} is not a tunnel id; allowed: {TUNNEL_ID_RULE}"
        )
    return value


def setting_minutes(name: str, value: object, *, maximum: int = MAX_LIFETIME_MINUTES) -> int:
    """A minutes setting: an integer (never a string), 1..``maximum``; errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TunnelRuleError(
            name,
            f"{_shown(value)} is not a whole number; allowed: minutes from "
            f"{MIN_LIFETIME_MINUTES} to {maximum}",
        )
    try:
        return validate_minutes(value, maximum=maximum)
    except TunnelRuleError as error:
        raise TunnelRuleError(name, error.problem) from None


def validate_thing_group(value: object) -> str:
    if not isinstance(value, str) or not _THING_GROUP_RE.match(value):
        raise TunnelRuleError(
            "thing_groups",
            f"{_shown(value)} is not a thing group name; allowed: {THING_GROUP_NAME_RULE}",
        )
    return value


def validate_max_open(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (1 <= value <= MAX_OPEN_TUNNELS_PER_THING_LIMIT)
    ):
        raise TunnelRuleError(
            "max_open_tunnels_per_thing",
            f"{_shown(value)} is not allowed; allowed: a whole number from 1 to "
            f"{MAX_OPEN_TUNNELS_PER_THING_LIMIT}",
        )
    return value


# -- the policy a deployment enforces ----------------------------------------------


@dataclass(frozen=True)
class TunnelPolicy:
    """The limits one deployment enforces. Every default is decided here.

    :param allowed_services: destination services a tunnel may carry. Default: ``("SSH",)``.
    :param default_lifetime_minutes: used when a request names none. Default: 60.
    :param max_lifetime_minutes: the longest lifetime a request may ask for, 1..720.
        Default: 720 (AWS's maximum).
    :param max_open_tunnels_per_thing: Default: 1.
    :param connect_grace_minutes: how long a tunnel's source may stay unconnected
        before the sweeper closes it. Default: 15.
    :param thing_groups: when not empty, only things in one of these groups (directly
        or through a parent group) get tunnels. Default: any thing.
    :param thing_name_pattern: the fleet's thing-name pattern. Default: AWS's rule.
    """

    allowed_services: tuple[str, ...] = DEFAULT_SERVICES
    default_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES
    max_lifetime_minutes: int = MAX_LIFETIME_MINUTES
    max_open_tunnels_per_thing: int = DEFAULT_MAX_OPEN_TUNNELS_PER_THING
    connect_grace_minutes: int = DEFAULT_CONNECT_GRACE_MINUTES
    thing_groups: tuple[str, ...] = ()
    thing_name_pattern: str = THING_NAME_RULE

    def __post_init__(self) -> None:
        for name in ("allowed_services", "thing_groups"):
            _require_names(name, getattr(self, name))
        services = tuple(self.allowed_services)
        if not services:
            raise TunnelRuleError(
                "allowed_services", "[] is empty; allowed: one or more service names, e.g. ['SSH']"
            )
        for service in services:
            try:
                validate_service(service)
            except TunnelRuleError as error:
                raise TunnelRuleError("allowed_services", error.problem) from None
        object.__setattr__(self, "allowed_services", services)
        setting_minutes("max_lifetime_minutes", self.max_lifetime_minutes)
        setting_minutes("connect_grace_minutes", self.connect_grace_minutes)
        setting_minutes(
            "default_lifetime_minutes",
            self.default_lifetime_minutes,
            maximum=self.max_lifetime_minutes,
        )
        validate_max_open(self.max_open_tunnels_per_thing)
        groups = tuple(self.thing_groups)
        for group in groups:
            validate_thing_group(group)
        object.__setattr__(self, "thing_groups", groups)
        try:
            re.compile(self.thing_name_pattern)
        except (re.error, TypeError) as error:
            raise TunnelRuleError(
                "thing_name_pattern",
                f"{_shown(self.thing_name_pattern)} is not a regular expression ({error})",
            ) from None

    def to_json(self) -> str:
        """For the functions' environment; read back with :meth:`from_json`."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Self:
        raw = json.loads(text)
        return cls(
            **{
                **raw,
                "allowed_services": tuple(raw["allowed_services"]),
                "thing_groups": tuple(raw["thing_groups"]),
            }
        )


def _require_names(field_name: str, value: object) -> None:
    # A str is iterable: "SSH" would silently become ("S", "S", "H").
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(
            f"TunnelPolicy {field_name}: got {type(value).__name__} {_shown(value)}; "
            "allowed: a list of str, e.g. ['SSH']"
        )


@dataclass(frozen=True)
class TunnelRequest:
    thing: str
    service: str
    minutes: int
    reason: str


def parse_request(body: object, policy: TunnelPolicy) -> TunnelRequest:
    """Validate a broker request body (already decoded from JSON) against ``policy``.

    Raises :class:`TunnelRuleError` naming the first field that is wrong.
    """
    if not isinstance(body, Mapping):
        raise TunnelRuleError(
            "body",
            f"a JSON {type(body).__name__} is not an object; allowed: a JSON object with "
            f"the fields {', '.join(REQUEST_FIELDS)}",
        )
    unknown = sorted(str(key) for key in body if key not in REQUEST_FIELDS)
    if unknown:
        # The key names the field in the answer: shortened and printable, like any value.
        name = unknown[0] if len(unknown[0]) <= 40 and unknown[0].isprintable() else None
        raise TunnelRuleError(
            name or _shown(unknown[0], 40),
            f"unknown field; allowed: {', '.join(REQUEST_FIELDS)}",
        )
    thing = validate_thing(body.get("thing"), pattern=policy.thing_name_pattern)
    service = validate_service(
        body.get("service", policy.allowed_services[0]), policy.allowed_services
    )
    minutes = validate_minutes(
        body.get("minutes", policy.default_lifetime_minutes), maximum=policy.max_lifetime_minutes
    )
    reason = validate_reason(body.get("reason"))
    return TunnelRequest(thing=thing, service=service, minutes=minutes, reason=reason)


# -- what the broker sends to AWS ---------------------------------------------------


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second (tags, audit records, responses)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def tag_value(text: str) -> str:
    """``text`` as a valid tag value: AWS allows letters, digits, spaces and ``_.:/=+-@``.

    Other characters become ``_``; the exact reason is kept in the tunnel's
    description and in the audit record.
    """
    kept = "".join(
        c if unicodedata.category(c)[0] in "LNZ" or c in "_.:/=+-@" else "_" for c in text
    )
    return kept[:MAX_TAG_VALUE_LENGTH]


def expires_at(request: TunnelRequest, now: datetime) -> str:
    """When the tunnel's allowed lifetime ends (the broker's tag and answer)."""
    return format_time(now + timedelta(minutes=request.minutes))


def open_tunnel_parameters(
    request: TunnelRequest, *, requester: str, now: datetime
) -> dict[str, Any]:
    """The keyword arguments for ``iotsecuretunneling.open_tunnel``."""
    return {
        # The description shows in ListTunnels; it accepts any non-control character.
        "description": request.reason,
        "destinationConfig": {"thingName": request.thing, "services": [request.service]},
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": request.minutes},
        "tags": [
            {"key": TAG_REQUESTER, "value": tag_value(requester)},
            {"key": TAG_REASON, "value": tag_value(request.reason)},
            {"key": TAG_EXPIRES_AT, "value": expires_at(request, now)},
        ],
    }


@dataclass(frozen=True)
class TunnelSummary:
    """The part of a ``ListTunnels`` summary the count check needs."""

    tunnel_id: str
    status: str
    created_at: datetime | None


def summaries(raw: Iterable[Mapping[str, Any]]) -> list[TunnelSummary]:
    return [
        TunnelSummary(
            tunnel_id=str(item.get("tunnelId", "")),
            status=str(item.get("status", "")),
            created_at=item.get("createdAt"),
        )
        for item in raw
    ]


def open_tunnel_ids(tunnels: Iterable[TunnelSummary]) -> list[str]:
    """Ids of the OPEN tunnels, oldest first (ties broken by id, so every caller agrees)."""
    opened = [t for t in tunnels if t.status == "OPEN"]
    far_future = datetime.max.replace(tzinfo=UTC)
    opened.sort(key=lambda t: (t.created_at or far_future, t.tunnel_id))
    return [t.tunnel_id for t in opened]


def check_open_count(thing: str, open_ids: Sequence[str], policy: TunnelPolicy) -> None:
    """Refuse (409) when ``thing`` already has as many open tunnels as allowed."""
    if len(open_ids) >= policy.max_open_tunnels_per_thing:
        raise TunnelRuleError(
            "thing",
            f"{_shown(thing)} already has {len(open_ids)} open tunnel(s) ({', '.join(open_ids)}); "
            f"allowed: at most {policy.max_open_tunnels_per_thing} per thing; close one first",
            status=409,
        )


def keeps_new_tunnel(tunnel_id: str, open_ids: Sequence[str], policy: TunnelPolicy) -> bool:
    """After opening: whether ``tunnel_id`` is within the allowed number of open tunnels.

    Two requests for one thing at the same moment both pass the count check; each
    then sees both tunnels, and only the younger one(s) beyond the limit close.
    """
    if tunnel_id not in open_ids:
        return True  # not listed yet (eventual consistency): the count before opening held
    return open_ids.index(tunnel_id) < policy.max_open_tunnels_per_thing


def check_thing_groups(thing: str, groups: Iterable[str], policy: TunnelPolicy) -> None:
    """Refuse (403) a thing outside every allowed group (``groups`` include parents)."""
    if not policy.thing_groups:
        return
    if not set(groups) & set(policy.thing_groups):
        raise TunnelRuleError(
            "thing",
            f"{_shown(thing)} is in none of the thing groups allowed tunnels; "
            f"allowed: things in {', '.join(policy.thing_groups)}",
            status=403,
        )


# -- what the sweeper decides ---------------------------------------------------------


@dataclass(frozen=True)
class TunnelState:
    """What the sweeper needs from ``DescribeTunnel``'s ``tunnel``."""

    tunnel_id: str
    status: str
    thing: str | None
    created_at: datetime | None
    lifetime_minutes: int | None
    source_connected: bool
    source_changed_at: datetime | None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_description(cls, tunnel: Mapping[str, Any]) -> Self:
        source = tunnel.get("sourceConnectionState") or {}
        destination = tunnel.get("destinationConfig") or {}
        timeout = tunnel.get("timeoutConfig") or {}
        return cls(
            tunnel_id=str(tunnel.get("tunnelId", "")),
            status=str(tunnel.get("status", "")),
            thing=destination.get("thingName"),
            created_at=tunnel.get("createdAt"),
            lifetime_minutes=timeout.get("maxLifetimeTimeoutMinutes"),
            source_connected=source.get("status") == "CONNECTED",
            source_changed_at=source.get("lastUpdatedAt"),
            tags={str(t["key"]): str(t["value"]) for t in tunnel.get("tags") or []},
        )

    def allowed_until(self, policy: TunnelPolicy) -> datetime | None:
        """The earliest of: the broker's expiry tag, AWS's own timeout, the deployment maximum."""
        if self.created_at is None:
            return None
        limits = [self.created_at + timedelta(minutes=policy.max_lifetime_minutes)]
        if self.lifetime_minutes:
            limits.append(self.created_at + timedelta(minutes=self.lifetime_minutes))
        tagged = parse_time(self.tags.get(TAG_EXPIRES_AT, ""))
        if tagged is not None:
            limits.append(tagged)
        return min(limits)


def close_reason(state: TunnelState, now: datetime, policy: TunnelPolicy) -> str | None:
    """Why the sweeper must close this tunnel now, or None to leave it open.

    - past its allowed lifetime (also tunnels not opened by the broker: the
      deployment's maximum applies to every tunnel in the account);
    - its source (the operator's localproxy) has not been connected for the grace
      period: it never connected, or it left and did not come back (an idle
      tunnel is an open door; ask the broker for a new one when needed).
    """
    if state.status != "OPEN":
        return None
    allowed_until = state.allowed_until(policy)
    if allowed_until is not None and now >= allowed_until:
        return CLOSE_LIFETIME_EXCEEDED
    if not state.source_connected:
        since = max(filter(None, (state.created_at, state.source_changed_at)), default=None)
        if since is not None and now - since >= timedelta(minutes=policy.connect_grace_minutes):
            return CLOSE_SOURCE_NOT_CONNECTED
    return None


# -- audit records --------------------------------------------------------------------


def audit_record(**fields: object) -> dict[str, object]:
    """One structured audit record; empty fields are left out.

    Callers pass who, what and the decision; values that came from the request
    are shortened so a hostile request cannot inflate the log. Never pass a token.
    """
    record: dict[str, object] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str) and len(value) > 2 * MAX_REASON_LENGTH:
            value = value[: 2 * MAX_REASON_LENGTH] + "..."
        record[key] = value
    return record


def shown_for_audit(value: object) -> object:
    """A request value as recorded in a refusal: strings and ints as they are, else repr."""
    if value is None or isinstance(value, (str, int)):
        return value
    return _shown(value, 120)


# -- AWS error classification ------------------------------------------------------------

#: Error codes that mean "try again later": the broker answers 503, nothing was done.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailureException",
        "InternalFailure",
        "InternalServerException",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def aws_error_status(code: str) -> int:
    """HTTP status for an AWS error the broker cannot fix: 503 retryable, else 502."""
    return 503 if code in RETRYABLE_ERROR_CODES else 502
