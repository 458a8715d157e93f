"""``gcp plan|deploy``: the Cloud Pub/Sub topology from a settings file.

``gcp`` is a group so that other GCP commands (e.g. ``gcp manifests``) can join it.
Bad settings or arguments exit 2 before any Google Cloud call; a failed call
(missing credentials included) is one line, exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from iot_remote_access.cli.errors import (
    InputError,
    OperationError,
    read_fleet_settings,
)
from iot_remote_access.cli.gcp_access import (
    AccessMonitoring,
    device_config,
    print_monitoring_applied,
    print_monitoring_plan,
)
from iot_remote_access.cli.gcp_ca import CaTopology, ca_plan_or_refuse, deploy_ca, plan_ca
from iot_remote_access.cli.gcp_ledger import SERVICE as LEDGER_SERVICE
from iot_remote_access.cli.gcp_ledger import LedgerAnchors
from iot_remote_access.core.gcp_rules import validate_project_id
from iot_remote_access.settings import FleetSettings
from iot_remote_access.settings.gcp import GcpSettings

_SYMBOL = {"create": "+", "update": "~", "unchanged": "=", "blocked": "!", "skipped": "-"}


@click.group(help="Google Cloud: the Pub/Sub topology (and the bridge's side of it).")
def gcp() -> None:
    pass


settings_option = click.option(
    "--settings",
    "settings_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON or YAML settings file with a 'gcp' section",
)
project_option = click.option(
    "--project",
    default=None,
    help="Google Cloud project id. Default: gcp.projectId of the settings",
)
monitoring_endpoint_option = click.option(
    "--monitoring-endpoint",
    default=None,
    envvar="IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT",
    help="HOST:PORT for Cloud Logging and Cloud Monitoring (with gcp.accessProxy). Default: "
    "Google's; a loopback address is reached without TLS (a local stand-in)",
)
ca_endpoint_option = click.option(
    "--ca-endpoint",
    default=None,
    envvar="IOT_REMOTE_ACCESS_GCP_CA_ENDPOINT",
    help="HOST:PORT for Certificate Authority Service (with gcp.certificateAuthority). "
    "Default: Google's; a loopback address is reached without TLS (a local stand-in)",
)


@gcp.command("plan")
@settings_option
@project_option
@monitoring_endpoint_option
@ca_endpoint_option
def plan_command(
    settings_file: Path,
    project: str | None,
    monitoring_endpoint: str | None,
    ca_endpoint: str | None,
) -> None:
    """Show, resource by resource, what deploy would create or change."""
    prepared = _prepare(settings_file, project)
    desired, publisher, subscriber = prepared.desired, prepared.publisher, prepared.subscriber
    access, authority, anchors = _other_parts(prepared, monitoring_endpoint, ca_endpoint)
    result = _call(lambda: _plan(desired, publisher, subscriber))
    console = Console(soft_wrap=True)
    _print_plan(result, console)
    if access is not None:
        print_monitoring_plan(_call(access.plan, "Google Cloud"), console)
    if authority is not None:
        plan_ca(authority, _call, console)
    if anchors is not None:
        anchors.print_plan(_call(anchors.plan, LEDGER_SERVICE), console)


@gcp.command("deploy")
@settings_option
@project_option
@monitoring_endpoint_option
@ca_endpoint_option
def deploy_command(
    settings_file: Path,
    project: str | None,
    monitoring_endpoint: str | None,
    ca_endpoint: str | None,
) -> None:
    """Create or update the topology; a second run changes nothing."""
    from rich.progress import Progress

    from iot_remote_access.pubsub.deploy import DeployBlocked, DeployFailed, deploy

    prepared = _prepare(settings_file, project)
    desired, publisher, subscriber = prepared.desired, prepared.publisher, prepared.subscriber
    access, authority, anchors = _other_parts(prepared, monitoring_endpoint, ca_endpoint)
    result = _call(lambda: _plan(desired, publisher, subscriber))
    # Every blocked plan refuses before any change: nothing is half-deployed.
    ca_plan = None if authority is None else ca_plan_or_refuse(authority, _call)
    if anchors is not None:
        anchors.refuse_blocked(_call(anchors.plan, LEDGER_SERVICE))
    console = Console(soft_wrap=True)
    err = Console(stderr=True)
    try:
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("deploying", total=len(result.pending))

            def step(change: Any) -> None:
                bar.update(task, description=f"{change.action} {change.kind} {change.name}")
                bar.advance(task)

            applied = _call(lambda: deploy(result, desired, publisher, subscriber, progress=step))
    except DeployBlocked as error:
        raise InputError(f"nothing deployed: {error}") from None
    except DeployFailed as error:
        raise OperationError(f"Pub/Sub refused to {error}") from None
    for change in applied:
        console.print(
            f"{_SYMBOL[change.action]} {change.action} {change.kind} {change.name}",
            markup=False,
            highlight=False,
        )
    counts = {
        "created": sum(c.action == "create" for c in applied),
        "updated": sum(c.action == "update" for c in applied),
        "unchanged": sum(c.action == "unchanged" for c in result.changes),
        "skipped": sum(c.action == "skipped" for c in result.changes),
    }
    console.print(", ".join(f"{n} {what}" for what, n in counts.items()), highlight=False)
    if access is not None:
        from iot_remote_access.gcp_monitoring.deploy import MonitoringDeployFailed

        monitoring_plan = _call(access.plan, "Google Cloud")
        try:
            applied_monitoring = _call(lambda: access.deploy(monitoring_plan), "Google Cloud")
        except MonitoringDeployFailed as error:
            raise OperationError(f"Google Cloud refused to {error}") from None
        print_monitoring_applied(monitoring_plan, applied_monitoring, console)
    if authority is not None:
        deploy_ca(authority, ca_plan, _call, console)
    if anchors is not None:
        anchors.print_applied(_call(anchors.deploy, LEDGER_SERVICE), console)


@gcp.command("device-config")
@settings_option
@click.option("--thing", required=True, help="the device's thing name (its MQTT identity)")
@click.option(
    "--thing-group",
    "thing_group",
    default=None,
    help="the device's thing group (the thing-group label of gcp.accessProxy.deviceSelector)",
)
@click.option("--label", "labels", multiple=True, help="another node label, KEY=VALUE")
def device_config_command(
    settings_file: Path, thing: str, thing_group: str | None, labels: tuple[str, ...]
) -> None:
    """Print the device agent's teleport.yaml: node name = thing name, dialling out to the
    proxy of gcp.accessProxy. Exit 0 printed, 2 bad settings or arguments."""
    settings = read_fleet_settings(settings_file)
    if settings.gcp is None or settings.gcp.access_proxy is None:
        raise InputError(
            f"{settings_file}: gcp.accessProxy: missing; allowed: a gcp.accessProxy section"
        )
    groups = (thing_group,) if thing_group is not None else ()
    try:
        click.echo(device_config(settings, thing, groups, labels), nl=False)
    except ValueError as error:
        raise InputError(str(error)) from None


@dataclass(frozen=True)
class _Prepared:
    """The validated settings, the one project, the Pub/Sub desired state and clients."""

    settings: FleetSettings
    project: str
    desired: Any
    publisher: Any
    subscriber: Any


def _other_parts(
    prepared: _Prepared, monitoring_endpoint: str | None, ca_endpoint: str | None
) -> tuple[AccessMonitoring | None, CaTopology | None, LedgerAnchors | None]:
    """What the settings add to the Pub/Sub topology: Teleport's monitoring, the CA pool and
    CA, the ledger's anchor bucket (each None when its section is absent)."""
    settings, project = prepared.settings, prepared.project
    return (
        _access_monitoring(settings, project, monitoring_endpoint),
        _ca_topology(settings, project, ca_endpoint),
        _ledger_anchors(settings, project),
    )


def _access_monitoring(
    settings: FleetSettings, project: str, endpoint: str | None
) -> AccessMonitoring | None:
    """With ``gcp.accessProxy``: Teleport's metrics, alert policies and sink (else None)."""
    if settings.gcp is None or settings.gcp.access_proxy is None:
        return None
    try:
        return AccessMonitoring.prepare(project, settings, endpoint)
    except ImportError as error:
        raise InputError(
            f"gcp.accessProxy needs the 'gcp' extra: pip install 'iot-remote-access[gcp]' "
            f"({error.name} is missing)"
        ) from None


def _ca_topology(settings: FleetSettings, project: str, endpoint: str | None) -> CaTopology | None:
    """With ``gcp.certificateAuthority``: the CA pool and root CA (else None)."""
    if settings.gcp is None or settings.gcp.certificate_authority is None:
        return None
    return CaTopology.prepare(project, settings, endpoint)


def _ledger_anchors(settings: FleetSettings, project: str) -> LedgerAnchors | None:
    """With ``ledger.gcp``: the access ledger's anchor bucket (``cli/gcp_ledger.py``)."""
    spec = LedgerAnchors.spec_of(settings)
    if spec is None or settings.gcp is None:
        return None
    return _call(lambda: LedgerAnchors.connect(settings, spec, project), LEDGER_SERVICE)  # type: ignore[no-any-return]


def _prepare(settings_file: Path, project: str | None) -> _Prepared:
    """Validate everything, then make the clients: all input errors come before any call."""
    from iot_remote_access.core.tree import Root

    try:
        from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
    except ImportError as error:
        raise InputError(
            f"the gcp commands need the 'gcp' extra: pip install 'iot-remote-access[gcp]' "
            f"({error.name} is missing)"
        ) from None

    try:
        if project is not None:
            validate_project_id(project, field_name="--project")
    except ValueError as error:
        raise InputError(str(error)) from None
    settings = read_fleet_settings(settings_file)
    if settings.gcp is None:
        raise InputError(
            f"{settings_file}: gcp: missing; allowed: a 'gcp' section with projectNumber "
            "and bridge.serviceAccount (see examples/gcp-settings.yaml)"
        )
    gcp_settings: GcpSettings = settings.gcp
    project = _project(settings_file, gcp_settings, project)
    try:
        desired = GcpPubsubStack(
            Root("gcp"),
            "PubSub",
            project=project,
            settings=gcp_settings,
            commands=settings.commands.enabled,
        ).desired_state()
    except ValueError as error:
        raise InputError(str(error)) from None
    publisher, subscriber = _call(_clients)
    return _Prepared(settings, project, desired, publisher, subscriber)


def _project(settings_file: Path, settings: GcpSettings, project: str | None) -> str:
    """The one project: ``--project`` or ``gcp.projectId``; both given, they must agree."""
    if project is None and settings.project_id is None:
        raise InputError(
            f"{settings_file}: gcp.projectId: missing and no --project; allowed: either one"
        )
    if project is not None and settings.project_id not in (None, project):
        raise InputError(
            f"--project {project!r} differs from gcp.projectId {settings.project_id!r} in "
            f"{settings_file}; allowed: the same project, or only one of them"
        )
    chosen = project or settings.project_id
    assert chosen is not None
    return chosen


def _clients() -> tuple[Any, Any]:
    import google.cloud.pubsub_v1 as pubsub_v1

    return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()


def _plan(desired: Any, publisher: Any, subscriber: Any) -> Any:
    from iot_remote_access.pubsub.plan import plan

    return plan(desired, publisher, subscriber)


def _call(operation: Any, service: str = "Pub/Sub") -> Any:
    """Run a Google Cloud operation, turning its errors into one line (exit 1)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    try:
        return operation()
    except auth_exc.DefaultCredentialsError:
        raise OperationError(
            "no Google Cloud credentials: run 'gcloud auth application-default login', "
            "set GOOGLE_APPLICATION_CREDENTIALS, or PUBSUB_EMULATOR_HOST for the emulator"
        ) from None
    except auth_exc.GoogleAuthError as error:
        raise OperationError(f"Google Cloud authentication failed: {_first_line(error)}") from None
    except gexc.GoogleAPICallError as error:
        where = _resource_of(error)
        raise OperationError(
            f"{service} refused{where}: {_status(error)} {_first_line(error.message or '')}"
        ) from None
    except gexc.RetryError as error:
        raise OperationError(f"{service} unreachable: {_first_line(error)}") from None


def _status(error: Any) -> str:
    status = getattr(error, "grpc_status_code", None)
    return str(status.name) if status is not None else type(error).__name__


def _resource_of(error: Any) -> str:
    for arg in getattr(error, "args", ()):
        text = str(arg)
        if "projects/" in text:
            start = text.index("projects/")
            return " (" + text[start:].split()[0].rstrip(".,;:\"'") + ")"
    return ""


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def _print_plan(result: Any, console: Console) -> None:
    for change in result.changes:
        line = f"{_SYMBOL[change.action]} {change.action} {change.kind} {change.name}"
        if change.note:
            line += f" ({change.note})"
        console.print(line, markup=False, highlight=False)
        for field in change.fields:
            console.print(f"    {field}", markup=False, highlight=False)
    pending = len(result.pending)
    summary = f"{pending} to change, {len(result.changes) - pending} unchanged or skipped"
    if result.blocked:
        summary += f", {len(result.blocked)} blocked (deploy will refuse)"
    console.print(summary, highlight=False)
