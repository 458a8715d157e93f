"""Render the device topic model as HiveMQ topic permissions (Enterprise Security Extension).

The device role, written once with the ESE placeholder for the MQTT client
identifier (``deviceBinding: clientId``: the client chooses it, see
:data:`CLIENT_ID_PLACEHOLDER`), or written per thing with its name literal
(:func:`per_device_realm`, the default certificate binding); one role for
the Pub/Sub bridge, which reads every device's telemetry through a shared
subscription and publishes commands. The same :class:`DeviceAccess` feeds the
AWS IoT policy and the mosquitto ACL, and :func:`granted_topics` answers, for
any identity, which concrete topics a role grants, so renderers can be
compared with each other and with :meth:`DeviceAccess.grants`.

The permission files are XML in the ESE file-realm format, built with
``xml.etree`` so that no value can break out of its element.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from iot_remote_access.core.topics import (
    THING_NAME_RULE,
    THING_PLACEHOLDER,
    Access,
    DeviceAccess,
    TopicModel,
    TopicModelError,
    render_topic,
    validate_thing_name,
)

#: The ESE placeholder that HiveMQ replaces with the connecting client's MQTT
#: client identifier when it evaluates a permission (HiveMQ Knowledge Base,
#: "Troubleshooting Dynamic Topic Permissions with HiveMQ Enterprise Security
#: Extension", https://hivemq.atlassian.net/wiki/spaces/KB/pages/3542646931, 2025:
#: client id SENSOR_UNIT_001 resolves ".../${mqtt-clientid}/..." to
#: ".../SENSOR_UNIT_001/..."). The client chooses its client id in CONNECT and
#: nothing in the ESE pipeline rendered for the role-key devices pipeline
#: (``deviceBinding: clientId``) ties it to the certificate, so a device with a
#: valid fleet certificate that connects with client id ``device-b`` gets
#: device-b's topics. No placeholder for the
#: certificate-derived ``authorization-key`` is confirmed by the ESE docs we could
#: read; :func:`per_device_realm` binds by certificate instead (docs/topics-v2.md,
#: "HiveMQ: the client-id hole").
CLIENT_ID_PLACEHOLDER = "${mqtt-clientid}"

#: Shared-subscription group names: one topic level, no wildcards, nothing
#: that could widen the filter it is prepended to.
SHARED_GROUP_RULE = "[a-zA-Z0-9_-]{1,64}"
_SHARED_GROUP_RE = re.compile(rf"\A{SHARED_GROUP_RULE}\Z")

#: Role ids and user names in the realm files: printable, no XML or
#: placeholder syntax, so an id can never turn into a pattern.
IDENTITY_RULE = "[a-zA-Z0-9 .:_@=,-]{1,128}"
_IDENTITY_RE = re.compile(rf"\A{IDENTITY_RULE}\Z")
THING_NAME_RE = re.compile(rf"\A{THING_NAME_RULE}\Z")


class Activity(StrEnum):
    """ESE permission activities (the HiveMQ names)."""

    PUBLISH = "PUBLISH"
    SUBSCRIBE = "SUBSCRIBE"


class SharedSubscription(StrEnum):
    """Whether a SUBSCRIBE permission covers shared, plain or both kinds of subscription."""

    ALL = "ALL"
    SHARED = "SHARED"
    NOT_SHARED = "NOT_SHARED"


@dataclass(frozen=True)
class HivemqPermission:
    """One ESE topic permission: topic filter, activity and, for shared subscriptions, the group.

    ``topic`` may contain :data:`CLIENT_ID_PLACEHOLDER`; the bridge's
    permissions contain the single-level wildcard ``+`` for the thing level.
    """

    topic: str
    activity: Activity
    purpose: str
    shared_subscription: SharedSubscription = SharedSubscription.NOT_SHARED
    shared_group: str | None = None

    def for_client(self, client_id: str) -> str:
        """The topic filter HiveMQ evaluates for ``client_id``."""
        return self.topic.replace(CLIENT_ID_PLACEHOLDER, client_id)

    def subscription_filter(self, client_id: str) -> str:
        """The filter as the client writes it in SUBSCRIBE (``$share/<group>/…`` when shared)."""
        topic = self.for_client(client_id)
        if self.shared_subscription is SharedSubscription.SHARED and self.shared_group:
            return f"$share/{self.shared_group}/{topic}"
        return topic


def validate_shared_group(value: object, *, field_name: str = "shared_group") -> str:
    """Return ``value`` if it can be a shared-subscription group, else raise naming the field."""
    if not isinstance(value, str) or not _SHARED_GROUP_RE.match(value):
        raise TopicModelError(
            field_name,
            f"{value!r} is not a shared-subscription group; allowed: {SHARED_GROUP_RULE} "
            "(one topic level, no '/', '+' or '#')",
        )
    return value


def validate_identity(value: object, *, field_name: str) -> str:
    """Return ``value`` if it can name an ESE role or user, else raise naming the field."""
    if not isinstance(value, str) or not _IDENTITY_RE.match(value) or value != value.strip():
        raise TopicModelError(
            field_name,
            f"{value!r} is not usable as a certificate name in the ESE realm; "
            f"allowed: {IDENTITY_RULE}, no leading or trailing spaces",
        )
    return value


def validate_bridge_identity(value: object, *, field_name: str = "bridge_identity") -> str:
    """The bridge certificate's CN: a valid realm name that is *not* a valid thing name.

    Device certificates carry the thing name as CN, so a bridge name outside
    the thing-name rule can never be claimed by a device certificate.
    """
    validate_identity(value, field_name=field_name)
    assert isinstance(value, str)
    if THING_NAME_RE.match(value):
        raise TopicModelError(
            field_name,
            f"{value!r} is also a valid thing name, so a device certificate could carry it; "
            "allowed: a name with a character thing names cannot have, such as '.' "
            "(e.g. 'pubsub-bridge.internal')",
        )
    return value


def device_permissions(access: DeviceAccess) -> tuple[HivemqPermission, ...]:
    """The device role: every grant of ``access`` with the thing replaced by the client id.

    AWS-reserved ``$aws/`` topics (Secure Tunneling, Jobs) do not exist on
    HiveMQ and are left out. No permission contains a wildcard.
    """
    permissions = []
    for grant in access.grants(include_aws_reserved=False):
        topic = grant.template.replace(THING_PLACEHOLDER, CLIENT_ID_PLACEHOLDER)
        activity = Activity.PUBLISH if grant.access is Access.PUBLISH else Activity.SUBSCRIBE
        permissions.append(HivemqPermission(topic, activity, grant.purpose))
    return tuple(permissions)


def thing_permissions(access: DeviceAccess, thing: str) -> tuple[HivemqPermission, ...]:
    """One thing's device role with its name written in: no placeholder the client could set."""
    validate_thing_name(thing)
    return tuple(
        HivemqPermission(p.for_client(thing), p.activity, p.purpose)
        for p in device_permissions(access)
    )


def per_device_realm(
    access: DeviceAccess, things: Iterable[str]
) -> tuple[tuple[RealmRole, ...], tuple[RealmUser, ...]]:
    """A devices realm bound to the certificate, not the client id: one user and role per thing.

    For a pipeline that selects the realm *user* by the ``authorization-key``,
    which the X.509 preprocessor fills from the certificate's subject CN (the
    thing name; :class:`~iot_remote_access.core.hivemq_ese.EsePipeline` with
    ``by_user=True``, as the bridge pipeline already does). HiveMQ's ESE
    Customization SDK documents the variable: "authorization-key ... is used in
    the pipeline as the username for the configured authorization manager"
    (``EseVariablesInput.getAuthorizationKey``, since ESE 4.35.0,
    github.com/hivemq/hivemq-enterprise-security-extension-customization-sdk).
    The permissions name the thing literally, so the client id a device sends
    changes nothing. The price: the realm lists every device (one role and user
    per thing) and must be updated when a device joins.
    """
    names = tuple(dict.fromkeys(things))
    roles = tuple(RealmRole(thing, thing_permissions(access, thing)) for thing in names)
    return roles, tuple(RealmUser(thing, (thing,)) for thing in names)


def bridge_permissions(
    topics: TopicModel, *, shared_group: str, command_responses: bool = False
) -> tuple[HivemqPermission, ...]:
    """The bridge role: a shared subscription on all telemetry, publish to every commands topic,
    and, with ``command_responses`` (remote commands on), a shared subscription on every
    responses topic.

    The thing level becomes ``+`` — the one place a wildcard is granted, to a
    backend identity, never to a device. The subscription is allowed only as
    ``$share/<shared_group>/…`` so replicas split the load and a plain
    subscription (which would duplicate every message per replica) is refused.
    """
    validate_shared_group(shared_group)
    telemetry = topics.telemetry.replace(THING_PLACEHOLDER, "+")
    commands = topics.commands.replace(THING_PLACEHOLDER, "+")
    return (
        HivemqPermission(
            telemetry,
            Activity.SUBSCRIBE,
            "bridge: every device's telemetry, shared among replicas",
            SharedSubscription.SHARED,
            shared_group,
        ),
        HivemqPermission(commands, Activity.PUBLISH, "bridge: commands to any device"),
        *(
            (
                HivemqPermission(
                    topics.responses.replace(THING_PLACEHOLDER, "+"),
                    Activity.SUBSCRIBE,
                    "bridge: every device's command responses, shared among replicas",
                    SharedSubscription.SHARED,
                    shared_group,
                ),
            )
            if command_responses
            else ()
        ),
    )


def granted_topics(
    permissions: Iterable[HivemqPermission], client_id: str
) -> frozenset[tuple[Access, str]]:
    """The (access, topic) pairs ``permissions`` grant to the client ``client_id``.

    Device permissions yield concrete topics; the bridge's yield topic filters
    as the client must write them (``$share/<group>/dt/+/telemetry``).
    """
    return frozenset(
        (
            Access.PUBLISH if p.activity is Activity.PUBLISH else Access.SUBSCRIBE,
            p.for_client(client_id)
            if p.activity is Activity.PUBLISH
            else p.subscription_filter(client_id),
        )
        for p in permissions
    )


def device_access_topics(access: DeviceAccess, thing: str) -> frozenset[tuple[Access, str]]:
    """What :meth:`DeviceAccess.grants` gives ``thing``, for comparing renderers."""
    validate_thing_name(thing)
    return frozenset(
        (grant.access, render_topic(grant.template, thing))
        for grant in access.grants(include_aws_reserved=False)
    )


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest), as a broker applies it."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    # Wildcards never match topics under '$' from the first level (MQTT 3.1.1/5.0, 4.7.2).
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def allows(
    permissions: Iterable[HivemqPermission], client_id: str, access: Access, topic: str
) -> bool:
    """Whether a client holding ``permissions`` may publish to / subscribe to ``topic``.

    For SUBSCRIBE, ``topic`` is the filter the client sends, including a
    ``$share/<group>/`` prefix; a filter is allowed only when it is exactly a
    granted filter (HiveMQ refuses a subscription wider than the permission).
    """
    for permission in permissions:
        if access is Access.PUBLISH and permission.activity is Activity.PUBLISH:
            # A PUBLISH topic is a name: wildcards in it are a protocol error, never a match.
            is_name = "+" not in topic and "#" not in topic
            if is_name and topic_matches(permission.for_client(client_id), topic):
                return True
        elif (
            access is Access.SUBSCRIBE
            and permission.activity is Activity.SUBSCRIBE
            and _subscription_allowed(permission, client_id, topic)
        ):
            return True
    return False


def _subscription_allowed(permission: HivemqPermission, client_id: str, requested: str) -> bool:
    shared = requested.startswith("$share/")
    group = None
    if shared:
        parts = requested.split("/", 2)
        if len(parts) < 3:
            return False
        group, requested = parts[1], parts[2]
    if permission.shared_subscription is SharedSubscription.SHARED and not shared:
        return False
    if permission.shared_subscription is SharedSubscription.NOT_SHARED and shared:
        return False
    if permission.shared_group is not None and group != permission.shared_group:
        return False
    granted = permission.for_client(client_id)
    return _filter_within(requested, granted)


def _filter_within(requested: str, granted: str) -> bool:
    """Whether every topic ``requested`` can match is matched by ``granted``."""
    req_levels = requested.split("/")
    granted_levels = granted.split("/")
    for index, level in enumerate(req_levels):
        if index >= len(granted_levels):
            return False
        allowed = granted_levels[index]
        if allowed == "#":
            return True
        if level == "#":
            return False
        if allowed == "+":
            continue
        if level == "+" or level != allowed:
            return False
    return len(req_levels) == len(granted_levels)


# -- ESE file realm ----------------------------------------------------------


@dataclass(frozen=True)
class RealmRole:
    """A role in an ESE file realm: an id and its permissions."""

    role_id: str
    permissions: tuple[HivemqPermission, ...]


@dataclass(frozen=True)
class RealmUser:
    """A user in an ESE file realm: its name (the certificate CN) and roles. No password:
    these users are found through the authorization key, never authenticated by password."""

    name: str
    roles: tuple[str, ...]


def render_file_realm(
    roles: Iterable[RealmRole], users: Iterable[RealmUser] = (), *, indent: bool = True
) -> str:
    """An ESE file-realm document (``<ese-file-realm>``) with MQTT users, roles and permissions.

    ``indent=False``: one element a line, no indentation (a per-device realm with a
    thousand users stays about half the size, within a ConfigMap's 1 MiB).
    """
    root = ET.Element("ese-file-realm")
    mqtt = ET.SubElement(root, "mqtt")
    users = tuple(users)
    if users:
        users_el = ET.SubElement(mqtt, "users")
        for user in users:
            validate_identity(user.name, field_name="user")
            user_el = ET.SubElement(users_el, "user")
            ET.SubElement(user_el, "name").text = user.name
            roles_el = ET.SubElement(user_el, "roles")
            for role_id in user.roles:
                ET.SubElement(roles_el, "id").text = role_id
    roles_el = ET.SubElement(mqtt, "roles")
    for role in roles:
        validate_identity(role.role_id, field_name="role")
        role_el = ET.SubElement(roles_el, "role")
        ET.SubElement(role_el, "id").text = role.role_id
        permissions_el = ET.SubElement(role_el, "permissions")
        for permission in role.permissions:
            permissions_el.append(_permission_element(permission))
    return _to_xml(root, indent=indent)


def _permission_element(permission: HivemqPermission) -> ET.Element:
    element = ET.Element("permission")
    ET.SubElement(element, "topic").text = permission.topic
    ET.SubElement(element, "activity").text = permission.activity.value
    if permission.activity is Activity.SUBSCRIBE:
        ET.SubElement(element, "shared-subscription").text = permission.shared_subscription.value
        if permission.shared_group is not None:
            ET.SubElement(element, "shared-group").text = permission.shared_group
    return element


def parse_file_realm(document: str) -> tuple[tuple[RealmRole, ...], tuple[RealmUser, ...]]:
    """Read back a document made by :func:`render_file_realm` (tests and audits use it)."""
    root = ET.fromstring(document)  # noqa: S314 - our own rendered text, no external entities
    roles = []
    for role_el in root.iterfind("./mqtt/roles/role"):
        permissions = []
        for p in role_el.iterfind("./permissions/permission"):
            permissions.append(
                HivemqPermission(
                    topic=p.findtext("topic", ""),
                    activity=Activity(p.findtext("activity", "")),
                    purpose="",
                    shared_subscription=SharedSubscription(
                        p.findtext("shared-subscription", SharedSubscription.NOT_SHARED.value)
                    ),
                    shared_group=p.findtext("shared-group"),
                )
            )
        roles.append(RealmRole(role_el.findtext("id", ""), tuple(permissions)))
    users = [
        RealmUser(u.findtext("name", ""), tuple(r.text or "" for r in u.iterfind("./roles/id")))
        for u in root.iterfind("./mqtt/users/user")
    ]
    return tuple(roles), tuple(users)


def _to_xml(root: ET.Element, *, indent: bool = True) -> str:
    ET.indent(root, space="    " if indent else "")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
