"""The HiveMQ ESE files for the GKE broker, with the devices realm bound as the settings say.

``deviceBinding: certificate`` (the default): the devices pipeline selects a realm
*user* by the certificate's subject CN (the thing name), and the realm has one
user per listed thing holding a role with that thing's topics written literally
(:func:`~iot_remote_access.core.hivemq_permissions.per_device_realm`). A thing not
listed gets nothing, so the realm must be re-rendered when a device joins
(``iot-remote-access gcp device-realm``); with no list it is empty but valid.

``deviceBinding: clientId``: one role per fleet CA on ``${mqtt-clientid}``, which
the client chooses (docs/topics-v2.md, "HiveMQ: the client-id hole").

``gcp manifests`` (the construct) and ``gcp device-realm`` (plain Python, no
Node.js) both render the ESE ConfigMap's files here, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from iot_remote_access.core.hivemq_ese import (
    BRIDGE_REALM,
    DEVICES_REALM,
    ESE_CONFIG_FILE,
    EsePipeline,
    render_ese_config,
)
from iot_remote_access.core.hivemq_permissions import (
    RealmRole,
    RealmUser,
    bridge_permissions,
    device_permissions,
    per_device_realm,
    render_file_realm,
)
from iot_remote_access.core.rotation_messages import rotation_bridge_topics
from iot_remote_access.core.topics import DeviceAccess, validate_thing_name

DEVICES_REALM_FILE = "devices-realm.xml"
BRIDGE_REALM_FILE = "bridge-realm.xml"
#: Listener names (the Helm values' ``hivemqListenerName``), one ESE pipeline each.
DEVICE_LISTENER_NAME = "devices"
BRIDGE_LISTENER_NAME = "bridge"
#: Pod and ConfigMap annotation holding the devices realm's SHA-256: a new realm changes the
#: broker pods' template, so ``helm upgrade`` rolls them and ESE reads the new file.
REALM_CHECKSUM_ANNOTATION = "iot-remote-access.io/devices-realm-sha256"
#: Things per devices realm. The realm grows by about 0.5 KB per thing (more with declared
#: topics); Kubernetes refuses a ConfigMap over 1 MiB, and ``reach`` analyses at most 1,000
#: device users per realm (``reach_hivemq.MAX_REALM_DEVICE_USERS``), so every realm
#: rendered here can also be proved.
MAX_REALM_THINGS = 1000
#: Kubernetes' limit on a ConfigMap's data (etcd's object size), checked before writing.
MAX_CONFIG_MAP_BYTES = 1024 * 1024


class DeviceRealmError(ValueError):
    """A device list or realm that cannot be rendered: names the input, value and limit."""


@dataclass(frozen=True)
class BridgeIdentity:
    """The bridge's certificate CN and share group (``gcp.bridge``)."""

    identity: str
    share_group: str


def ese_config_map_name(release: str) -> str:
    """The ESE ConfigMap's name: the Helm values reference it as the extension's config."""
    return f"{release}-ese-config"


def parse_things(text: str, *, source: str) -> tuple[str, ...]:
    """Thing names, one a line (blank lines and ``#`` comments skipped, repeats once).

    Stops at the first hostile name (field ``<source> line N``, value, allowed rule)
    and as soon as the list passes :data:`MAX_REALM_THINGS`.
    """
    things: dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        validate_thing_name(name, field_name=f"{source} line {number}")
        things[name] = None
        if len(things) > MAX_REALM_THINGS:
            raise DeviceRealmError(
                f"{source}: more than {MAX_REALM_THINGS} things; allowed: at most "
                f"{MAX_REALM_THINGS} per devices realm (docs/gcp.md, Device realm)"
            )
    return tuple(things)


def devices_realm(
    access: DeviceAccess, *, binding: str, fleet_ca_names: Iterable[str], things: Iterable[str]
) -> str:
    """The devices realm document for ``binding`` ("certificate" or "clientId")."""
    if binding == "clientId":
        role = device_permissions(access)
        return render_file_realm(RealmRole(name, role) for name in fleet_ca_names)
    # Sorted: the same fleet renders the same realm (and checksum) whatever the list's order.
    things = tuple(sorted(set(things)))
    if len(things) > MAX_REALM_THINGS:
        raise DeviceRealmError(
            f"things: {len(things)}; allowed: at most {MAX_REALM_THINGS} per devices realm"
        )
    for thing in things:
        validate_thing_name(thing, field_name="things")
    roles, users = per_device_realm(access, things)
    return render_file_realm(roles, users, indent=False)


def ese_files(
    access: DeviceAccess,
    *,
    binding: str,
    fleet_ca_names: Iterable[str],
    bridge: BridgeIdentity | None,
    things: Iterable[str] = (),
    rotation_bridge: BridgeIdentity | None = None,
) -> dict[str, str]:
    """``config.xml`` and the realm files of the ESE ConfigMap, at most 1 MiB in all.

    ``rotation_bridge`` (GCP certificate rotation, with ``bridge``): a second bridge
    identity in the bridge realm, with the bridge's role over the rotation topics.
    """
    pipelines = [
        EsePipeline(
            DEVICE_LISTENER_NAME, DEVICES_REALM, DEVICES_REALM_FILE, binding == "certificate"
        )
    ]
    files = {
        DEVICES_REALM_FILE: devices_realm(
            access, binding=binding, fleet_ca_names=fleet_ca_names, things=things
        )
    }
    if bridge is not None:
        pipelines.append(EsePipeline(BRIDGE_LISTENER_NAME, BRIDGE_REALM, BRIDGE_REALM_FILE, True))
        role = bridge_permissions(
            access.topics,
            shared_group=bridge.share_group,
            command_responses=access.command_responses,
        )
        roles, users = [RealmRole("bridge", role)], [RealmUser(bridge.identity, ("bridge",))]
        if rotation_bridge is not None:
            rotation_role = bridge_permissions(
                rotation_bridge_topics(access.topics),
                shared_group=rotation_bridge.share_group,
                command_responses=True,
            )
            roles.append(RealmRole("rotation-bridge", rotation_role))
            users.append(RealmUser(rotation_bridge.identity, ("rotation-bridge",)))
        files[BRIDGE_REALM_FILE] = render_file_realm(roles, users)
    files[ESE_CONFIG_FILE] = render_ese_config(tuple(pipelines))
    size = sum(len(name) + len(text.encode("utf-8")) for name, text in files.items())
    if size > MAX_CONFIG_MAP_BYTES:
        raise DeviceRealmError(
            f"things: the ESE ConfigMap would be {size} bytes; allowed: at most "
            f"{MAX_CONFIG_MAP_BYTES} (Kubernetes' ConfigMap limit): list fewer things or "
            "declare fewer topics"
        )
    return files


def realm_checksum(files: dict[str, str]) -> str:
    """SHA-256 of the devices realm: the annotation that rolls the broker when it changes."""
    return hashlib.sha256(files[DEVICES_REALM_FILE].encode("utf-8")).hexdigest()


def rotation_bridge_identity(gcp: Any) -> BridgeIdentity | None:
    """The rotation bridge's identity of ``gcp`` settings (``gcp.rotationService``), or None."""
    rotation = getattr(gcp, "rotation_service", None)
    if rotation is None:
        return None
    return BridgeIdentity(rotation.bridge_identity, rotation.bridge_share_group)
