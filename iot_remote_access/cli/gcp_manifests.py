"""`gcp manifests`: write the GKE manifests and HiveMQ Helm values for the broker side."""

from __future__ import annotations

from pathlib import Path

import click

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.cli.gcp_device_realm import read_things
from iot_remote_access.cli.node_runtime import require_node
from iot_remote_access.settings import FleetSettings


@click.command()
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON or YAML settings with gcp and hivemq sections (see examples/gcp-settings.yaml)",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="directory for manifests/ and hivemq-values.yaml (files of ours there are replaced)",
)
@click.option(
    "--things",
    "things_file",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="thing names for the devices realm (deviceBinding: certificate), as for "
    "gcp device-realm. Default: none, an empty realm: no device gets any topic",
)
def manifests(settings_file: Path, out_dir: Path, things_file: Path | None) -> None:
    """Write Kubernetes manifests (manifests/) and HiveMQ Helm values (hivemq-values.yaml)
    for HiveMQ on GKE with the Pub/Sub bridge, from the same settings file as gcp plan|deploy.
    Exit 0 written, 2 bad settings (nothing written)."""
    settings = read_fleet_settings(settings_file)
    if settings.hivemq is None:
        raise InputError(
            f"{settings_file}: hivemq: missing; allowed: a hivemq section "
            "(see examples/gcp-settings.yaml)"
        )
    _check_bridge_variables(settings_file, settings)
    things: tuple[str, ...] = ()
    if things_file is not None:
        if settings.hivemq.device_binding != "certificate":
            raise InputError(
                f"--things: hivemq.deviceBinding is {settings.hivemq.device_binding!r}, which "
                "lists no devices; allowed: --things with deviceBinding 'certificate'"
            )
        things = read_things(things_file)
    # cdk8s starts a Node.js process: loaded only when the command runs.
    require_node("gcp manifests")
    try:
        from iot_remote_access.stacks.hivemq_chart import synthesize
    except ImportError as error:
        raise InputError(
            f"gcp manifests needs the gke extra ({error.name} cannot be imported); "
            "allowed: pip install 'iot-remote-access[gke]'"
        ) from None

    try:
        written = synthesize(settings, out_dir, things=things)
    except ValueError as error:
        raise InputError(f"{settings_file}: {error}") from None
    except OSError as error:
        raise OperationError(f"{out_dir}: cannot write manifests ({error.strerror})") from None
    for path in written:
        click.echo(str(path))
    _access_proxy_note(settings)
    if settings.hivemq.license_secret is None:
        click.echo(
            "note: no hivemq.licenseSecret: HiveMQ runs as an evaluation (25 connections) and the "
            "Enterprise Security Extension stops after its 5-hour trial, after which every "
            "client is refused (see docs/gcp.md, Known limits)",
            err=True,
        )


def _check_bridge_variables(settings_file: Path, settings: FleetSettings) -> None:
    """A ``BRIDGE_*`` name in ``gcp.bridge.env`` that the bridge does not read would stop
    every replica at start (exit 2): refuse it here, before anything is written."""
    if settings.gcp is None or not settings.gcp.bridge.env:
        return
    try:
        from iot_remote_access.bridge.settings import unknown_variables
    except ImportError:  # without the gcp extra the bridge's own check still stops it
        return
    problem = unknown_variables(settings.gcp.bridge.env)
    if problem:
        raise InputError(f"{settings_file}: gcp.bridge.env: {problem}")


def _access_proxy_note(settings: FleetSettings) -> None:
    """What ``gcp manifests`` cannot do for Teleport: the Workload Identity binding (IAM)."""
    gcp = settings.gcp
    if gcp is None or gcp.access_proxy is None:
        return
    access = gcp.access_proxy
    member = (
        f"serviceAccount:{gcp.project_id}.svc.id.goog[{access.namespace}/{access.release_name}]"
    )
    click.echo(
        f"note: Teleport runs as {access.service_account} through Workload Identity: "
        f"gcp deploy grants it roles/iam.workloadIdentityUser for {member}; grant it "
        f"roles/datastore.user in the project and roles/storage.objectAdmin on "
        f"gs://{access.recordings_bucket} yourself (see docs/gcp-access.md, Step by step)",
        err=True,
    )
