"""``gcp plan|deploy`` with ``gcp.certificateAuthority``: the CA Service pool and root CA,
after the Pub/Sub topology (and Teleport's monitoring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.settings import FleetSettings

_SYMBOL = {"create": "+", "update": "~", "unchanged": "=", "blocked": "!"}
_SERVICE = "CA Service"


@dataclass
class CaTopology:
    """The desired pool and CA of one project, and (made on first use) the SDK client."""

    state: Any
    endpoint: str | None
    _client: Any = field(default=None, repr=False)

    @classmethod
    def prepare(cls, project: str, settings: FleetSettings, endpoint: str | None) -> CaTopology:
        """Build the desired state (no call yet); InputError without the gcp extra."""
        try:
            from iot_remote_access.gcp_ca.desired import desired_state
        except ImportError as error:
            raise InputError(
                "gcp.certificateAuthority needs the 'gcp' extra: pip install "
                f"'iot-remote-access[gcp]' ({error.name} is missing)"
            ) from None
        assert settings.gcp is not None
        state = desired_state(project, settings.gcp, settings.stagger_policy())
        return cls(state=state, endpoint=endpoint)

    def client(self) -> Any:
        if self._client is None:
            from iot_remote_access.gcp_ca.clients import make_client

            self._client = make_client(self.endpoint)
        return self._client

    def plan(self) -> Any:
        from iot_remote_access.gcp_ca.plan import plan

        return plan(self.state, self.client())


def _line(change: Any) -> str:
    line = f"{_SYMBOL[change.action]} {change.action} {change.kind} {change.name}"
    return f"{line} ({change.note})" if change.note else line


def plan_ca(topology: CaTopology, call: Callable[..., Any], console: Console) -> None:
    """Print what deploy would do to the pool and CA."""
    result = call(topology.plan, _SERVICE)
    for change in result.changes:
        console.print(_line(change), markup=False, highlight=False)
        for difference in change.differences:
            console.print(f"    {difference}", markup=False, highlight=False)
    pending = len(result.pending)
    summary = f"ca service: {pending} to change, {len(result.changes) - pending} unchanged"
    if result.blocked:
        summary += f", {len(result.blocked)} blocked (deploy will refuse)"
    console.print(summary, highlight=False)


def ca_plan_or_refuse(topology: CaTopology, call: Callable[..., Any]) -> Any:
    """The pool and CA plan; exit 2 if it is blocked, before ``gcp deploy`` changes anything."""
    result = call(topology.plan, _SERVICE)
    if result.blocked:
        names = ", ".join(f"{c.kind} {c.name} ({c.note})" for c in result.blocked)
        raise InputError(f"nothing deployed to CA Service: {names}")
    return result


def deploy_ca(
    topology: CaTopology, result: Any, call: Callable[..., Any], console: Console
) -> None:
    """Apply ``result`` (from :func:`ca_plan_or_refuse`); a refusal exits 1."""
    from rich.progress import Progress

    from iot_remote_access.gcp_ca.deploy import CaDeployBlocked, CaDeployFailed, deploy

    err = Console(stderr=True)
    try:
        # Creating a CA makes its key and certificate: minutes on the real service.
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("ca service", total=len(result.pending))

            def step(change: Any) -> None:
                bar.update(task, description=f"{change.action} {change.kind} {change.name}")
                bar.advance(task)

            applied = call(lambda: deploy(result, topology.client(), progress=step), _SERVICE)
    except CaDeployBlocked as error:
        raise InputError(f"nothing deployed to CA Service: {error}") from None
    except CaDeployFailed as error:
        raise OperationError(f"CA Service refused to {error}") from None
    for change in applied:
        console.print(_line(change), markup=False, highlight=False)
    created = sum(c.action == "create" for c in applied)
    updated = sum(c.action == "update" for c in applied)
    unchanged = len(result.changes) - len(applied)
    console.print(
        f"ca service: {created} created, {updated} updated, {unchanged} unchanged", highlight=False
    )
