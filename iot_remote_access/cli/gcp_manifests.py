"""`gcp manifests`: write the GKE manifests and HiveMQ Helm values for the broker side."""

from __future__ import annotations

from pathlib import Path

import click

from iot_remote_access.cli.errors import InputError, OperationError, settings_input_error
from iot_remote_access.settings import FleetSettings, SettingsError


@click.command()
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON or YAML settings with a hivemq section (see examples/hivemq-settings.yaml)",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="directory for manifests/ and hivemq-values.yaml (files of ours there are replaced)",
)
def manifests(settings_file: Path, out_dir: Path) -> None:
    """Write Kubernetes manifests (manifests/) and HiveMQ Helm values (hivemq-values.yaml)
    for HiveMQ on GKE with the Pub/Sub bridge. Exit 0 written, 2 bad settings (nothing written)."""
    try:
        settings = FleetSettings.from_file(settings_file)
    except SettingsError as error:
        raise settings_input_error(error) from None
    if settings.hivemq is None:
        raise InputError(
            f"{settings_file}: hivemq: missing; allowed: a hivemq section "
            "(see examples/hivemq-settings.yaml)"
        )
    # cdk8s starts a Node.js process: loaded only when the command runs.
    try:
        from iot_remote_access.stacks.hivemq_chart import synthesize
    except ImportError as error:
        raise InputError(
            f"gcp manifests needs the gke extra ({error.name} cannot be imported); "
            "allowed: pip install 'iot-remote-access[gke]'"
        ) from None

    try:
        written = synthesize(settings, out_dir)
    except ValueError as error:
        raise InputError(f"{settings_file}: {error}") from None
    except OSError as error:
        raise OperationError(f"{out_dir}: cannot write manifests ({error.strerror})") from None
    for path in written:
        click.echo(str(path))
    if settings.hivemq.license_secret is None:
        click.echo(
            "note: no hivemq.licenseSecret: HiveMQ runs as an evaluation (25 connections) and the "
            "Enterprise Security Extension stops after its 5-hour trial, after which every "
            "client is refused (see README)",
            err=True,
        )
