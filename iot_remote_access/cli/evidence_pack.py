"""`evidence pack`: one folder of compliance evidence for a period (AWS).

Exit 0: the pack was written and every check held. Exit 1: the evidence does not
hold (a broken chain, a missing anchor, a session or rotation the ledger lacks):
one line names the record or anchor, and no pack is left behind. Exit 2: the input
cannot be used (dates, a period longer than the retention, a store that does not
exist or cannot be read, an existing --out).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.errors import CliError, InputError


class EvidenceBroken(CliError):
    """The evidence does not hold (exit 1)."""


@click.command("pack")
@click.option(
    "--from", "start", required=True, help="first day (YYYY-MM-DD, UTC) or time with zone"
)
@click.option(
    "--to", "end", required=True, help="last day, included (YYYY-MM-DD) or time with zone"
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="new folder to write",
)
@click.option("--ledger-table", required=True, help="the AccessLedger's table")
@click.option("--anchor-bucket", required=True, help="the AccessLedger's anchor bucket")
@click.option("--ledger-id", default="access", show_default=True)
@click.option(
    "--inventory-table", help="the CertificateRotation inventory table. Default: registry only"
)
@click.option(
    "--findings-log-group",
    "finding_groups",
    multiple=True,
    help="log group of the security detector (SecurityMonitoring.detector). Repeatable.",
)
@click.option(
    "--device-policy", help="name of the device IoT policy. Default: names with DevicePolicy"
)
@click.option(
    "--operator-policy",
    "operator_policies",
    multiple=True,
    help="customer-managed IAM policy of operators. Repeatable. Default: names with OperatorPolicy",
)
@click.option(
    "--retention-days", default=400, show_default=True, type=int, help="the ledger's retention"
)
@click.option("--anchor-interval-minutes", default=60, show_default=True, type=int)
@click.option(
    "--cloud-sessions/--no-cloud-sessions",
    default=True,
    show_default=True,
    help="cross-check the ledger against the tunnels AWS lists (ListTunnels)",
)
@click.option("--region", help="AWS region. Default: the profile's.")
@click.option("--profile", help="AWS named profile. Default: the default credential chain.")
def pack_command(**options: Any) -> None:
    """Write the evidence pack for a period: inventory, policies, sessions, findings and
    incidents with their NIS2 clocks, purposes, and an HTML report."""
    from iot_remote_access.core.evidence_model import PackInputError, PackVerificationError, Period
    from iot_remote_access.core.evidence_pack import build_pack
    from iot_remote_access.core.ledger import retention_problem

    problem = retention_problem(options["retention_days"])
    if problem is not None:
        raise InputError(f"--retention-days: {problem}")
    if not 5 <= options["anchor_interval_minutes"] <= 1440:
        raise InputError("--anchor-interval-minutes: allowed: 5 to 1440")
    now = datetime.now(UTC)
    try:
        period = Period.parse(
            options["start"], options["end"], retention_days=options["retention_days"], now=now
        )
        if options["out"].exists():
            raise PackInputError(
                "--out", f"{str(options['out'])[-60:]!r} exists; allowed: a new folder"
            )
        inputs = _aws_inputs(options, period, now)
        result = build_pack(inputs, options["out"])
    except PackInputError as error:
        raise InputError(str(error)) from None
    except PackVerificationError as error:
        raise EvidenceBroken(str(error)) from None
    counts, ledger = result.counts, result.summary["ledger"]
    click.echo(
        f"pack written to {result.out}: {counts['assets']} asset(s), {counts['sessions']} "
        f"session(s), {counts['findings']} finding(s), {counts['incidents']} incident(s) "
        f"({counts['overdueClocks']} overdue clock(s)); ledger holds: records "
        f"{ledger['firstSeq']}..{ledger['lastSeq']}, {ledger['anchorsChecked']} anchor(s) checked"
    )


def _aws_inputs(options: dict[str, Any], period: Any, now: datetime) -> Any:
    from iot_remote_access.cli import evidence_pack_aws as aws
    from iot_remote_access.cli.tunnel import _session
    from iot_remote_access.core.evidence_pack import ChainSource, PackInputs

    session = _session(options["region"], options["profile"])
    notes: list[str] = []
    iot = session.client("iot")
    table, bucket, ledger_id = (
        options["ledger_table"],
        options["anchor_bucket"],
        options["ledger_id"],
    )
    anchors = aws.guarded(
        f"anchor bucket {bucket!r}",
        lambda: aws.anchor_window(session.client("s3"), bucket, ledger_id, period),
    )
    first, last = aws.segment_bounds(anchors, period)
    dynamodb = session.client("dynamodb")
    lines = aws.guarded_iter(
        f"ledger table {table!r}", lambda: aws.chain_lines(dynamodb, table, ledger_id, first, last)
    )
    cloud_sessions = {}
    if options["cloud_sessions"]:
        tunneling = session.client("iotsecuretunneling")
        cloud_sessions = aws.guarded(
            "IoT Secure Tunneling (ListTunnels)", lambda: aws.cloud_sessions(tunneling, period)
        )
    else:
        notes.append(
            "the ledger was not cross-checked against the tunnels AWS lists (--no-cloud-sessions)"
        )
    return PackInputs(
        period=period,
        now=now,
        cloud="aws",
        assets=_assets(session, iot, options["inventory_table"], notes),
        chain=ChainSource(lines, anchors, f"table {table}, ledger {ledger_id}"),
        findings=_findings(session, options["finding_groups"], period, notes),
        policies=_policies(session, iot, options),
        cloud_sessions=cloud_sessions,
        anchor_interval_minutes=options["anchor_interval_minutes"],
        notes=notes,
    )


def _assets(session: Any, iot: Any, table_name: str | None, notes: list[str]) -> Any:
    from iot_remote_access.cli import evidence_pack_aws as aws

    if table_name is None:
        notes.append("no --inventory-table: the asset inventory lists the IoT registry only")
        return aws.assets(iot, None, notes)
    return aws.assets(iot, session.resource("dynamodb").Table(table_name), notes)


def _findings(session: Any, groups: tuple[str, ...], period: Any, notes: list[str]) -> Any:
    from iot_remote_access.cli import evidence_pack_aws as aws

    if not groups:
        notes.append(
            "no --findings-log-group: findings are not listed (incidents are, from the ledger)"
        )
        return []
    logs = session.client("logs")
    return (
        finding
        for group in groups
        for finding in aws.guarded_iter(
            f"log group {group!r}", partial(aws.findings, logs, group, period)
        )
    )


def _policies(session: Any, iot: Any, options: dict[str, Any]) -> Any:
    from iot_remote_access.cli import evidence_pack_aws as aws

    documents = aws.guarded(
        "IoT policies (ListPolicies/GetPolicy)",
        lambda: aws.iot_policies(iot, options["device_policy"]),
    )
    iam = session.client("iam")
    return documents + aws.guarded(
        "IAM policies (ListPolicies)",
        lambda: aws.operator_policies(iam, options["operator_policies"]),
    )
