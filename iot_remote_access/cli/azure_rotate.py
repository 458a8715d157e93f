"""`azure rotate`: one pass of the Azure rotation service (run it hourly: cron, a container job).

It confirms, times out and starts rotations as ``arm/rotation_service.py`` describes, with
the settings file's ``certificates`` section (lead time, hourly budget, stagger) and the
fleet CA of ``azure.caCertificate`` (the CA the DPS enrollment group names), whose key
comes from ``--ca-key-file`` or ``--ca-key-secret`` (Key Vault), as for ``azure deploy``.
The hub is ``azure.iotHub.name`` unless ``IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT`` says
otherwise. It prints what it did as one JSON document; exit 0 when the pass ran (devices
that failed are in the report and retried by a later pass), 1 when Azure refused or
failed, 2 for bad input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.azure import CA_KEY_PASSWORD_ENV
from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.settings import FleetSettings

ENDPOINT_VARIABLE = "IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT"


@click.command("rotate")
@click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path),
    help="settings file with `azure` (iotHub, caCertificate) and `certificates` sections",
)
@click.option("--ca-key-file", type=click.Path(path_type=Path), help="the fleet CA's key (PEM)")
@click.option("--ca-key-secret", help="instead: the Key Vault secret holding the CA key")
@click.option(
    "--ledger-container-url",
    default=None,
    help="the access ledger's anchor container (with ledger.azure). Default: "
    "https://<ledger.azure.storageAccount>.blob.core.windows.net/<ledger.azure.container>",
)
def rotate(
    settings_file: Path,
    ca_key_file: Path | None,
    ca_key_secret: str | None,
    ledger_container_url: str | None,
) -> None:
    """One pass of certificate rotation on Azure: confirm, time out, start due rotations.

    With a ledger section naming ``azure``, every issue, rotation and revocation is
    recorded in the access ledger before it takes effect."""
    settings = _settings(settings_file)
    if (ca_key_file is None) == (ca_key_secret is None):
        raise InputError("--ca-key-file or --ca-key-secret: give exactly one; allowed: either")
    service = _service(settings, settings_file, ca_key_file, ca_key_secret)
    service.ledger = _ledger_chain(settings, ledger_container_url)
    from iot_remote_access.arm.errors import AzureSignInRequired
    from iot_remote_access.arm.hub_service import HubServiceError

    try:
        report = service.run_once()
    except AzureSignInRequired as error:
        raise OperationError(str(error)) from None
    except HubServiceError as error:
        raise OperationError(f"rotation pass stopped: {error}") from None
    if service.ledger is not None:
        _anchor(service.ledger)
    click.echo(json.dumps(_report_json(report), indent=2))


def _settings(settings_file: Path) -> FleetSettings:
    settings = read_fleet_settings(settings_file)
    missing = [
        key
        for key, value in (
            ("azure", settings.azure),
            ("azure.caCertificate", settings.azure and settings.azure.ca_certificate),
            ("certificates", settings.certificates),
        )
        if value is None
    ]
    if missing:
        raise InputError(
            f"--settings: {settings_file} has no {missing[0]}; allowed: azure.iotHub, "
            "azure.caCertificate (the enrollment group's CA) and certificates "
            "(docs/azure-rotation.md)"
        )
    return settings


def _service(
    settings: FleetSettings, settings_file: Path, key_file: Path | None, secret: str | None
) -> Any:
    from iot_remote_access.arm.ca_issuer import EnrollmentGroupCaIssuer
    from iot_remote_access.arm.clients import SignInCredential, default_credential
    from iot_remote_access.arm.direct_methods import DirectMethodClient, hub_endpoint
    from iot_remote_access.arm.errors import ArmInputError, ArmOperationError
    from iot_remote_access.arm.hub_service import TwinClient
    from iot_remote_access.arm.key_vault import read_ca_key_secret
    from iot_remote_access.arm.proof_of_possession import load_ca_certificate, load_ca_key
    from iot_remote_access.arm.rotation_service import AzureRotationService
    from iot_remote_access.arm.twin_inventory import TwinInventory

    assert settings.azure is not None and settings.azure.ca_certificate is not None
    assert settings.certificates is not None
    credential = SignInCredential(default_credential())
    verify = os.environ.get("REQUESTS_CA_BUNDLE") or True
    ca_file = settings_file.resolve().parent / settings.azure.ca_certificate.file
    try:
        endpoint = os.environ.get(ENDPOINT_VARIABLE) or hub_endpoint(settings.azure.iot_hub.name)
        certificate = load_ca_certificate(ca_file, field="azure.caCertificate.file")
        if key_file is not None:
            password = os.environ.get(CA_KEY_PASSWORD_ENV)
            key = load_ca_key(
                key_file, certificate=certificate, password=password.encode() if password else None
            )
        else:
            assert secret is not None
            key = read_ca_key_secret(secret, credential=credential, certificate=certificate)
    except (ArmInputError, ValueError) as error:
        raise InputError(str(error)) from None
    except ArmOperationError as error:
        raise OperationError(str(error)) from None
    return AzureRotationService(
        inventory=TwinInventory(TwinClient(endpoint, credential, connection_verify=verify)),
        methods=DirectMethodClient(endpoint, credential, connection_verify=verify),
        issuer=EnrollmentGroupCaIssuer(certificate, key),
        policy=settings.certificates.stagger_policy(),
        settings=settings.certificates.rotation_settings(),
    )


def _ledger_chain(settings: FleetSettings, container_url: str | None) -> Any:
    """The access ledger's chain in the anchor container, or None without ``ledger.azure``."""
    ledger = settings.ledger
    if not ledger.enabled or ledger.azure is None:
        if container_url is not None:
            raise InputError(
                "--ledger-container-url: given, but the settings have no ledger.azure; "
                "allowed: only with a ledger section naming azure"
            )
        return None
    from iot_remote_access.cli.evidence_clouds import azure_container_sink
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain

    url = container_url or (
        f"https://{ledger.azure.storage_account}.blob.core.windows.net/{ledger.azure.container}"
    )
    return ObjectChain(azure_container_sink(url), ledger.ledger_id)


def _anchor(chain: Any) -> None:
    """Anchor the chain's head after the pass (hourly, as the other writers do)."""
    from datetime import UTC, datetime

    from azure.core.exceptions import AzureError

    from iot_remote_access.lambdas.anchor_sinks.sinks import TailBroken
    from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

    try:
        chain.anchor(datetime.now(UTC))
    except TailBroken as error:
        raise OperationError(f"ledger: the chain does not hold, not anchored: {error}") from None
    except (LedgerUnavailable, AzureError) as error:
        raise OperationError(
            f"ledger: the anchor could not be written: {str(error)[:200]}"
        ) from None


def _report_json(report: Any) -> dict[str, Any]:
    plan = report.plan
    return {
        "generatedAt": plan.generated_at.isoformat(),
        "requested": report.requested,
        "issued": report.issued,
        "refused": report.refused,
        "failed": report.failed,
        "confirmed": report.confirmed,
        "resent": report.resent,
        "timedOut": list(plan.timed_out),
        "pending": plan.pending,
        "inFlight": plan.in_flight,
        "critical": list(plan.critical),
        "exhausted": list(plan.exhausted),
    }
