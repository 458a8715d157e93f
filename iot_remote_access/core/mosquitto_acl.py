"""A mosquitto ``acl_file`` rendered from the topic model (:class:`DeviceAccess`).

Identity is bound to the certificate: the listener must set
``require_certificate true`` and ``use_identity_as_username true``, so the
username is the client certificate's subject CN, which the fleet CA sets to the
thing name. The rules use ``%u`` (that username), never ``%c``: a client chooses
its own client id, so a ``%c`` rule would let any device act as any other.

What mosquitto 2.0 enforces (and the broker tests show on a real broker):

- PUBLISH is checked against ``write`` rules; a refused QoS 1 publish gets a
  PUBACK with reason "Not authorized" and is dropped.
- Every message is checked against ``read`` rules on its concrete topic before
  it is delivered. SUBSCRIBE itself is not refused by ``acl_file`` (the SUBACK
  grants any filter, even ``#``), but a wildcard subscription then receives
  only topics the client may read: for a device, its own commands topic.
- ``deny`` rules are checked first, and ``pattern`` rules apply to every user,
  including the bridge, whose own pattern topics are therefore denied.

Only the topics a device uses over the broker are rendered; AWS-only topics
(``$aws/things/...`` for tunnels and jobs) have no meaning on mosquitto.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from iot_remote_access.core.rotation_messages import rotation_bridge_topics
from iot_remote_access.core.shared_subscription import (
    DEFAULT_SHARE_GROUP,
    shared_subscription,
    topic_filter,
    validate_share_group,
)
from iot_remote_access.core.topics import (
    THING_PLACEHOLDER,
    Access,
    DeviceAccess,
    TopicModel,
    TopicModelError,
    validate_thing_name,
)

#: The bridge's certificate CN. It contains '.', which no thing name may, so no
#: device certificate issued by the fleet CA can ever carry the bridge's rights.
DEFAULT_BRIDGE_IDENTITY = "bridge.iot-remote-access"
BRIDGE_IDENTITY_RULE = (
    "[a-zA-Z0-9._:-]{1,128} with at least one character a thing name may not have"
)
_IDENTITY_RE = re.compile(r"\A[a-zA-Z0-9._:-]{1,128}\Z")
#: The rotation bridge's (GCP certificate rotation) defaults, as ``gcp.rotationService``'s.
DEFAULT_ROTATION_BRIDGE_IDENTITY = "rotation-bridge.iot-remote-access"
DEFAULT_ROTATION_SHARE_GROUP = "rotation-bridge"


class AclAccess(StrEnum):
    """mosquitto's access types."""

    READ = "read"
    WRITE = "write"
    DENY = "deny"


@dataclass(frozen=True)
class AclRule:
    """One line of the ACL: a ``pattern`` rule (``user`` None) or a user's ``topic`` rule."""

    access: AclAccess
    topic: str
    user: str | None = None

    def line(self) -> str:
        return f"{'pattern' if self.user is None else 'topic'} {self.access} {self.topic}"


@dataclass(frozen=True)
class AclGrant:
    """What one identity may do on one topic or topic filter."""

    access: Access
    topic: str


def validate_bridge_identity(value: object, *, field_name: str = "bridge_identity") -> str:
    """The bridge's certificate CN: printable, and never a valid thing name."""
    if not isinstance(value, str) or not _IDENTITY_RE.match(value):
        raise TopicModelError(
            field_name, f"{value!r} is not an identity; allowed: {BRIDGE_IDENTITY_RULE}"
        )
    try:
        validate_thing_name(value)
    except TopicModelError:
        return value
    raise TopicModelError(
        field_name,
        f"{value!r} is also a valid thing name, so a device certificate could carry it; "
        f"allowed: {BRIDGE_IDENTITY_RULE}, e.g. {DEFAULT_BRIDGE_IDENTITY!r}",
    )


@dataclass(frozen=True)
class MosquittoAcl:
    """The ACL of a fleet's broker: every device's own topics, and the bridges'.

    Default: the default topic model, the bridge identity
    ``bridge.iot-remote-access`` and the share group ``pubsub-bridge``; set
    ``bridge_identity`` to None for a broker without the bridge.
    ``rotation_bridge_identity`` (GCP certificate rotation; default None: none) adds the
    rotation bridge, the bridge's code on the rotation topics
    (``core.rotation_messages.rotation_bridge_topics``): it reads every CSR and every
    confirmation (its shared subscriptions, ``rotation_share_group``) and writes every
    certificate topic, nothing else - what HiveMQ's ``rotation-bridge`` role grants.
    """

    access: DeviceAccess = field(default_factory=DeviceAccess)
    bridge_identity: str | None = DEFAULT_BRIDGE_IDENTITY
    share_group: str = DEFAULT_SHARE_GROUP
    rotation_bridge_identity: str | None = None
    rotation_share_group: str = DEFAULT_ROTATION_SHARE_GROUP

    def __post_init__(self) -> None:
        validate_share_group(self.share_group)
        validate_share_group(self.rotation_share_group, field_name="rotation_share_group")
        if self.bridge_identity is not None:
            validate_bridge_identity(self.bridge_identity)
        if self.rotation_bridge_identity is not None:
            validate_bridge_identity(
                self.rotation_bridge_identity, field_name="rotation_bridge_identity"
            )
            if self.rotation_bridge_identity == self.bridge_identity:
                raise TopicModelError(
                    "rotation_bridge_identity",
                    f"{self.rotation_bridge_identity!r} is the bridge's too; allowed: an "
                    f"identity of its own, e.g. {DEFAULT_ROTATION_BRIDGE_IDENTITY!r}",
                )

    # -- rules ---------------------------------------------------------------

    def rules(self) -> tuple[AclRule, ...]:
        device = tuple(
            AclRule(
                AclAccess.WRITE if grant.access is Access.PUBLISH else AclAccess.READ,
                grant.template.replace(THING_PLACEHOLDER, "%u"),
            )
            for grant in self.access.grants(include_aws_reserved=False)
        )
        bridge: tuple[AclRule, ...] = ()
        if self.bridge_identity is not None:
            bridge = _bridge_rules(
                self.bridge_identity, self.access.topics, device, self.access.command_responses
            )
        rotation: tuple[AclRule, ...] = ()
        if self.rotation_bridge_identity is not None:
            topics = rotation_bridge_topics(self.access.topics)
            rotation = _bridge_rules(self.rotation_bridge_identity, topics, device, True)
        return (*device, *bridge, *rotation)

    def render(self) -> str:
        """The ``acl_file`` text."""
        lines = [
            "# Generated by iot-remote-access from the topic model; do not edit.",
            "# The listener needs: require_certificate true, use_identity_as_username true",
            "# (%u = the client certificate's CN = the thing name; a client picks its own %c).",
            "",
            "# Every device: its own topics only.",
        ]
        user: str | None = None
        for rule in self.rules():
            if rule.user != user:
                user = rule.user
                lines += ["", self._user_comment(user), f"user {user}"]
            lines.append(rule.line())
        return "\n".join(lines) + "\n"

    def _user_comment(self, user: str | None) -> str:
        if user == self.rotation_bridge_identity:
            topics = rotation_bridge_topics(self.access.topics)
            shared = " and ".join(
                shared_subscription(template, self.rotation_share_group)
                for template in (topics.telemetry, topics.responses)
            )
            return f"# The rotation bridge (CSRs and confirmations up): subscribes {shared}"
        return f"# The MQTT <-> Pub/Sub bridge: subscribes {self.bridge_subscription}"

    @property
    def bridge_subscription(self) -> str:
        """The bridge's shared subscription, e.g. ``$share/pubsub-bridge/dt/+/telemetry``."""
        return shared_subscription(self.access.topics.telemetry, self.share_group)

    # -- what the rules grant --------------------------------------------------

    def grants(self, identity: str) -> frozenset[AclGrant]:
        """Every (access, topic or filter) that ``identity`` gets from the rules.

        Evaluated from :meth:`rules` the way mosquitto does: pattern rules with
        ``%u`` replaced, plus the identity's own rules, minus the topics it is
        denied (:meth:`denied`, which mosquitto checks first; a filter granted
        here still excludes them). ``read`` is reported as SUBSCRIBE (what it
        lets a client receive), ``write`` as PUBLISH.
        """
        denied = self.denied(identity)
        return frozenset(
            AclGrant(
                Access.PUBLISH if rule.access is AclAccess.WRITE else Access.SUBSCRIBE, rule.topic
            )
            for rule in self._applicable(identity)
            if rule.access is not AclAccess.DENY and rule.topic not in denied
        )

    def denied(self, identity: str) -> frozenset[str]:
        """Topics ``identity`` may neither publish nor receive, whatever else it is granted."""
        return frozenset(
            rule.topic for rule in self._applicable(identity) if rule.access is AclAccess.DENY
        )

    def _applicable(self, identity: str) -> list[AclRule]:
        if "+" in identity or "#" in identity or "/" in identity:
            return []  # mosquitto refuses pattern checks for such usernames
        rules = self.rules()
        return [
            AclRule(rule.access, rule.topic.replace("%u", identity), identity)
            for rule in rules
            if rule.user is None
        ] + [rule for rule in rules if rule.user == identity]


def _bridge_rules(
    identity: str, topics: TopicModel, device: tuple[AclRule, ...], responses: bool
) -> tuple[AclRule, ...]:
    """A bridge's rules on ``topics``: read every telemetry topic (and responses topic), write
    every commands topic; denied its own pattern topics (pattern rules apply to every user)."""
    own = tuple(
        AclRule(AclAccess.DENY, rule.topic.replace("%u", identity), identity) for rule in device
    )
    # Remote commands on (the rotation bridge: its confirmations): read every responses
    # topic (shared).
    answers = (
        (AclRule(AclAccess.READ, topic_filter(topics.responses, field_name="responses"), identity),)
        if responses
        else ()
    )
    return (
        *own,
        # mosquitto checks reads on each message's topic, not on the `$share/...`
        # filter, so the shared subscription needs read on the plain filter.
        AclRule(AclAccess.READ, topic_filter(topics.telemetry), identity),
        AclRule(AclAccess.WRITE, topic_filter(topics.commands, field_name="commands"), identity),
        *answers,
    )


def render_mosquitto_acl(
    access: DeviceAccess | None = None,
    *,
    bridge_identity: str | None = DEFAULT_BRIDGE_IDENTITY,
    share_group: str = DEFAULT_SHARE_GROUP,
) -> str:
    """The ``acl_file`` for ``access`` (default: the default topic model)."""
    return MosquittoAcl(
        access or DeviceAccess(), bridge_identity=bridge_identity, share_group=share_group
    ).render()
