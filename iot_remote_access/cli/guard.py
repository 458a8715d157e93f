"""`lint` and `audit`: the wildcard-policy guard for CI pipelines and live accounts."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from iot_remote_access.cli.errors import EXIT_FAILURE, EXIT_OK, InputError
from iot_remote_access.guard.audit import (
    DEFAULT_CONCURRENCY,
    MAX_CONCURRENCY,
    fetch_policies,
    list_policies,
)
from iot_remote_access.guard.report import OutputFormat, render
from iot_remote_access.guard.scan import PolicyResult, scan_documents
from iot_remote_access.guard.sources import GuardInputError, read_policies

format_option = click.option(
    "--format",
    "-f",
    "output_format",
    type=click.Choice([f.value for f in OutputFormat]),
    default=OutputFormat.TABLE.value,
    show_default=True,
    help="table for people; json, or sarif (2.1.0) for code scanning",
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option
def lint(paths: tuple[Path, ...], output_format: str) -> None:
    """Check IoT policies in cdk.out folders, CloudFormation templates (JSON/YAML)
    and policy JSON files. Exit 0 clean, 1 findings, 2 unreadable input."""
    try:
        results = scan_documents(read_policies(list(paths)))
    except GuardInputError as error:
        raise InputError(str(error)) from None
    _finish(results, OutputFormat(output_format))


@click.command()
@click.option("--region", help="AWS region. Default: the profile's.")
@click.option("--profile", help="AWS named profile. Default: the default credential chain.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="GetPolicy requests in flight (throttling is retried adaptively)",
)
@format_option
def audit(region: str | None, profile: str | None, concurrency: int, output_format: str) -> None:
    """Check the default version of every IoT policy in a live account (read-only).
    Exit 0 clean, 1 findings, 2 account unreadable."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.console import Console
    from rich.progress import Progress

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        if session.region_name is None:
            raise InputError("--region: no region given and none configured for the profile")
        # Adaptive: on throttling, back off and limit the client's own request rate.
        config = Config(
            retries={"mode": "adaptive", "max_attempts": 10},
            max_pool_connections=concurrency + 1,
        )
        client = session.client("iot", config=config)
        summaries = list_policies(client)
        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("reading IoT policies", total=len(summaries))
            sources = fetch_policies(
                client, summaries, concurrency=concurrency, done=lambda: bar.advance(task)
            )
        results = scan_documents(sources)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        raise InputError(f"AWS IoT refused the audit: {code}") from None
    except BotoCoreError as error:
        raise InputError(f"cannot read AWS IoT policies: {error}") from None
    except GuardInputError as error:
        raise InputError(str(error)) from None
    _finish(results, OutputFormat(output_format))


def _finish(results: list[PolicyResult], output_format: OutputFormat) -> None:
    # rich's table for people at a terminal; plain text in CI logs, pipes and files.
    render(results, output_format, sys.stdout, terminal=sys.stdout.isatty())
    raise SystemExit(EXIT_FAILURE if any(r.findings for r in results) else EXIT_OK)
