"""`reach`: can a device reach another device's topics? Exit 1 with witnesses if so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from iot_remote_access.cli.errors import EXIT_FAILURE, EXIT_OK, InputError
from iot_remote_access.core.reach import DEFAULT_ATTACKER, Operation, Reach, ReachReport, Severity
from iot_remote_access.core.topics import TopicModelError, validate_thing_name
from iot_remote_access.guard.reach_scan import reach_paths
from iot_remote_access.guard.sources import GuardInputError

#: One SARIF rule per kind of reach; LOW findings are notes, not errors.
RULES = {
    (Operation.CONNECT, Severity.HIGH): ("REACH001", "connect-as-another-device"),
    (Operation.PUBLISH, Severity.HIGH): ("REACH002", "publish-to-another-device"),
    (Operation.SUBSCRIBE, Severity.HIGH): ("REACH003", "subscribe-to-another-device"),
    (Operation.RECEIVE, Severity.HIGH): ("REACH004", "receive-another-device"),
}
OWN_WILDCARD = ("REACH005", "wildcard-inside-own-namespace")
INFORMATION_URI = "https://iot-remote-access.github.io/iot-remote-access/guard/"


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--diff",
    "base",
    type=click.Path(path_type=Path),
    help="the same documents before a change: report only the reach the change adds",
)
@click.option(
    "--format",
    "-f",
    "output_format",
    type=click.Choice(["table", "json", "sarif"]),
    default="table",
    show_default=True,
)
@click.option(
    "--attacker", default=DEFAULT_ATTACKER, show_default=True, help="the device's name in witnesses"
)
@click.option(
    "--live",
    is_flag=True,
    help="PATHS are IoT policy names in the account: confirm each witness with TestAuthorization",
)
@click.option("--principal", help="with --live: the certificate ARN to test as")
@click.option("--region", help="with --live: AWS region. Default: the profile's.")
@click.option("--profile", help="with --live: AWS named profile.")
def reach(
    paths: tuple[Path, ...],
    base: Path | None,
    output_format: str,
    attacker: str,
    live: bool,
    principal: str | None,
    region: str | None,
    profile: str | None,
) -> None:
    """Prove no device reaches another's topics: IoT policies, templates, cdk.out, mosquitto
    ACLs. Exit 0 none, 1 reach found (with witnesses), 2 unreadable input."""
    try:
        validate_thing_name(attacker, field_name="--attacker")
        if live:
            reports = _live(paths, principal, attacker, region, profile)
        else:
            reports = list(reach_paths(list(paths), attacker=attacker))
        before = list(reach_paths([base], attacker=attacker)) if base else None
    except (GuardInputError, TopicModelError) as error:
        raise InputError(str(error)) from None
    if before is not None:
        reports = added_reach(reports, before)
    click.echo(render(reports, output_format))
    raise SystemExit(EXIT_FAILURE if any(r.lateral for r in reports) else EXIT_OK)


def _live(
    names: tuple[Path, ...],
    principal: str | None,
    attacker: str,
    region: str | None,
    profile: str | None,
) -> list[ReachReport]:
    """Each named policy from the account, its witnesses asked of AWS IoT (read-only)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from iot_remote_access.guard.reach_live import LiveReachError, arn_prefix_of, live_report

    if not principal:
        raise InputError("--principal: required with --live; allowed: a certificate ARN")
    try:
        arn_prefix_of(principal)
        session = boto3.Session(profile_name=profile, region_name=region)
        iot = session.client("iot", config=_adaptive())
        return [
            live_report(iot, str(name), principal=principal, client_id=attacker) for name in names
        ]
    except LiveReachError as error:
        raise InputError(str(error)) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        raise InputError(f"AWS IoT refused the live check: {code}") from None
    except BotoCoreError as error:
        raise InputError(f"cannot reach AWS IoT: {error}") from None


def _adaptive() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 10})


def _key(report: ReachReport) -> str:
    """Documents are matched across versions by file name and resource name."""
    file, _, name = (
        report.source.rpartition(":") if ":" in report.source else (report.source, "", "")
    )
    return f"{Path(file).name}:{name}"


def added_reach(after: list[ReachReport], before: list[ReachReport]) -> list[ReachReport]:
    """The HIGH findings in ``after`` whose (document, operation) ``before`` did not have."""
    had = {(_key(r), f.operation) for r in before for f in r.lateral}
    return [
        ReachReport(
            r.source,
            tuple(f for f in r.lateral if (_key(r), f.operation) not in had),
            r.notes,
        )
        for r in after
    ]


def render(reports: list[ReachReport], output_format: str) -> str:
    if output_format == "json":
        return json.dumps([_report_json(r) for r in reports], indent=2)
    if output_format == "sarif":
        return json.dumps(sarif(reports), indent=2)
    lines = []
    for report in reports:
        if not report.findings:
            lines.append(f"{report.source}: no device reaches another's topics")
        for found in report.findings:
            note = f" [{found.note}]" if found.note else ""
            lines.append(f"{report.source}: {found.severity.upper()} {found.describe()}{note}")
        lines.extend(f"{report.source}: note: {note}" for note in report.notes)
    return "\n".join(lines)


def _finding_json(found: Reach) -> dict[str, Any]:
    return {
        "operation": found.operation.value,
        "severity": found.severity.value,
        "witness": found.witness,
        "victim": found.victim,
        "victimTopic": found.victim_topic,
        "clientId": found.client_id,
        "description": found.describe(),
        "note": found.note,
    }


def _report_json(report: ReachReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "findings": [_finding_json(f) for f in report.findings],
        "notes": list(report.notes),
    }


def sarif(reports: list[ReachReport]) -> dict[str, Any]:
    rules = [*RULES.values(), OWN_WILDCARD]
    results = []
    for report in reports:
        file, _, name = report.source.rpartition(":")
        for found in report.findings:
            rule_id, _ = RULES.get((found.operation, found.severity), OWN_WILDCARD)
            results.append(
                {
                    "ruleId": rule_id,
                    "level": "error" if found.severity is Severity.HIGH else "note",
                    "message": {"text": found.describe()},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {"uri": file or report.source}
                            },
                            "logicalLocations": [{"name": name or report.source}],
                        }
                    ],
                    "properties": _finding_json(found),
                }
            )
    driver = {
        "name": "iot-remote-access reach",
        "informationUri": INFORMATION_URI,
        "rules": [
            {"id": rule_id, "name": name, "shortDescription": {"text": name.replace("-", " ")}}
            for rule_id, name in rules
        ],
    }
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }
