"""``gcp plan|deploy`` with ``gcp.accessProxy``: Teleport's log-based metrics, alert policies
and SIEM sink in Cloud Logging and Cloud Monitoring, after the Pub/Sub topology."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from iot_remote_access.settings import FleetSettings

_SYMBOL = {"create": "+", "update": "~", "unchanged": "="}


@dataclass
class AccessMonitoring:
    """The desired state of one project, and (made on first use) the three SDK clients."""

    project: str
    state: Any
    endpoint: str | None
    _clients: tuple[Any, Any, Any, Any] | None = field(default=None, repr=False)

    @classmethod
    def prepare(
        cls, project: str, settings: FleetSettings, endpoint: str | None
    ) -> AccessMonitoring:
        """Build the desired state (no call yet); ImportError without the gcp extra."""
        from iot_remote_access.gcp_monitoring.desired import desired_state

        assert settings.gcp is not None and settings.gcp.access_proxy is not None
        state = desired_state(project, settings.gcp.access_proxy, settings.tunnel_alarms)
        return cls(project=project, state=state, endpoint=endpoint)

    def clients(self) -> tuple[Any, Any, Any, Any]:
        if self._clients is None:
            from iot_remote_access.gcp_monitoring.clients import make_clients

            self._clients = make_clients(self.endpoint)
        return self._clients

    def plan(self) -> Any:
        from iot_remote_access.gcp_monitoring.plan import plan

        return plan(self.state, *self.clients())

    def deploy(self, result: Any) -> list[Any]:
        from iot_remote_access.gcp_monitoring.deploy import deploy

        return deploy(result, self.project, *self.clients())


def _line(change: Any) -> str:
    return f"{_SYMBOL[change.action]} {change.action} {change.kind} {change.name}"


def print_monitoring_plan(result: Any, console: Console) -> None:
    for change in result.changes:
        console.print(_line(change), markup=False, highlight=False)
        for diff in change.diffs:
            console.print(f"    {diff}", markup=False, highlight=False)
    pending = len(result.pending)
    console.print(
        f"monitoring: {pending} to change, {len(result.changes) - pending} unchanged",
        highlight=False,
    )


def print_monitoring_applied(result: Any, applied: list[Any], console: Console) -> None:
    for change in applied:
        console.print(_line(change), markup=False, highlight=False)
    created = sum(c.action == "create" for c in applied)
    updated = sum(c.action == "update" for c in applied)
    unchanged = len(result.changes) - len(applied)
    console.print(
        f"monitoring: {created} created, {updated} updated, {unchanged} unchanged", highlight=False
    )
    if any(c.kind == "log sink" and c.action == "create" for c in applied):
        console.print(
            "note: grant the sink's writer identity access to its destination "
            "(docs/gcp-access.md, SIEM export)",
            highlight=False,
        )


def device_config(
    settings: FleetSettings, thing: str, groups: tuple[str, ...], labels: tuple[str, ...]
) -> str:
    """The device agent's teleport.yaml as text; InputError-ready ValueError on a bad value."""
    import yaml

    from iot_remote_access.core.teleport_access import THING_GROUP_LABEL, device_agent_config
    from iot_remote_access.core.tunnel_rules import validate_thing, validate_thing_group

    assert settings.gcp is not None and settings.gcp.access_proxy is not None
    try:
        name = validate_thing(thing, pattern=settings.thing_name_pattern)
    except ValueError as error:
        raise ValueError(f"--thing: {getattr(error, 'problem', error)}") from None
    chosen: dict[str, str] = {}
    for group in groups:
        try:
            chosen[THING_GROUP_LABEL] = validate_thing_group(group)
        except ValueError as error:
            raise ValueError(f"--thing-group: {getattr(error, 'problem', error)}") from None
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--label: {item[:60]!r} is not KEY=VALUE")
        chosen[key] = value
    config = device_agent_config(name, settings.gcp.access_proxy.cluster_name, chosen)
    return yaml.safe_dump(config, sort_keys=False)
