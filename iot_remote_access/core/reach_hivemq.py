"""Reachability for HiveMQ ESE file-realm permissions (see :mod:`reach` for the question).

HiveMQ's evaluation, from its documentation (Enterprise Security Extension, file
realm; HiveMQ's authorization of default permissions):

- Permissions only allow; a PUBLISH is allowed when a PUBLISH permission's topic
  filter matches the topic; a SUBSCRIBE when the requested filter lies within a
  SUBSCRIBE permission's filter (messages delivered then match that filter).
- ``${mqtt-clientid}`` is replaced by the MQTT client identifier the client sent in
  CONNECT. Unless the broker binds the client id to the certificate, a device may
  send any client id - so a permission on ``${mqtt-clientid}`` lets a device act on
  the topics of whichever device it names. ``client_id_bound=True`` models a broker
  that refuses a client id other than the certificate's name.

A device holds every role of the device realm (the role is chosen by its issuing CA),
so each role is analysed as "a device holding this role". A realm with users is
read as one whose pipeline selects the user by the certificate's subject CN
(``authorization-key``): a role held by users is analysed as held by each of them,
with the user's name as the attacker's identity; a role held only by names that no
device certificate can carry (not a thing name, such as the bridge's) concerns no
device and is reported with a note instead.

Standard library only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from functools import partial

from iot_remote_access.core.hivemq_ese import ESE_CONFIG_FILE
from iot_remote_access.core.hivemq_permissions import (
    CLIENT_ID_PLACEHOLDER,
    THING_NAME_RE,
    Activity,
    HivemqPermission,
    SharedSubscription,
    parse_file_realm,
)
from iot_remote_access.core.reach import (
    DEFAULT_ATTACKER,
    Operation,
    Reach,
    ReachReport,
    Severity,
    client_id_candidates,
    model_templates,
    owned_machine,
    readable,
    template_levels,
    victim_of,
)
from iot_remote_access.core.reach_automata import (
    SLOT,
    Machine,
    Pattern,
    PatternMachine,
    Token,
    Union,
    accepted,
    alphabet,
    mqtt_filter_pattern,
    shortest_accepted,
)

MAX_REALM_CHARS = 4 * 1024 * 1024
#: Each device user is analysed on its own (about 0.1 s each), so a realm with more
#: users is refused rather than analysed for minutes; split it per fleet CA.
MAX_REALM_DEVICE_USERS = 1000
#: Listener pipelines read from one ESE config.xml (the library renders two).
MAX_ESE_PIPELINES = 8


class RealmError(ValueError):
    """A realm document that cannot be read safely (names what is wrong)."""


def _permission_pattern(permission: HivemqPermission, client_id: str) -> Pattern:
    return mqtt_filter_pattern(permission.topic.replace(CLIENT_ID_PLACEHOLDER, client_id))


def _granted(
    permissions: tuple[HivemqPermission, ...], activity: Activity, client_id: str, attacker: str
) -> Machine:
    return Union(
        [
            PatternMachine(_permission_pattern(p, client_id), attacker)
            for p in permissions
            if p.activity is activity
        ]
    )


def realm_templates(permissions: tuple[HivemqPermission, ...]) -> tuple[Pattern, ...]:
    """The topic model's templates and the role's own per-device permissions."""
    own = [
        Pattern(
            tuple(token for part in _split_placeholder(p.topic) for token in part),
            mqtt=True,
        )
        for p in permissions
        if CLIENT_ID_PLACEHOLDER in p.topic
    ]
    return (*model_templates(), *[p for p in own if p.tokens])


def _split_placeholder(topic: str) -> list[tuple[Token, ...]]:
    pieces = topic.split(CLIENT_ID_PLACEHOLDER)
    parts: list[tuple[Token, ...]] = []
    for index, piece in enumerate(pieces):
        if index:
            parts.append((SLOT,))
        parts.append(mqtt_filter_pattern(piece).tokens if piece else ())
    return parts


def _client_ids(
    permissions: tuple[HivemqPermission, ...],
    templates: tuple[Pattern, ...],
    attacker: str,
    *,
    bound: bool,
) -> list[str]:
    """As for mosquitto's ``%c`` (:func:`client_id_candidates`); only the own when bound."""
    if bound or not any(CLIENT_ID_PLACEHOLDER in p.topic for p in permissions):
        return [attacker]
    levels = {
        level
        for p in permissions
        for level in p.topic.split("/")
        if CLIENT_ID_PLACEHOLDER not in level
    }
    return client_id_candidates(attacker, levels | template_levels(templates))


def analyze_role(
    permissions: tuple[HivemqPermission, ...],
    *,
    source: str,
    attacker: str = DEFAULT_ATTACKER,
    client_id_bound: bool = False,
    templates: tuple[Pattern, ...] | None = None,
) -> ReachReport:
    """What a device holding these permissions reaches of other devices' topics."""
    owned_templates = templates or realm_templates(permissions)
    owned = owned_machine(owned_templates, attacker)
    chars = alphabet(owned_templates, extra=attacker + "".join(p.topic for p in permissions))
    client_ids = _client_ids(permissions, owned_templates, attacker, bound=client_id_bound)
    findings: list[Reach] = []
    for operation, activity in (
        (Operation.PUBLISH, Activity.PUBLISH),
        (Operation.SUBSCRIBE, Activity.SUBSCRIBE),
    ):
        for client_id in client_ids:
            machines = [_granted(permissions, activity, client_id, attacker), owned]
            topic = shortest_accepted(machines, all, chars + tuple(client_id), required=(0, 1))
            if topic is None:
                continue
            victim = victim_of(owned_templates, topic, attacker)
            topic, victim = readable(topic, victim, partial(accepted, machines))
            via = "" if client_id == attacker else client_id
            witness = _subscription(permissions, topic) if activity is Activity.SUBSCRIBE else topic
            findings.append(
                Reach(
                    operation,
                    Severity.HIGH,
                    witness,
                    victim,
                    topic if witness != topic else "",
                    client_id=via,
                )
            )
            break
    return ReachReport(source, tuple(findings))


def _subscription(permissions: tuple[HivemqPermission, ...], topic: str) -> str:
    """The filter a device sends: the topic, with ``$share/<group>/`` if only shared is granted."""
    shared = [
        p
        for p in permissions
        if p.activity is Activity.SUBSCRIBE and p.shared_subscription is SharedSubscription.SHARED
    ]
    if shared and len(shared) == len([p for p in permissions if p.activity is Activity.SUBSCRIBE]):
        return f"$share/{shared[0].shared_group or 'group'}/{topic}"
    return topic


def analyze_realm(
    document: str,
    *,
    source: str = "realm",
    attacker: str = DEFAULT_ATTACKER,
    client_id_bound: bool = False,
    by_user: bool = True,
    budget: int = MAX_REALM_DEVICE_USERS,
) -> list[ReachReport]:
    """One report per role of an ESE file realm.

    ``by_user=False``: the pipeline selects roles by the issuer's CN (role key), so
    users do not matter: every role is analysed as held by any device. ``budget``: the
    most role analyses (one per role and device user holding it) before refusing.
    """
    _check_xml(document, "an ESE file realm")
    try:
        roles, users = parse_file_realm(document)
    except (SyntaxError, ValueError) as error:
        raise RealmError(f"not an ESE file realm: {str(error)[:120]}") from None
    devices_named = sum(1 for user in users if THING_NAME_RE.match(user.name))
    if devices_named > MAX_REALM_DEVICE_USERS:
        raise RealmError(
            f"{devices_named} device users; allowed: at most {MAX_REALM_DEVICE_USERS} "
            "per realm file analysed (each is analysed on its own)"
        )
    holders: dict[str, list[str]] = {}
    for user in users:
        for role_id in user.roles:
            holders.setdefault(role_id, []).append(user.name)
    planned = {
        role.role_id: None
        if not (users and by_user)
        else [name for name in holders.get(role.role_id, []) if THING_NAME_RE.match(name)]
        for role in roles
    }
    analyses = sum(1 if devices is None else len(devices) for devices in planned.values())
    if analyses > budget:
        # A user may hold many roles and a realm may hold many roles: bound the work itself.
        raise RealmError(
            f"{analyses} role analyses (roles x device users holding them); allowed: at "
            f"most {budget} per document analysed (about 0.1 s each)"
        )
    reports = []
    for role in roles:
        label = f"{source}:{role.role_id}"
        devices = planned[role.role_id]
        if devices is None:
            reports.append(_role_report(role.permissions, label, attacker, client_id_bound))
            continue
        if not devices:
            note = "held only by users no device certificate can name (not thing names)"
            reports.append(ReachReport(label, (), (note,)))
        reports.extend(
            _role_report(role.permissions, label, name, client_id_bound) for name in devices
        )
    return reports


def _role_report(
    permissions: tuple[HivemqPermission, ...], label: str, attacker: str, bound: bool
) -> ReachReport:
    return analyze_role(permissions, source=label, attacker=attacker, client_id_bound=bound)


def _check_xml(document: str, what: str) -> None:
    if len(document) > MAX_REALM_CHARS:
        raise RealmError(f"larger than {MAX_REALM_CHARS} characters")
    if "<!DOCTYPE" in document or "<!ENTITY" in document:
        raise RealmError(f"a DOCTYPE or ENTITY declaration; allowed: {what}")


def analyze_ese_files(
    files: Mapping[str, object], *, source: str = "ese", attacker: str = DEFAULT_ATTACKER
) -> list[ReachReport]:
    """The ESE ConfigMap's files (``config.xml`` and its realms) as the broker reads them.

    Each listener pipeline's realm is analysed the way that pipeline selects
    permissions: by the subject CN (``use-authorization-key``: realm users) or by the
    issuer's CN (role key: any device holds every role). A pipeline whose realm file is
    not among ``files`` is an error: the broker could not start with it.
    """
    config = files.get(ESE_CONFIG_FILE)
    if not isinstance(config, str):
        raise RealmError(f"no {ESE_CONFIG_FILE}; allowed: the ESE ConfigMap (gcp manifests)")
    _check_xml(config, "the ESE config.xml")
    try:
        root = ET.fromstring(config)  # noqa: S314 - size and DOCTYPE/ENTITY checked above
    except ET.ParseError as error:
        raise RealmError(f"{ESE_CONFIG_FILE} is not XML: {str(error)[:120]}") from None
    paths = {
        realm.findtext("name", ""): realm.findtext("configuration/file-path", "")
        for realm in root.iterfind("realms/file-realm")
    }
    reports: list[ReachReport] = []
    pipelines = root.findall("pipelines/listener-pipeline")
    if len(pipelines) > MAX_ESE_PIPELINES:
        raise RealmError(
            f"{len(pipelines)} listener pipelines; allowed: at most {MAX_ESE_PIPELINES}"
        )
    for pipeline in pipelines:
        listener = pipeline.get("listener", "")
        manager = pipeline.find("file-authorization-manager")
        if manager is None:
            raise RealmError(f"pipeline {listener!r}: no file-authorization-manager")
        file_name = paths.get(manager.findtext("realm", ""), "").rpartition("/")[2]
        document = files.get(file_name)
        if not isinstance(document, str):
            raise RealmError(f"pipeline {listener!r}: realm file {file_name!r} not in the files")
        by_user = manager.findtext("use-authorization-key") == "true"
        # One budget for the whole ConfigMap: several pipelines cannot multiply the work.
        budget = MAX_REALM_DEVICE_USERS - sum(1 for r in reports if not r.notes)
        reports.extend(
            analyze_realm(
                document,
                source=f"{source}:{listener}",
                attacker=attacker,
                by_user=by_user,
                budget=budget,
            )
        )
    return reports
