"""`azure plan` and `azure deploy`: the Azure equivalent of the reference stack.

Exit codes: 0 done, 1 Azure refused or failed (one line naming the resource and
Azure's error code) or no usable credentials (one line on how to sign in),
2 bad input (settings, options, CA files), always before any call to Azure.
The Azure SDKs are imported only here, inside the commands, so the rest of the
CLI works without the ``azure`` extra.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.core import azure_rules

if TYPE_CHECKING:
    from iot_remote_access.arm.context import ArmContext
    from iot_remote_access.arm.deployment import Plan
    from iot_remote_access.stacks.azure_stack import AzureStack

CA_KEY_PASSWORD_ENV = "IOT_REMOTE_ACCESS_CA_KEY_PASSWORD"  # noqa: S105 - a variable's name


@click.group("azure")
def azure() -> None:
    """Plan and deploy the Azure equivalent: IoT hub (X.509 only), CA with proof of
    possession, DPS, Device Streams, diagnostics and the stream alert.
    Credentials: DefaultAzureCredential (e.g. after `az login`)."""


def _common(command: Any) -> Any:
    options = [
        click.option(
            "--settings",
            "settings_file",
            required=True,
            type=click.Path(path_type=Path),
            help="settings file (YAML or JSON) with an `azure` section",
        ),
        click.option(
            "--subscription",
            required=True,
            envvar="AZURE_SUBSCRIPTION_ID",
            help="subscription id (GUID). Default: $AZURE_SUBSCRIPTION_ID",
        ),
        click.option("--resource-group", required=True, help="existing resource group"),
        click.option(
            "--arm-endpoint",
            default="https://management.azure.com",
            show_default=True,
            envvar="IOT_REMOTE_ACCESS_ARM_ENDPOINT",
            help="Azure Resource Manager endpoint (sovereign clouds)",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@azure.command()
@_common
def plan(settings_file: Path, subscription: str, resource_group: str, arm_endpoint: str) -> None:
    """Show, resource by resource and field by field, what deploy would create or change."""
    setup = _prepare(settings_file, subscription, resource_group, arm_endpoint, ca_key_file=None)
    from iot_remote_access.arm import deployment

    with _azure_errors(arm_endpoint):
        result = deployment.plan(setup.stack, setup.context)
    _print_plan(result, Console(soft_wrap=True))


@azure.command()
@_common
@click.option(
    "--ca-key-file",
    type=click.Path(path_type=Path),
    help=f"the fleet CA's private key (PEM), needed when proof of possession is due; "
    f"an encrypted key's password comes from ${CA_KEY_PASSWORD_ENV}",
)
@click.option(
    "--ca-key-secret",
    help="instead of --ca-key-file: the Key Vault secret holding the CA key, "
    "https://<vault>.vault.azure.net/secrets/<name>[/<version>]",
)
def deploy(
    settings_file: Path,
    subscription: str,
    resource_group: str,
    arm_endpoint: str,
    ca_key_file: Path | None,
    ca_key_secret: str | None,
) -> None:
    """Apply the plan; idempotent (a second deploy changes nothing and writes nothing)."""
    if ca_key_file is not None and ca_key_secret is not None:
        raise InputError("--ca-key-file and --ca-key-secret: give one; allowed: either, or neither")
    setup = _prepare(settings_file, subscription, resource_group, arm_endpoint, ca_key_file)
    if ca_key_secret is not None and setup.stack.ca_certificate is None:
        raise InputError(
            "--ca-key-secret: given, but the settings have no azure.caCertificate; "
            "allowed: omit it, or set azure.caCertificate"
        )
    from iot_remote_access.arm import deployment

    with _azure_errors(arm_endpoint):
        if ca_key_secret is not None and setup.stack.ca_certificate is not None:
            from iot_remote_access.arm.key_vault import read_ca_key_secret

            setup.context.ca_key = read_ca_key_secret(
                ca_key_secret,
                credential=setup.context.clients.credential,
                certificate=setup.stack.ca_certificate,
            )
        report = deployment.deploy(setup.stack, setup.context)
    Console(soft_wrap=True).print(report.summary(), highlight=False, markup=False)


@dataclass
class _Setup:
    stack: AzureStack
    context: ArmContext


def _prepare(
    settings_file: Path,
    subscription: str,
    resource_group: str,
    arm_endpoint: str,
    ca_key_file: Path | None,
) -> _Setup:
    """Everything that can be checked without Azure, checked; exit 2 on the first problem."""
    try:
        from iot_remote_access.arm.clients import AzureClients, ResourceGroupRef, default_credential
        from iot_remote_access.arm.context import ArmContext
        from iot_remote_access.arm.errors import ArmInputError
        from iot_remote_access.arm.proof_of_possession import load_ca_key
        from iot_remote_access.core.tree import Root
        from iot_remote_access.stacks.azure_stack import AzureStack
    except ImportError as error:
        raise InputError(
            f"the azure commands need the 'azure' extra ({error.name} is missing): "
            "pip install 'iot-remote-access[azure]'"
        ) from None
    settings = read_fleet_settings(settings_file)
    if settings.azure is None:
        raise InputError(
            f"{settings_file}: no 'azure' section; allowed: azure with location and iotHub "
            "(see examples/azure-settings.yaml)"
        )
    try:
        subscription = azure_rules.check_subscription_id(subscription)
    except ValueError as error:
        raise InputError(f"--subscription: {error}") from None
    try:
        azure_rules.check_resource_group(resource_group)
    except ValueError as error:
        raise InputError(f"--resource-group: {error}") from None
    if not arm_endpoint.startswith("https://"):
        raise InputError(f"--arm-endpoint: {arm_endpoint!r} is not https; allowed: an https URL")
    group = ResourceGroupRef(subscription, resource_group)
    try:
        stack = AzureStack(
            Root("azure"),
            "Fleet",
            settings=settings,
            resource_group=group,
            settings_dir=settings_file.resolve().parent,
        )
        ca_key = None
        if ca_key_file is not None:
            if stack.ca_certificate is None:
                raise InputError(
                    "--ca-key-file: given, but the settings have no azure.caCertificate; "
                    "allowed: omit it, or set azure.caCertificate"
                )
            password = os.environ.get(CA_KEY_PASSWORD_ENV)
            ca_key = load_ca_key(
                ca_key_file,
                certificate=stack.ca_certificate,
                password=password.encode() if password else None,
            )
    except ArmInputError as error:
        raise InputError(str(error)) from None
    except ValueError as error:
        raise InputError(f"invalid settings: {error}") from None
    _quiet_azure_logging()
    clients = AzureClients(default_credential(), subscription, endpoint=arm_endpoint)
    return _Setup(stack, ArmContext.create(clients, ca_key=ca_key))


def _quiet_azure_logging() -> None:
    """Keep the Azure SDK's own diagnostics off the terminal unless logging is configured.

    Without a handler, Python prints WARNING records through ``logging.lastResort``:
    azure-identity's ~16-line account of every credential it tried would precede
    the one line that says how to sign in. A NullHandler on the ``azure`` logger
    stops that; handlers the caller configured (root or ``azure``) still get them.
    """
    azure_logger = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in azure_logger.handlers):
        azure_logger.addHandler(logging.NullHandler())


@contextmanager
def _azure_errors(endpoint: str) -> Iterator[None]:
    """Azure's failures as one line each (exit 1; exit 2 for input found wanting mid-way)."""
    from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError

    from iot_remote_access.arm.errors import ArmInputError, ArmOperationError, AzureSignInRequired

    try:
        yield
    except AzureSignInRequired as error:
        raise OperationError(str(error)) from None
    except ArmOperationError as error:
        raise OperationError(str(error)) from None
    except ArmInputError as error:
        raise InputError(str(error)) from None
    except ServiceRequestError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OperationError(
            f"cannot reach Azure Resource Manager at {endpoint}: {first}"
        ) from None
    except HttpResponseError as error:
        code = getattr(error.error, "code", None) or error.status_code
        raise OperationError(f"Azure error {code}: {error.message}") from None
    except AzureError as error:
        raise OperationError(f"Azure SDK error: {type(error).__name__}: {error.message}") from None


def _print_plan(result: Plan, console: Console) -> None:
    for step in result.resources:
        action = step.action.value
        if step.proves_possession:
            action += ", then prove possession of the CA key"
        console.print(f"{step.resource.label}: {action}", highlight=False, markup=False)
        for change in step.changes:
            console.print(f"  {change}", highlight=False, markup=False)
        for note in step.notes:
            console.print(f"  note: {note}", highlight=False, markup=False)
    console.print(f"Plan: {result.summary()}.", highlight=False, markup=False)
