"""`evidence incident ack|report`: record when an incident was acknowledged and when each
NIS2 report was sent. Each is a ledger record (``incident.ack``/``incident.report``) and
an update of the incident's clock item, so the checker stops alarming and the pack
shows the time. Exit 2 for an unknown incident, a report recorded twice, or a final
report before the notification; exit 1 when the ledger cannot be written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from iot_remote_access.cli.errors import InputError, OperationError

_COMMON = [
    click.option(
        "--id",
        "incident",
        required=True,
        help="the incident, e.g. inc-42 (from the alarm or the pack)",
    ),
    click.option("--ledger-table", required=True, help="the AccessLedger's table"),
    click.option("--ledger-id", default="access", show_default=True),
    click.option("--at", "at", help="when (ISO 8601 with zone). Default: now"),
    click.option("--region", help="AWS region. Default: the profile's."),
    click.option("--profile", help="AWS named profile. Default: the default credential chain."),
]


def _common(function: Any) -> Any:
    for option in reversed(_COMMON):
        function = option(function)
    return function


@click.group("incident")
def incident() -> None:
    """Record acknowledgements and NIS2 reports of incidents (the clocks)."""


@incident.command("ack")
@_common
@click.option("--by", required=True, help="who acknowledged (name or role)")
@click.option("--not-significant", is_flag=True, help="judged not significant: no NIS2 report due")
def ack_command(by: str, not_significant: bool, **options: Any) -> None:
    """Record that the incident was acknowledged (and whether it is significant)."""
    data = {"by": by[:120], "significant": not not_significant}
    extra = {"acknowledgedBy": by[:120], "significant": "no" if not_significant else "yes"}
    at = _record(options, "incident.ack", "acknowledgedAt", data, extra, close=not_significant)
    click.echo(f"{options['incident']}: acknowledged at {at} by {by[:120]}")


@incident.command("report")
@_common
@click.option(
    "--kind", required=True, type=click.Choice(["early-warning", "notification", "final"])
)
@click.option("--reference", default="", help="the authority's reference or your ticket")
def report_command(kind: str, reference: str, **options: Any) -> None:
    """Record that a report (early warning, notification, final) was sent."""
    data: dict[str, Any] = {"kind": kind}
    if reference:
        data["reference"] = reference[:200]
    at = _record(
        options, "incident.report", f"sent:{kind}", data, {}, close=kind == "final", kind=kind
    )
    click.echo(f"{options['incident']}: {kind} recorded as sent at {at}")


def _record(
    options: dict[str, Any],
    event: str,
    field: str,
    data: dict[str, Any],
    extra: dict[str, str],
    *,
    close: bool,
    kind: str | None = None,
) -> str:
    from iot_remote_access.cli.evidence_pack_aws import guarded
    from iot_remote_access.cli.tunnel import _session
    from iot_remote_access.core.incident_clock import IncidentError, parse_incident_id, parse_utc, z
    from iot_remote_access.lambdas.incidents.store import IncidentConflict, IncidentStore
    from iot_remote_access.lambdas.ledger.store import LedgerUnavailable, LedgerWriter

    try:
        parse_incident_id(options["incident"])
        at = parse_utc(options["at"], "--at") if options["at"] else datetime.now(UTC)
    except IncidentError as error:
        raise InputError(str(error)) from None
    if at > datetime.now(UTC):
        raise InputError(f"--at: {options['at']!r:.40} is in the future; allowed: a past time")
    session = _session(options["region"], options["profile"])
    client = session.client("dynamodb")
    table, ledger_id, name = options["ledger_table"], options["ledger_id"], options["incident"]
    store = IncidentStore(client, table, ledger_id)
    known = guarded(f"ledger table {table!r}", lambda: store.get(name))
    if known is None:
        raise InputError(f"--id: {name!r} is not an incident of ledger {ledger_id!r} in {table!r}")
    if kind is not None and kind in known.sent:
        raise InputError(
            f"--kind: the {kind} of {name} is already recorded (sent {z(known.sent[kind])})"
        )
    if kind == "final" and "notification" not in known.sent:
        raise InputError(
            f"--kind final: the notification of {name} is not recorded yet; record it first"
        )
    if field == "acknowledgedAt" and known.acknowledged_at is not None:
        raise InputError(f"--id: {name} was already acknowledged at {z(known.acknowledged_at)}")
    try:
        LedgerWriter(client, table, ledger_id).append(
            {"event": event, "incident": name, "at": z(at), **data}
        )
    except LedgerUnavailable as error:
        raise OperationError(
            f"ledger table {table!r}: the record was not written ({error})"
        ) from None
    try:
        guarded(
            f"ledger table {table!r}", lambda: store.set_once(name, field, at, close=close, **extra)
        )
    except IncidentConflict as error:
        raise InputError(f"--id: {error}") from None
    return z(at)
