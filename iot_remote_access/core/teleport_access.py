"""Teleport access rules for devices on GCP: the AWS tunnel rules, rendered as Teleport roles.

One deployment's limits (:class:`AccessProxyPolicy`) come from the same rules
the AWS tunnel broker enforces (:mod:`iot_remote_access.core.tunnel_rules`):
allowed services, lifetime bounds, thing groups. Teleport enforces them itself
once they are written as its own resources:

* a *requester* role with no standing node access: it may only *request* the
  access role, with a reason (``options.request_access: reason``) and for at
  most the maximum lifetime (``allow.request.max_duration``);
* the *access* role that an approved request grants: SSH logins on the nodes
  the device selector matches, ``max_session_ttl`` = the maximum lifetime and
  ``disconnect_expired_cert`` so a session ends when its certificate does (the
  equivalent of the AWS tunnel sweeper);
* an *approver* role that may review (approve/deny) requests for the access role.

Standard library only: the settings, the GKE constructs and the tests share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iot_remote_access.core.rule_error import RuleError
from iot_remote_access.core.tunnel_rules import (
    DEFAULT_LIFETIME_MINUTES,
    MAX_LIFETIME_MINUTES,
    TunnelRuleError,
    setting_minutes,
    validate_service,
    validate_thing_group,
)

#: Teleport's node access is SSH; nothing else can be granted on a device node.
TELEPORT_SERVICES = ("SSH",)
#: Teleport's preset roles that grant standing access (or the power to grant it).
STANDING_ROLES = frozenset({"access", "editor", "auditor"})
#: The node label that carries a device's thing group (set in the device agent's config).
THING_GROUP_LABEL = "thing-group"
ROLE_VERSION = "v7"
DEFAULT_REQUEST_PROMPT = "Ticket id or justification (shown to the approver, kept in the audit log)"
DEFAULT_DEVICE_LOGIN = "maintenance"
MAX_JOIN_TOKEN_TTL_MINUTES = 60
DEFAULT_JOIN_TOKEN_TTL_MINUTES = 15
DEFAULT_IDLE_TIMEOUT_MINUTES = 15

# Teleport label keys/values and role names: conservative subsets of what Teleport accepts,
# so no glob (``*``) or regular expression (``^...$``) can ever reach ``node_labels``.
_LABEL_KEY_RE = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9._/-]{0,62}\Z")
_LABEL_VALUE_RE = re.compile(r"\A[a-zA-Z0-9:_.-]{1,128}\Z")
_ROLE_NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9-]{0,61}\Z")
_LOGIN_RE = re.compile(r"\A[a-z_][a-z0-9_-]{0,31}\Z")
_IDENTITY_RE = re.compile(r"\A[A-Za-z0-9@._+-]{1,128}\Z")


class AccessRuleError(RuleError):
    """A setting that would make Teleport grant more than the rules allow."""


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def validate_services(value: object) -> tuple[str, ...]:
    """Allowed services: names by the tunnel rule, and only those Teleport grants on a node."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise AccessRuleError(
            "allowedServices", f"{_shown(value)} is not allowed; allowed: ['SSH']"
        )
    for service in value:
        try:
            validate_service(service, TELEPORT_SERVICES)
        except TunnelRuleError as error:
            raise AccessRuleError("allowedServices", error.problem) from None
    return tuple(value)


def validate_selector(
    labels: object, groups: object
) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """A device selector that names devices: never empty, never ``*``, never a regex."""
    if not isinstance(labels, Mapping) or not isinstance(groups, list | tuple):
        raise AccessRuleError(
            "deviceSelector", "is not allowed; allowed: labels (a mapping) and thingGroups (a list)"
        )
    if not labels and not groups:
        raise AccessRuleError(
            "deviceSelector",
            "is empty (it would name no device, or every device); allowed: labels and/or "
            "thingGroups that name the devices operators may reach",
        )
    checked: dict[str, tuple[str, ...]] = {}
    for key, values in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
            raise AccessRuleError(
                "deviceSelector.labels",
                f"key {_shown(key)} is not allowed; allowed: [a-zA-Z0-9][a-zA-Z0-9._/-]{{0,62}}, "
                "never '*'",
            )
        if isinstance(values, str) or not isinstance(values, list | tuple) or not values:
            raise AccessRuleError(
                f"deviceSelector.labels.{key}",
                f"{_shown(values)} is not a non-empty list of values",
            )
        for item in values:
            if not isinstance(item, str) or not _LABEL_VALUE_RE.match(item):
                raise AccessRuleError(
                    f"deviceSelector.labels.{key}",
                    f"{_shown(item)} is not allowed (it could match every device); allowed: "
                    "exact values [a-zA-Z0-9:_.-]{1,128}, never '*' or a regular expression",
                )
        checked[key] = tuple(values)
    for group in groups:
        if group == "*":
            raise AccessRuleError(
                "deviceSelector.thingGroups", "'*' matches every device; allowed: group names"
            )
        try:
            validate_thing_group(group)
        except TunnelRuleError as error:
            raise AccessRuleError("deviceSelector.thingGroups", error.problem) from None
    if groups and THING_GROUP_LABEL in checked:
        raise AccessRuleError(
            "deviceSelector.labels",
            f"{THING_GROUP_LABEL!r} is set by thingGroups; allowed: one of the two",
        )
    return checked, tuple(groups)


def validate_role_name(value: object, *, field_name: str) -> str:
    if not isinstance(value, str) or not _ROLE_NAME_RE.match(value):
        raise AccessRuleError(
            field_name, f"{_shown(value)} is not a role name; allowed: [a-z0-9][a-z0-9-]{{0,61}}"
        )
    return value


def validate_extra_roles(value: object, *, field_name: str, forbidden: set[str]) -> tuple[str, ...]:
    """Roles given besides ours: never one that grants standing access."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise AccessRuleError(field_name, f"{_shown(value)} is not a list of role names")
    for role in value:
        validate_role_name(role, field_name=field_name)
        if role in STANDING_ROLES or role in forbidden:
            raise AccessRuleError(
                field_name,
                f"{role!r} grants standing access to devices; allowed: roles without node "
                "access (access comes only through an approved request)",
            )
    return tuple(value)


def validate_identities(value: object, *, field_name: str) -> tuple[str, ...]:
    """Teleport user names (e-mail-like): who may request, who may approve."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise AccessRuleError(
            field_name, f"{_shown(value)} is not allowed; allowed: a non-empty list of user names"
        )
    for name in value:
        if not isinstance(name, str) or not _IDENTITY_RE.match(name) or name == "*":
            raise AccessRuleError(
                field_name,
                f"{_shown(name)} is not a user name; allowed: [A-Za-z0-9@._+-]{{1,128}}",
            )
    return tuple(value)


def validate_login(value: object) -> str:
    if not isinstance(value, str) or not _LOGIN_RE.match(value) or value == "root":
        raise AccessRuleError(
            "deviceLogin",
            f"{_shown(value)} is not allowed; allowed: a Linux user name other than root",
        )
    return value


def duration(minutes: int) -> str:
    """A Teleport (Go) duration for whole minutes, e.g. ``60m``."""
    return f"{minutes}m"


@dataclass(frozen=True)
class AccessProxyPolicy:
    """What one deployment allows; every value checked by the same rules as AWS tunnels."""

    requester_role: str = "iot-device-requester"
    access_role: str = "iot-device-access"
    approver_role: str = "iot-device-approver"
    allowed_services: tuple[str, ...] = TELEPORT_SERVICES
    max_lifetime_minutes: int = DEFAULT_LIFETIME_MINUTES
    idle_timeout_minutes: int = DEFAULT_IDLE_TIMEOUT_MINUTES
    device_login: str = DEFAULT_DEVICE_LOGIN
    selector_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    thing_groups: tuple[str, ...] = ()
    approvals_required: int = 1
    request_prompt: str = DEFAULT_REQUEST_PROMPT

    def __post_init__(self) -> None:
        names = [self.requester_role, self.access_role, self.approver_role]
        for name, field_name in zip(
            names, ("requesterRole", "accessRole", "approverRole"), strict=True
        ):
            validate_role_name(name, field_name=field_name)
            if name in STANDING_ROLES:
                raise AccessRuleError(
                    field_name, f"{name!r} is a Teleport preset role; allowed: a role of ours"
                )
        if len(set(names)) != 3:
            raise AccessRuleError(
                "accessRole", "the three role names collide; allowed: distinct names"
            )
        validate_services(self.allowed_services)
        try:
            setting_minutes("maxLifetimeMinutes", self.max_lifetime_minutes)
            setting_minutes(
                "idleTimeoutMinutes", self.idle_timeout_minutes, maximum=self.max_lifetime_minutes
            )
        except TunnelRuleError as error:
            raise AccessRuleError(error.field, error.problem) from None
        validate_login(self.device_login)
        validate_selector(dict(self.selector_labels), self.thing_groups)
        if not 1 <= self.approvals_required <= 5:
            raise AccessRuleError("approvalsRequired", f"{self.approvals_required} is not 1..5")

    def node_labels(self) -> dict[str, list[str]]:
        """The access role's ``node_labels``: every key must match (Teleport ANDs keys)."""
        labels = {key: list(values) for key, values in self.selector_labels.items()}
        if self.thing_groups:
            labels[THING_GROUP_LABEL] = list(self.thing_groups)
        return labels

    def roles(self) -> list[dict[str, Any]]:
        """The three Teleport role resources (``tctl create -f``)."""
        return [self._requester(), self._access(), self._approver()]

    def _meta(self, name: str, what: str) -> dict[str, Any]:
        return {
            "name": name,
            "description": what,
            "labels": {"app.kubernetes.io/part-of": "iot-remote-access"},
        }

    def _requester(self) -> dict[str, Any]:
        return {
            "kind": "role",
            "version": ROLE_VERSION,
            "metadata": self._meta(
                self.requester_role, "May request device access; no standing access"
            ),
            "spec": {
                "options": {
                    "request_access": "reason",
                    "request_prompt": self.request_prompt,
                    "max_session_ttl": duration(self.max_lifetime_minutes),
                },
                "allow": {
                    "request": {
                        "roles": [self.access_role],
                        "max_duration": duration(self.max_lifetime_minutes),
                        "thresholds": [{"approve": self.approvals_required, "deny": 1}],
                    },
                },
            },
        }

    def _access(self) -> dict[str, Any]:
        return {
            "kind": "role",
            "version": ROLE_VERSION,
            "metadata": self._meta(self.access_role, "Granted only by an approved access request"),
            "spec": {
                "options": {
                    "max_session_ttl": duration(self.max_lifetime_minutes),
                    # A session ends when the request's certificate expires: the sweeper.
                    "disconnect_expired_cert": True,
                    "client_idle_timeout": duration(self.idle_timeout_minutes),
                    "forward_agent": False,
                    "port_forwarding": False,
                    "permit_x11_forwarding": False,
                },
                "allow": {"logins": [self.device_login], "node_labels": self.node_labels()},
                "deny": {"logins": ["root"]},
            },
        }

    def _approver(self) -> dict[str, Any]:
        return {
            "kind": "role",
            "version": ROLE_VERSION,
            "metadata": self._meta(
                self.approver_role, "May approve or deny device access requests"
            ),
            "spec": {
                "options": {"max_session_ttl": duration(self.max_lifetime_minutes)},
                "allow": {"review_requests": {"roles": [self.access_role]}},
            },
        }


def user_resources(
    policy: AccessProxyPolicy,
    requesters: tuple[str, ...],
    approvers: tuple[str, ...],
    extra_requester_roles: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Teleport ``user`` resources: who may request and who may approve, nothing more.

    Nobody gets the access role: it comes only with an approved request. For users
    from an SSO connector, map their groups to the same roles instead.
    """
    both = sorted(set(requesters) & set(approvers))
    if both:
        raise AccessRuleError(
            "approvers", f"{both[0]!r} is also a requester; allowed: separate people"
        )
    validate_extra_roles(
        extra_requester_roles,
        field_name="requesterExtraRoles",
        forbidden={policy.access_role, policy.approver_role},
    )

    def user(name: str, roles: list[str]) -> dict[str, Any]:
        return {
            "kind": "user",
            "version": "v2",
            "metadata": {"name": name},
            "spec": {"roles": roles},
        }

    return [
        *(user(name, [policy.requester_role, *extra_requester_roles]) for name in requesters),
        *(user(name, [policy.approver_role]) for name in approvers),
    ]


def role_grants(role: Mapping[str, Any]) -> dict[str, Any]:
    """What a rendered role lets its holder reach directly (node labels and logins)."""
    allow = role.get("spec", {}).get("allow", {})
    return {"node_labels": allow.get("node_labels", {}), "logins": allow.get("logins", [])}


def minutes_of(text: str) -> int:
    """Minutes of a duration rendered by :func:`duration`."""
    match = re.fullmatch(r"([0-9]+)m", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration of ours")
    return int(match.group(1))


__all__ = [
    "DEFAULT_JOIN_TOKEN_TTL_MINUTES",
    "MAX_JOIN_TOKEN_TTL_MINUTES",
    "MAX_LIFETIME_MINUTES",
    "AccessProxyPolicy",
    "AccessRuleError",
]


#: Where the device keeps its join token (mode 0600); the agent reads it from this file.
DEVICE_TOKEN_FILE = "/var/lib/teleport/join-token"  # noqa: S105 - a path, not a secret


def device_agent_config(
    thing: str, proxy: str, labels: Mapping[str, str], *, token_file: str = DEVICE_TOKEN_FILE
) -> dict[str, Any]:
    """The device's ``teleport.yaml``: an SSH agent whose node name is its thing name.

    ``thing`` must already be a valid thing name (the caller checks it with the fleet's
    pattern); the node name is then the device's MQTT identity. The agent dials out to
    ``proxy`` on 443 only; nothing listens on the device's network but the local SSH
    service the proxy reaches through the agent's reverse tunnel.
    """
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key) or not _LABEL_VALUE_RE.match(value):
            raise AccessRuleError(
                "label", f"{_shown(f'{key}={value}')} is not allowed; allowed: KEY=VALUE, exact"
            )
    return {
        "version": "v3",
        "teleport": {
            "nodename": thing,
            "proxy_server": f"{proxy}:443",
            "join_params": {"method": "token", "token_name": token_file},
            "data_dir": "/var/lib/teleport",
        },
        "ssh_service": {"enabled": True, "labels": dict(labels)},
        "auth_service": {"enabled": False},
        "proxy_service": {"enabled": False},
    }
