"""`evidence record gcp-sessions|azure-alerts` and `evidence export-objects`: the ledger on
Google Cloud and Azure, whose chain lives in the anchor bucket/container (``ObjectChain``).

The writers run as services (a Deployment next to Teleport on GKE; a container or an
App Service behind the action group's webhook on Azure) from the same settings file
as ``gcp``/``azure`` deploy: the store is ``ledger.gcp.bucket`` /
``ledger.azure.storageAccount`` + ``container``, the ledger ``ledger.ledgerId``, the
anchor interval ``ledger.anchorIntervalMinutes``. They stop on SIGTERM/SIGINT, after
writing what they hold and one last anchor.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.settings.ledger import LedgerSettings

_SUBSCRIPTION = re.compile(
    r"projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/subscriptions/[A-Za-z][\w.~+%-]{2,254}"
)
TOKEN_VARIABLE = "IOT_REMOTE_ACCESS_WEBHOOK_TOKEN"  # noqa: S105 - a variable name, not a secret

settings_option = click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON or YAML settings file with a 'ledger' section",
)


@click.group("record")
def record() -> None:
    """Write a cloud's remote-access events into the ledger (Google Cloud, Azure)."""


def _ledger(settings_file: Path, cloud: str) -> LedgerSettings:
    ledger = read_fleet_settings(settings_file).ledger
    if not ledger.enabled or getattr(ledger, cloud) is None:
        raise InputError(
            f"{settings_file}: ledger.{cloud}: missing; allowed: a ledger section with "
            f"'{cloud}' (where the chain and its anchors are kept)"
        )
    return ledger


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return stop


@record.command("gcp-sessions")
@settings_option
@click.option(
    "--subscription",
    required=True,
    help="projects/P/subscriptions/S: a subscription of the topic the Teleport audit sink "
    "exports to (gcp.accessProxy.auditSinkDestination)",
)
@click.option("--until-idle", is_flag=True, help="stop when a pull returns nothing (a job)")
def gcp_sessions(settings_file: Path, subscription: str, until_idle: bool) -> None:
    """Append Teleport sessions (start, end, refused) to the chain in ledger.gcp.bucket."""
    ledger = _ledger(settings_file, "gcp")
    found = _SUBSCRIPTION.fullmatch(subscription)
    if found is None:
        raise InputError(
            f"--subscription: {subscription[:80]!r} is not allowed; allowed: "
            "projects/PROJECT/subscriptions/NAME"
        )
    from iot_remote_access.cli.gcp import _call
    from iot_remote_access.lambdas.anchor_sinks.gcp_sessions import SessionWriter
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain

    assert ledger.gcp is not None
    chain = ObjectChain(_gcs_sink(ledger.gcp.bucket, found.group(1)), ledger.ledger_id)
    writer = SessionWriter(
        _call(_subscriber),
        subscription,
        chain,
        anchor_every=timedelta(minutes=ledger.anchor_interval_minutes),
    )
    stats = _call(lambda: writer.run(_stop_on_signals(), until_idle=until_idle), "Google Cloud")
    click.echo(
        f"recorded {stats.appended} session event(s); {stats.skipped} other event(s), "
        f"{stats.unusable} unusable, {stats.duplicates} duplicate(s); {stats.anchors} anchor(s)"
    )
    if stats.failures:
        raise OperationError(f"not recorded (left for redelivery): {stats.failures[0]}")


def _subscriber() -> Any:
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()


def _gcs_sink(bucket: str, project: str | None) -> Any:
    from iot_remote_access.lambdas.anchor_sinks.sinks import GcsAnchors

    return GcsAnchors.for_bucket(bucket, project)


@record.command("azure-alerts")
@settings_option
@click.option("--listen", default="0.0.0.0:8080", show_default=True, help="HOST:PORT to serve")
@click.option(
    "--container-url",
    default=None,
    help="the anchor container's URL. Default: https://<ledger.azure.storageAccount>"
    ".blob.core.windows.net/<ledger.azure.container>",
)
def azure_alerts(settings_file: Path, listen: str, container_url: str | None) -> None:
    """Serve the action group's webhook (POST /alerts?token=...) and append every Device
    Streams alert event to the chain in the anchor container. The token comes from
    IOT_REMOTE_ACCESS_WEBHOOK_TOKEN (never an argument: it would show in ps)."""
    ledger = _ledger(settings_file, "azure")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(
            f"--listen: {listen[:60]!r} is not allowed; allowed: HOST:PORT (port 0: any free one)"
        )
    token = os.environ.get(TOKEN_VARIABLE, "")
    if len(token) < 16:
        raise InputError(f"{TOKEN_VARIABLE}: missing or shorter than 16 characters")
    from iot_remote_access.lambdas.anchor_sinks.azure_alerts import AlertWriter, serve
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain

    assert ledger.azure is not None
    url = container_url or (
        f"https://{ledger.azure.storage_account}.blob.core.windows.net/{ledger.azure.container}"
    )
    chain = ObjectChain(azure_container_sink(url), ledger.ledger_id)
    writer = AlertWriter(
        chain, token, anchor_every=timedelta(minutes=ledger.anchor_interval_minutes)
    )
    stop = _stop_on_signals()
    try:
        server = serve(writer, host, int(port), stop)
    except OSError as error:
        raise InputError(f"--listen: {listen[:60]!r} cannot be served ({error.strerror})") from None
    click.echo(f"serving on {host}:{server.server_address[1]}", err=True)
    stop.wait()
    server.shutdown()
    writer.anchor_if_due(force=True)


def azure_container_sink(url: str) -> Any:
    from azure.storage.blob import ContainerClient

    from iot_remote_access.lambdas.anchor_sinks.sinks import AzureBlobAnchors

    if url.startswith(("http://127.0.0.1:", "http://localhost:")):
        # A local Blob endpoint (Azurite, a stand-in): the SDK sends no token over HTTP.
        return AzureBlobAnchors(ContainerClient.from_container_url(url))
    from azure.identity import DefaultAzureCredential

    return AzureBlobAnchors(
        ContainerClient.from_container_url(url, credential=DefaultAzureCredential())
    )


def export_objects(out: Path, sink: Any, ledger_id: str) -> tuple[int, int]:
    """Write ``chain.jsonl`` and ``anchors.jsonl`` of a chain kept in object storage."""
    from iot_remote_access.cli.evidence_aws import _write
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
    from iot_remote_access.lambdas.anchor_sinks.sinks import anchor_bodies

    records = _write(out / "chain.jsonl", ObjectChain(sink, ledger_id).lines())
    anchors = _write(out / "anchors.jsonl", anchor_bodies(sink, ledger_id))
    return records, anchors


@click.command("export-objects")
@click.option("--gcs-bucket", default=None, help="the anchor bucket (ledger.gcp.bucket)")
@click.option("--gcs-project", default=None, help="the bucket's project (billing)")
@click.option("--azure-container-url", default=None, help="the anchor container's URL")
@click.option("--ledger-id", default="access", show_default=True, help="the chain's id")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="folder to write chain.jsonl and anchors.jsonl into (created; never overwritten)",
)
def export_objects_command(
    gcs_bucket: str | None,
    gcs_project: str | None,
    azure_container_url: str | None,
    ledger_id: str,
    out: Path,
) -> None:
    """Export a Google Cloud or Azure ledger (chain and anchors) for `evidence verify`."""
    if (gcs_bucket is None) == (azure_container_url is None):
        raise InputError("--gcs-bucket / --azure-container-url: allowed: exactly one of them")
    if (out / "chain.jsonl").exists() or (out / "anchors.jsonl").exists():
        raise InputError(f"--out: {str(out)[:80]!r} holds an export; allowed: a new folder")
    out.mkdir(parents=True, exist_ok=True)
    sink = (
        _gcs_sink(gcs_bucket, gcs_project)
        if gcs_bucket is not None
        else azure_container_sink(str(azure_container_url))
    )
    try:
        records, anchors = export_objects(out, sink, ledger_id)
    except Exception as error:  # any SDK error: one line, exit 1
        raise OperationError(f"the ledger cannot be read: {type(error).__name__}") from None
    click.echo(f"exported {records} record(s) and {anchors} anchor(s) to {out}")
