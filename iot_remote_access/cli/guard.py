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
from iot_remote_access.guard.baseline import BaselineError, read_baseline, write_baseline
from iot_remote_access.guard.report import OutputFormat, render
from iot_remote_access.guard.review import FailOn, Reviewed, Status, failing, review
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
@click.option(
    "--baseline",
    "baseline_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fail only on findings not in this file (written by --write-baseline).",
)
@click.option(
    "--write-baseline",
    "write_baseline_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every finding not acknowledged in the app to this file, and exit 0.",
)
@click.option(
    "--fail-on",
    type=click.Choice([f.value for f in FailOn]),
    default=FailOn.MEDIUM.value,
    show_default=True,
    help="Least severe open finding that fails the run (none: report only).",
)
@click.option(
    "--sarif-output",
    "sarif_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the SARIF report to this file (for code scanning uploads).",
)
@click.option(
    "--skip-unrecognized",
    is_flag=True,
    help="Pass over JSON/YAML files that are neither a template nor a policy.",
)
def lint(
    paths: tuple[Path, ...],
    output_format: str,
    baseline_file: Path | None,
    write_baseline_file: Path | None,
    fail_on: str,
    sarif_file: Path | None,
    skip_unrecognized: bool,
) -> None:
    """Check IoT policies in cdk.out folders, CloudFormation templates (JSON/YAML)
    and policy JSON files. Exit 0 clean, 1 findings, 2 unreadable input.

    Findings acknowledged in the CDK app (cdk.Validations acknowledgements, cdk-nag
    suppressions) and findings in the --baseline are reported but do not fail."""
    if baseline_file is not None and write_baseline_file is not None:
        raise InputError(
            "--write-baseline: given with --baseline; allowed: one of them "
            "(--write-baseline records every current finding)"
        )
    try:
        baseline = read_baseline(baseline_file) if baseline_file is not None else None
        results = scan_documents(read_policies(list(paths), skip_unrecognized=skip_unrecognized))
    except BaselineError as error:
        raise InputError(f"--baseline: {error}") from None
    except GuardInputError as error:
        raise InputError(str(error)) from None
    reviewed = review(results, baseline)
    if write_baseline_file is not None:
        _write_baseline(write_baseline_file, reviewed)
    if sarif_file is not None:
        _write_sarif(sarif_file, results, reviewed, baseline_used=baseline is not None)
    threshold = FailOn.NONE if write_baseline_file is not None else FailOn(fail_on)
    _finish(results, OutputFormat(output_format), reviewed, threshold, baseline is not None)


def _write_baseline(path: Path, reviewed: list[Reviewed]) -> None:
    entries = [r.baseline_entry() for r in reviewed if r.status is not Status.ACKNOWLEDGED]
    try:
        write_baseline(path, entries)
    except BaselineError as error:
        raise InputError(f"--write-baseline: {error}") from None
    click.echo(f"wrote {len(set(entries))} findings to the baseline {path}", err=True)


def _write_sarif(
    path: Path, results: list[PolicyResult], reviewed: list[Reviewed], *, baseline_used: bool
) -> None:
    try:
        with path.open("w", encoding="utf-8") as out:
            render(
                results,
                OutputFormat.SARIF,
                out,
                terminal=False,
                reviewed=reviewed,
                baseline_used=baseline_used,
            )
    except OSError as error:
        raise InputError(f"--sarif-output: cannot write {path} ({error.strerror})") from None


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


def _finish(
    results: list[PolicyResult],
    output_format: OutputFormat,
    reviewed: list[Reviewed] | None = None,
    fail_on: FailOn = FailOn.MEDIUM,
    baseline_used: bool = False,
) -> None:
    reviewed = review(results) if reviewed is None else reviewed
    # rich's table for people at a terminal; plain text in CI logs, pipes and files.
    render(
        results,
        output_format,
        sys.stdout,
        terminal=sys.stdout.isatty(),
        reviewed=reviewed,
        baseline_used=baseline_used,
    )
    raise SystemExit(EXIT_FAILURE if failing(reviewed, fail_on) else EXIT_OK)
