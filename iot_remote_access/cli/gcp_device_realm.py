"""`gcp device-realm`: the HiveMQ ESE ConfigMap with one realm user per listed thing.

With ``hivemq.deviceBinding: certificate`` a device gets its topics only once its
thing name is in the devices realm. This prints the ESE ConfigMap (``config.xml``,
the realms) for ``kubectl apply -f -``, or only the realm document (``--format xml``,
for ``reach``), from the settings and a list of thing names. Plain Python: no
Node.js, no cdk8s; the ConfigMap is the one ``gcp manifests --things`` writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from iot_remote_access.cli.errors import InputError, read_fleet_settings
from iot_remote_access.constructs.gcp.labels import PART_OF
from iot_remote_access.core.bounded_input import BoundedInputError, read_text
from iot_remote_access.core.hivemq_device_realm import (
    DEVICES_REALM_FILE,
    MAX_REALM_THINGS,
    REALM_CHECKSUM_ANNOTATION,
    BridgeIdentity,
    DeviceRealmError,
    ese_config_map_name,
    ese_files,
    parse_things,
    realm_checksum,
    rotation_bridge_identity,
)
from iot_remote_access.core.topics import TopicModelError
from iot_remote_access.settings import FleetSettings
from iot_remote_access.settings.hivemq import HIVEMQ_CHART, HIVEMQ_CHART_VERSION

#: A thing name is at most 128 characters: 1,000 of them, with comments, fit easily.
MAX_THINGS_BYTES = 1024 * 1024


@click.command("device-realm")
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON or YAML settings with gcp and hivemq sections (as for gcp manifests)",
)
@click.option(
    "--things",
    "things_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help=f"thing names, one a line ('#' comments; - for stdin); at most {MAX_REALM_THINGS}",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["yaml", "xml"]),
    default="yaml",
    show_default=True,
    help="yaml: the ESE ConfigMap for kubectl apply; xml: the devices realm alone",
)
def device_realm(settings_file: Path, things_file: Path, output_format: str) -> None:
    """Print the HiveMQ ESE ConfigMap whose devices realm lists THINGS (deviceBinding:
    certificate). Exit 0 printed, 2 bad settings or thing list (one line, nothing printed)."""
    settings = _settings(settings_file)
    things = read_things(things_file)
    hivemq, gcp = settings.hivemq, settings.gcp
    assert hivemq is not None and gcp is not None  # checked by _settings and FleetSettings
    access = settings.device_access(
        rotation=hivemq.rotation_topics, command_responses=settings.commands.enabled
    )
    bridge = gcp.bridge
    try:
        files = ese_files(
            access,
            binding=hivemq.device_binding,
            fleet_ca_names=hivemq.tls.fleet_ca_common_names,
            bridge=BridgeIdentity(bridge.identity, bridge.share_group)
            if hivemq.integration == "bridge"
            else None,
            things=things,
            rotation_bridge=rotation_bridge_identity(gcp)
            if hivemq.integration == "bridge"
            else None,
        )
    except DeviceRealmError as error:
        raise InputError(f"{_name(things_file)}: {error}") from None
    if output_format == "xml":
        click.echo(files[DEVICES_REALM_FILE], nl=False)
        return
    checksum = realm_checksum(files)
    click.echo(yaml.safe_dump(_config_map(settings, files, checksum), sort_keys=False), nl=False)
    click.echo(
        f"note: {len(things)} things; after kubectl apply, roll the broker so ESE reads the "
        f"realm: helm upgrade {hivemq.release_name} {HIVEMQ_CHART} --version "
        f"{HIVEMQ_CHART_VERSION} -n {hivemq.namespace} "
        f"--reuse-values --set-string 'nodes.annotations.{_escaped(REALM_CHECKSUM_ANNOTATION)}"
        f"={checksum}' (docs/gcp.md, Device realm)",
        err=True,
    )


def _settings(settings_file: Path) -> FleetSettings:
    settings = read_fleet_settings(settings_file)
    if settings.hivemq is None:
        raise InputError(
            f"{settings_file}: hivemq: missing; allowed: a hivemq section "
            "(see examples/gcp-settings.yaml)"
        )
    if settings.hivemq.device_binding != "certificate":
        raise InputError(
            f"{settings_file}: hivemq.deviceBinding: {settings.hivemq.device_binding!r} has no "
            "device list (one role on ${mqtt-clientid}); allowed: 'certificate' for a realm "
            "that lists things"
        )
    return settings


def read_things(things_file: Path) -> tuple[str, ...]:
    """The thing list of ``--things`` (a file or ``-``), bounded; a bad one is exit 2."""
    source = "--things " + _name(things_file)
    try:
        if str(things_file) == "-":
            text = _read_stdin(source)
        else:
            text = read_text(things_file, max_bytes=MAX_THINGS_BYTES, what="thing list")
        return parse_things(text, source=source)
    except (BoundedInputError, TopicModelError, DeviceRealmError) as error:
        raise InputError(str(error)) from None


def _read_stdin(source: str) -> str:
    """Standard input, at most MAX_THINGS_BYTES, UTF-8 (as read_text does for files)."""
    data = sys.stdin.buffer.read(MAX_THINGS_BYTES + 1)
    if len(data) > MAX_THINGS_BYTES:
        raise DeviceRealmError(
            f"{source}: larger than {MAX_THINGS_BYTES} bytes; allowed: a smaller list"
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise DeviceRealmError(f"{source}: not UTF-8; allowed: a UTF-8 text list") from None


def _config_map(settings: FleetSettings, files: dict[str, str], checksum: str) -> dict[str, Any]:
    hivemq = settings.hivemq
    assert hivemq is not None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ese_config_map_name(hivemq.release_name),
            "namespace": hivemq.namespace,
            "labels": dict(PART_OF),
            "annotations": {REALM_CHECKSUM_ANNOTATION: checksum},
        },
        "data": files,
    }


def _escaped(key: str) -> str:
    """A map key for helm --set: dots inside the key are escaped."""
    return key.replace(".", "\\.")


def _name(path: Path) -> str:
    text = str(path)
    return repr(text if len(text) <= 80 else "..." + text[-77:])
