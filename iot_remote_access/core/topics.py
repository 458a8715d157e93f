"""The device topic model: which MQTT topics one device may use.

Written once, as templates over ``{thing}``, and rendered for every target: the
AWS IoT policy (``${iot:Connection.Thing.ThingName}``), the mosquitto ACL and
HiveMQ permissions (client-id substitution), Azure routing. Every template is
validated here so that no renderer can ever emit a wildcard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

THING_PLACEHOLDER = "{thing}"

#: AWS IoT's own rule for thing names; every cloud's device id must satisfy it
#: too, so that one fleet can move between clouds.
THING_NAME_RULE = "[a-zA-Z0-9:_-]{1,128}"
_THING_NAME_RE = re.compile(rf"\A{THING_NAME_RULE}\Z")
MAX_THING_NAME_LENGTH = 128

#: AWS IoT limits for a topic name (bytes of UTF-8, forward slashes).
MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7

# `?` is an IAM wildcard in resource ARNs, `${` starts a policy variable:
# either would widen a rendered AWS policy, so templates may not contain them.
_FORBIDDEN_FRAGMENTS = ("+", "#", "*", "?", "${")

DEFAULT_TELEMETRY_TOPIC = "dt/{thing}/telemetry"
DEFAULT_COMMANDS_TOPIC = "cmd/{thing}/commands"
#: Where a device answers its commands: one exact topic per thing (the command
#: id travels in the payload and MQTT 5 correlation data, never in the topic).
DEFAULT_COMMAND_RESPONSES_TOPIC = "cmd/{thing}/responses"
DEFAULT_ROTATION_CSR_TOPIC = "rot/{thing}/csr"
DEFAULT_ROTATION_CERTIFICATE_TOPIC = "rot/{thing}/certificate"
DEFAULT_ROTATION_CONFIRM_TOPIC = "rot/{thing}/confirm"

# Reserved AWS IoT topics a device needs for Secure Tunneling and Jobs. They are
# fixed by AWS and live under `$aws/`, which user templates may never use.
AWS_TUNNEL_NOTIFY_TOPIC = "$aws/things/{thing}/tunnels/notify"
AWS_JOBS_NOTIFY_NEXT_TOPIC = "$aws/things/{thing}/jobs/notify-next"
AWS_JOBS_START_NEXT_TOPIC = "$aws/things/{thing}/jobs/start-next"
AWS_JOBS_GET_NEXT_TOPIC = "$aws/things/{thing}/jobs/$next/get"

#: One job id as one topic level, whatever the job. Only the AWS renderer gives it
#: a meaning (IAM ``*``); it lives under ``$aws/things/{thing}/jobs/`` and nowhere else.
JOB_ID_PLACEHOLDER = "{jobId}"
AWS_JOBS_NAMESPACE = "$aws/things/{thing}/jobs"
AWS_JOBS_UPDATE_ANY_TOPIC = f"$aws/things/{{thing}}/jobs/{JOB_ID_PLACEHOLDER}/update"
#: AWS IoT job ids: letters, digits, '-' and '_', 1 to 64 (CreateJob's jobId).
JOB_ID_RULE = "[a-zA-Z0-9_-]{1,64}"
_JOB_ID_RE = re.compile(rf"\A{JOB_ID_RULE}\Z")

#: Device Shadow topics (AWS IoT Developer Guide, "Device Shadow MQTT topics"):
#: classic ``$aws/things/{thing}/shadow/...``, named ``.../shadow/name/{name}/...``.
AWS_SHADOW_PREFIX = "$aws/things/{thing}/shadow"
#: Shadow names: letters, digits, ':', '_' and '-', 1 to 64 (AWS IoT shadow name rule).
SHADOW_NAME_RULE = "[a-zA-Z0-9:_-]{1,64}"
_SHADOW_NAME_RE = re.compile(rf"\A{SHADOW_NAME_RULE}\Z")
#: Names of declared topics (settings keys, Sids, log fields).
TOPIC_NAME_RULE = "[a-zA-Z0-9_-]{1,64}"
_TOPIC_NAME_RE = re.compile(rf"\A{TOPIC_NAME_RULE}\Z")


class TopicModelError(ValueError):
    """A topic template or thing name that breaks the model's rules.

    ``problem`` is the message without the field, for callers (such as the
    settings model) that name the field their own way.
    """

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field_name = field_name
        self.problem = problem


def validate_thing_name(value: object, *, field_name: str = "thing") -> str:
    """Return ``value`` if it is a valid thing name, else raise naming the field.

    Used by every entry point that takes a thing name from outside: settings,
    the CLI, the tunnel broker, the bridge's command path.
    """
    if not isinstance(value, str):
        raise TopicModelError(field_name, f"{value!r} is not a string; allowed: {THING_NAME_RULE}")
    if not _THING_NAME_RE.match(value):
        raise TopicModelError(
            field_name,
            f"{_shorten(value)!r} is not a valid thing name; "
            f"allowed: {THING_NAME_RULE} (letters, digits, ':', '_', '-'; 1 to 128)",
        )
    return value


def validate_topic_template(value: object, *, field_name: str) -> str:
    """Return ``value`` if it is a safe topic template, else raise naming the field."""
    if not isinstance(value, str):
        raise TopicModelError(field_name, f"{value!r} is not a string")

    def fail(problem: str) -> TopicModelError:
        return TopicModelError(field_name, f"{_shorten(value)!r} {problem}")

    if not value:
        raise fail("is empty; allowed: a topic such as 'dt/{thing}/telemetry'")
    for fragment in _FORBIDDEN_FRAGMENTS:
        if fragment in value:
            raise fail(
                f"contains {fragment!r}; allowed: literal topic levels and "
                f"the placeholder {THING_PLACEHOLDER}, no wildcards or policy variables"
            )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise fail("contains a control character; allowed: printable characters")
    if value.startswith("$"):
        raise fail(
            "starts with '$'; topics under '$' (such as '$aws/') are reserved for the broker"
        )
    if THING_PLACEHOLDER not in value:
        raise fail(f"has no {THING_PLACEHOLDER}; every device topic must name its thing")
    leftover = value.replace(THING_PLACEHOLDER, "")
    if "{" in leftover or "}" in leftover:
        raise fail(f"has a placeholder other than {THING_PLACEHOLDER}")
    levels = value.split("/")
    if any(level == "" for level in levels):
        raise fail("has an empty topic level (leading, trailing or double '/')")
    if THING_PLACEHOLDER not in levels:
        raise fail(f"must have {THING_PLACEHOLDER} as a whole topic level, e.g. 'dt/{{thing}}/x'")
    slashes = value.count("/")
    if slashes > MAX_TOPIC_SLASHES:
        raise fail(f"has {slashes} '/'; AWS IoT allows at most {MAX_TOPIC_SLASHES}")
    longest = render_topic(value, "x" * MAX_THING_NAME_LENGTH, validate=False)
    size = len(longest.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        raise fail(
            f"renders to {size} bytes for a {MAX_THING_NAME_LENGTH}-character thing "
            f"name; AWS IoT allows at most {MAX_TOPIC_BYTES}"
        )
    return value


def render_topic(template: str, thing: str, *, validate: bool = True) -> str:
    """The concrete topic of one device."""
    if validate:
        validate_thing_name(thing)
    return template.replace(THING_PLACEHOLDER, thing)


def thing_from_topic(template: str, topic: str) -> str | None:
    """The thing a concrete topic belongs to, or None when it is not this template's.

    The inverse of :func:`render_topic`: the bridge uses it to find the device of
    a telemetry message, the security monitoring to check a subscription.
    """
    pattern = "".join(
        "(?P<thing>[^/]+)" if part == THING_PLACEHOLDER else re.escape(part)
        for part in re.split(r"(\{thing\})", template)
        if part
    )
    match = re.fullmatch(pattern, topic)
    if match is None:
        return None
    things = {match.group(g) for g in match.groupdict()}
    thing = match.group("thing") if len(things) == 1 else None
    if thing is None or not _THING_NAME_RE.match(thing):
        return None
    return thing


class Access(StrEnum):
    """What a device may do on a topic. SUBSCRIBE includes receiving."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True)
class TopicGrant:
    """One topic a device may use, as a template over ``{thing}``."""

    access: Access
    template: str
    purpose: str
    #: For an AWS-reserved subscription: a prefix (template) under which the AWS
    #: policy may fold this grant into one ``<prefix>/*`` resource to stay within
    #: the 2,048-character limit. Always inside ``$aws/things/{thing}/``.
    fold: str | None = None

    def render(self, thing: str) -> str:
        return render_topic(self.template, thing)


@dataclass(frozen=True)
class TopicModel:
    """The fleet's topic names. Default: the AWS whitepaper's ``dt/``/``cmd/`` layout."""

    telemetry: str = DEFAULT_TELEMETRY_TOPIC
    commands: str = DEFAULT_COMMANDS_TOPIC
    rotation_csr: str = DEFAULT_ROTATION_CSR_TOPIC
    rotation_certificate: str = DEFAULT_ROTATION_CERTIFICATE_TOPIC
    rotation_confirm: str = DEFAULT_ROTATION_CONFIRM_TOPIC
    responses: str = DEFAULT_COMMAND_RESPONSES_TOPIC

    def __post_init__(self) -> None:
        templates = {
            "telemetry": self.telemetry,
            "commands": self.commands,
            "responses": self.responses,
            "rotation_csr": self.rotation_csr,
            "rotation_certificate": self.rotation_certificate,
            "rotation_confirm": self.rotation_confirm,
        }
        for name, template in templates.items():
            validate_topic_template(template, field_name=name)
        seen: dict[str, str] = {}
        for name, template in templates.items():
            if template in seen:
                raise TopicModelError(
                    name,
                    f"{template!r} is also used for {seen[template]}; "
                    "allowed: a distinct topic per purpose",
                )
            seen[template] = name


class ShadowOperation(StrEnum):
    """A Device Shadow operation: the device publishes the request topic and
    subscribes to its ``accepted``/``rejected`` answers (``update`` also has
    ``delta`` and ``documents``)."""

    GET = "get"
    UPDATE = "update"
    DELETE = "delete"


#: The answers each operation publishes back to the device (AWS IoT Developer Guide,
#: "Device Shadow MQTT topics").
SHADOW_RESPONSES: dict[ShadowOperation, tuple[str, ...]] = {
    ShadowOperation.GET: ("accepted", "rejected"),
    ShadowOperation.UPDATE: ("accepted", "rejected", "delta", "documents"),
    ShadowOperation.DELETE: ("accepted", "rejected"),
}


@dataclass(frozen=True)
class Shadows:
    """Which of its own Device Shadows a device may use, and how.

    Default: none. ``classic`` is the thing's unnamed shadow; ``named`` lists
    named shadows; ``operations`` applies to each of them.
    """

    classic: bool = False
    named: tuple[str, ...] = ()
    operations: tuple[ShadowOperation, ...] = tuple(ShadowOperation)

    def __post_init__(self) -> None:
        for name in self.named:
            if not isinstance(name, str) or not _SHADOW_NAME_RE.match(name):
                raise TopicModelError(
                    "shadows.named",
                    f"{_shorten(str(name))!r} is not a shadow name; allowed: {SHADOW_NAME_RULE}",
                )
        _no_duplicates("shadows.named", self.named)
        for operation in self.operations:
            if not isinstance(operation, ShadowOperation):
                raise TopicModelError(
                    "shadows.operations",
                    f"{operation!r} is not an operation; allowed: get, update, delete",
                )
        _no_duplicates("shadows.operations", [str(o) for o in self.operations])
        if (self.classic or self.named) and not self.operations:
            raise TopicModelError(
                "shadows.operations", "is empty; allowed: one or more of get, update, delete"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.classic or self.named)

    def prefixes(self) -> tuple[tuple[str, str], ...]:
        """(template prefix, label) of every shadow granted."""
        classic = ((AWS_SHADOW_PREFIX, "classic"),) if self.classic else ()
        return (*classic, *((f"{AWS_SHADOW_PREFIX}/name/{n}", n) for n in self.named))


@dataclass(frozen=True)
class CustomTopic:
    """A declared per-device topic: a name, a template over ``{thing}`` and an access."""

    name: str
    template: str
    access: Access

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOPIC_NAME_RE.match(self.name):
            raise TopicModelError(
                "topics.custom",
                f"{_shorten(str(self.name))!r} is not a topic name; allowed: {TOPIC_NAME_RULE}",
            )
        validate_topic_template(self.template, field_name=f"topics.custom.{self.name}.template")
        if not isinstance(self.access, Access):
            raise TopicModelError(
                f"topics.custom.{self.name}.access",
                f"{self.access!r} is not an access; allowed: publish, subscribe",
            )


def _no_duplicates(field_name: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise TopicModelError(field_name, f"{_shorten(value)!r} is given twice")
        seen.add(value)


def validate_job_id(value: object, *, field_name: str = "job_ids") -> str:
    if not isinstance(value, str) or not _JOB_ID_RE.match(value):
        raise TopicModelError(
            field_name, f"{_shorten(str(value))!r} is not a job id; allowed: {JOB_ID_RULE}"
        )
    return value


@dataclass(frozen=True)
class DeviceAccess:
    """Every topic one device may use, given which capabilities are switched on.

    The single source for all renderers (AWS policy, mosquitto ACL, HiveMQ
    permissions) and for the monitoring that checks what devices really do.
    """

    topics: TopicModel = field(default_factory=TopicModel)
    #: Secure Tunneling: the device subscribes to its tunnel notify topic (AWS only).
    tunneling: bool = False
    #: Certificate rotation: CSR out, certificate in, confirmation out.
    rotation: bool = False
    #: AWS IoT Jobs of the device's own thing: notify-next, start-next, $next/get
    #: and their answers; update topics for the ``job_ids`` named here, or for every
    #: job id with ``any_job_id`` (which then subsumes ``job_ids``).
    jobs: bool = False
    job_ids: tuple[str, ...] = ()
    #: Remote commands: the device publishes its answers on its responses topic.
    #: Off by default so that fleets without a command broker grant nothing more.
    command_responses: bool = False
    #: Jobs update topics for every job id of the device's own thing
    #: (``$aws/things/{thing}/jobs/{jobId}/update`` and its answers); needs ``jobs``.
    any_job_id: bool = False
    #: The device's own Device Shadows (AWS only). Default: none.
    shadows: Shadows = field(default_factory=Shadows)
    #: Declared per-device topics, any number, each a template over ``{thing}``.
    custom: tuple[CustomTopic, ...] = ()

    def __post_init__(self) -> None:
        for job_id in self.job_ids:
            validate_job_id(job_id)
        _no_duplicates("job_ids", self.job_ids)
        if self.job_ids and not self.jobs:
            raise TopicModelError("job_ids", "given while jobs is off; allowed: turn jobs on")
        if self.any_job_id and not self.jobs:
            raise TopicModelError("jobs.anyJobId", "true while jobs is off; allowed: turn jobs on")
        self._check_distinct()

    def _check_distinct(self) -> None:
        """A declared topic may not repeat another (one topic, one purpose)."""
        _no_duplicates("topics.custom", [c.name for c in self.custom])
        seen: dict[str, str] = {}
        for grant in self._grants(include_aws_reserved=False):
            if grant.template in seen and seen[grant.template] != grant.purpose:
                raise TopicModelError(
                    f"topics.custom.{grant.purpose.removeprefix('custom: ')}.template",
                    f"{grant.template!r} is also used for {seen[grant.template]}; "
                    "allowed: a distinct topic per purpose",
                )
            seen.setdefault(grant.template, grant.purpose)

    def grants(self, *, include_aws_reserved: bool = True) -> tuple[TopicGrant, ...]:
        """The device's grants. ``include_aws_reserved`` adds AWS's ``$aws/`` topics."""
        return tuple(self._grants(include_aws_reserved))

    def _grants(self, include_aws_reserved: bool) -> Iterator[TopicGrant]:
        t = self.topics
        yield TopicGrant(Access.PUBLISH, t.telemetry, "telemetry")
        yield TopicGrant(Access.SUBSCRIBE, t.commands, "commands")
        if self.command_responses:
            yield TopicGrant(Access.PUBLISH, t.responses, "command responses")
        if self.rotation:
            yield TopicGrant(Access.PUBLISH, t.rotation_csr, "certificate rotation: CSR")
            yield TopicGrant(
                Access.SUBSCRIBE, t.rotation_certificate, "certificate rotation: new certificate"
            )
            yield TopicGrant(Access.PUBLISH, t.rotation_confirm, "certificate rotation: confirm")
        for custom in self.custom:
            yield TopicGrant(custom.access, custom.template, f"custom: {custom.name}")
        if not include_aws_reserved:
            return
        yield from self._shadow_grants()
        if self.tunneling:
            yield TopicGrant(Access.SUBSCRIBE, AWS_TUNNEL_NOTIFY_TOPIC, "secure tunneling")
        if self.jobs:
            yield from self._job_grants()

    def _job_grants(self) -> Iterator[TopicGrant]:
        jobs = AWS_JOBS_NAMESPACE
        yield TopicGrant(Access.SUBSCRIBE, AWS_JOBS_NOTIFY_NEXT_TOPIC, "jobs: notify-next", jobs)
        for request in (AWS_JOBS_START_NEXT_TOPIC, AWS_JOBS_GET_NEXT_TOPIC):
            yield TopicGrant(Access.PUBLISH, request, "jobs: request")
            for outcome in ("accepted", "rejected"):
                yield TopicGrant(Access.SUBSCRIBE, f"{request}/{outcome}", "jobs: response", jobs)
        ids = (JOB_ID_PLACEHOLDER,) if self.any_job_id else self.job_ids
        for job_id in ids:
            update = f"{jobs}/{job_id}/update"
            yield TopicGrant(Access.PUBLISH, update, f"jobs: update {job_id}")
            for outcome in ("accepted", "rejected"):
                yield TopicGrant(Access.SUBSCRIBE, f"{update}/{outcome}", "jobs: response", jobs)

    def _shadow_grants(self) -> Iterator[TopicGrant]:
        every = set(self.shadows.operations) == set(ShadowOperation)
        for prefix, label in self.shadows.prefixes():
            for operation in self.shadows.operations:
                request = f"{prefix}/{operation}"
                purpose = f"shadow {label}: {operation}"
                # A named shadow with every operation folds into ".../name/<n>/*";
                # the classic one only per operation, or it would cover named shadows.
                fold = prefix if every and prefix != AWS_SHADOW_PREFIX else request
                yield TopicGrant(Access.PUBLISH, request, purpose)
                for answer in SHADOW_RESPONSES[operation]:
                    yield TopicGrant(Access.SUBSCRIBE, f"{request}/{answer}", purpose, fold)

    def allows(self, access: Access, thing: str, topic: str) -> bool:
        """Whether ``thing`` may ``access`` exactly ``topic``.

        Exact topics, plus what the AWS policy allows under a fold (an AWS-reserved
        answer family of the device's own thing, ``$aws/things/<thing>/jobs/...``
        or ``.../shadow/<operation>/...``), so the monitoring expects exactly what the
        policy permits. The Jobs update topic for any job id (``any_job_id``) takes
        one level of the job-id alphabet (stricter than the policy's ``*``: AWS
        refuses other job ids anyway).
        """
        return any(
            grant.access is access
            and (
                _template_matches(grant.template, thing, topic)
                or (grant.fold is not None and _under(grant.fold, thing, topic))
            )
            for grant in self.grants()
        )


def _under(fold: str, thing: str, topic: str) -> bool:
    """Whether ``topic`` lies under the own-thing prefix ``fold`` (the AWS policy's
    ``<fold>/*``: any characters after the '/', MQTT wildcards included)."""
    prefix = render_topic(fold, thing) + "/"
    return topic.startswith(prefix) and len(topic) > len(prefix)


def _template_matches(template: str, thing: str, topic: str) -> bool:
    rendered = render_topic(template, thing)
    if JOB_ID_PLACEHOLDER not in rendered:
        return rendered == topic
    head, _, tail = rendered.partition(JOB_ID_PLACEHOLDER)
    if not (topic.startswith(head) and topic.endswith(tail)):
        return False
    middle = topic[len(head) : len(topic) - len(tail)]
    return len(topic) >= len(head) + len(tail) and _JOB_ID_RE.match(middle) is not None


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
