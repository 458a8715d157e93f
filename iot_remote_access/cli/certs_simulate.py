"""`certs simulate`: one day's batch of certificates, without and with staggered validity.

With ``--settings FILE`` the simulation is the deployment's: the stagger policy of its
``certificates`` section, for every cloud the file deploys rotation to, each with the
limit its issuer puts on a certificate's lifetime (AWS Private CA: none below the
policy's; GCP: the CA pool's maximum lifetime; Azure: the enrollment group's CA, which
this library signs with). A limit under the policy's longest validity would pile the cut
certificates onto one day: the histogram shows it (the settings refuse it for GCP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from iot_remote_access.cli.errors import InputError, read_fleet_settings
from iot_remote_access.core.stagger import (
    MAX_VALIDITY_DAYS,
    MAX_WINDOW_DAYS,
    SimulationResult,
    StaggerPolicy,
    simulate,
)

MAX_SIMULATED_DEVICES = 10_000_000
DEFAULT_WINDOW_DAYS = 90
DEFAULT_BASE_DAYS = 365


@dataclass(frozen=True)
class CloudIssuer:
    """Where one cloud's device certificates come from, and the lifetime it allows."""

    cloud: str
    issuer: str
    #: The longest validity the issuer grants, in days; None: whatever the policy asks.
    cap_days: int | None = None

    def label(self) -> str:
        cap = "" if self.cap_days is None else f", at most {self.cap_days} days"
        return f"{self.cloud}: {self.issuer}{cap}"


def _console() -> Console:
    return Console(soft_wrap=True, highlight=False)


@click.command("simulate")
@click.option("--devices", type=int, required=True, help="Certificates issued on one day.")
@click.option(
    "--same-day",
    is_flag=True,
    default=True,
    help="All issued on the same day (the case that storms).",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Simulate the deployment's policy, per cloud it rotates on (JSON or YAML).",
)
@click.option("--window-days", type=int, help=f"Stagger window. Default: {DEFAULT_WINDOW_DAYS}.")
@click.option("--base-days", type=int, help=f"Base validity. Default: {DEFAULT_BASE_DAYS}.")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the histograms into a PNG, one row per cloud (needs the 'plot' extra).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def simulate_command(
    devices: int,
    same_day: bool,
    settings_file: Path | None,
    window_days: int | None,
    base_days: int | None,
    plot_file: Path | None,
    output_format: str,
) -> None:
    """Expiry histogram of one day's batch without and with staggering."""
    if not 1 <= devices <= MAX_SIMULATED_DEVICES:
        raise InputError(f"--devices: {devices}; allowed: 1..{MAX_SIMULATED_DEVICES}")
    if settings_file is not None:
        for flag, value in (("--window-days", window_days), ("--base-days", base_days)):
            if value is not None:
                raise InputError(
                    f"{flag}: {value}; allowed: not with --settings "
                    "(the settings' certificates section sets it)"
                )
        policy, issuers = deployment_issuers(settings_file)
    else:
        policy = _policy_from_flags(window_days, base_days)
        issuers = ()
    result = _simulate_with_progress(devices, policy)
    if plot_file is not None:
        _plot(result, issuers, plot_file)
    if output_format == "json":
        report = _simulation_json(result)
        if issuers:
            report["clouds"] = {issuer.cloud: _cloud_json(result, issuer) for issuer in issuers}
        click.echo(json.dumps(report, indent=2))
        return
    _simulation_table(result, issuers)


def _policy_from_flags(window_days: int | None, base_days: int | None) -> StaggerPolicy:
    window = DEFAULT_WINDOW_DAYS if window_days is None else window_days
    base = DEFAULT_BASE_DAYS if base_days is None else base_days
    if not 1 <= window <= MAX_WINDOW_DAYS:
        raise InputError(f"--window-days: {window}; allowed: 1..{MAX_WINDOW_DAYS}")
    if not base >= 1 or base + window - 1 > MAX_VALIDITY_DAYS:
        raise InputError(
            f"--base-days: {base}; allowed: 1..{MAX_VALIDITY_DAYS - window + 1} "
            f"with a {window}-day window"
        )
    return StaggerPolicy(base, window)


def deployment_issuers(settings_file: Path) -> tuple[StaggerPolicy, tuple[CloudIssuer, ...]]:
    """The settings' stagger policy and each cloud's issuer it rotates certificates with."""

    settings = read_fleet_settings(settings_file)
    policy = settings.stagger_policy()
    issuers = []
    if settings.certificates is not None:
        issuers.append(CloudIssuer("aws", "AWS Private CA (certificate rotation)"))
    authority = None if settings.gcp is None else settings.gcp.certificate_authority
    if authority is not None:
        longest = policy.base_days + policy.window_days - 1
        cap = authority.certificate_lifetime_days(longest)
        issuers.append(CloudIssuer("gcp", f"CA Service pool {authority.pool!r}", cap))
    azure = settings.azure
    if azure and azure.ca_certificate is not None and settings.certificates is not None:
        issuers.append(CloudIssuer("azure", "the DPS enrollment group's CA"))
    if not issuers:
        raise InputError(
            f"--settings: {str(settings_file)[:120]} rotates certificates on no cloud; allowed: "
            "a certificates section (AWS, Azure) or gcp.certificateAuthority (GCP)"
        )
    return policy, tuple(issuers)


def capped(days: Mapping[int, int], cap_days: int | None) -> dict[int, int]:
    """Certificates per validity day once the issuer cuts every lifetime at ``cap_days``."""
    if cap_days is None:
        return dict(days)
    counts: dict[int, int] = {}
    for day, count in days.items():
        kept = min(day, cap_days)
        counts[kept] = counts.get(kept, 0) + count
    return counts


def _simulate_with_progress(devices: int, policy: StaggerPolicy) -> SimulationResult:
    """``simulate`` with a progress bar on stderr when it is a terminal (none in CI logs)."""
    err = Console(stderr=True)
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("simulating", total=devices)
        return simulate(devices, policy, progress=lambda done: bar.update(task, completed=done))


def _rows(result: SimulationResult) -> list[tuple[str, dict[int, int]]]:
    return [
        ("no stagger", result.unstaggered),
        ("plain hash", result.hashed),
        ("staggered", result.staggered),
    ]


def _scheme_json(result: SimulationResult, days: Mapping[int, int]) -> dict[str, Any]:
    peak = max(days.values())
    return {
        "peak": peak,
        "peakToIdeal": round(peak / result.ideal, 3),
        "withinBound": peak <= result.bound,
        "perValidityDay": {str(d): n for d, n in sorted(days.items())},
    }


def _simulation_json(result: SimulationResult) -> dict[str, Any]:
    return {
        "devices": result.devices,
        "baseDays": result.policy.base_days,
        "windowDays": result.policy.window_days,
        "idealPeak": round(result.ideal, 3),
        "peakBound": result.bound,
        "schemes": {name: _scheme_json(result, days) for name, days in _rows(result)},
    }


def _cloud_json(result: SimulationResult, issuer: CloudIssuer) -> dict[str, Any]:
    return {
        "issuer": issuer.issuer,
        "maximumLifetimeDays": issuer.cap_days,
        "staggered": _scheme_json(result, capped(result.staggered, issuer.cap_days)),
    }


def _simulation_table(result: SimulationResult, issuers: tuple[CloudIssuer, ...]) -> None:
    console = _console()
    table = Table(
        title=f"{result.devices} certificates issued on one day: "
        f"ideal {result.ideal:.1f} per day, bound {result.bound}"
    )
    for column in ("scheme", "days used", "busiest day", "ideal", "peak/ideal", "bound"):
        table.add_column(column, justify="left" if column == "scheme" else "right")
    rows = _rows(result) + [
        (f"staggered on {issuer.cloud}", capped(result.staggered, issuer.cap_days))
        for issuer in issuers
    ]
    for name, days in rows:
        peak = max(days.values())
        table.add_row(
            name,
            str(len(days)),
            str(peak),
            f"{result.ideal:.1f}",
            f"{peak / result.ideal:.2f}",
            "ok" if peak <= result.bound else "exceeded",
        )
    console.print(table)
    for issuer in issuers:
        console.print(issuer.label())
    for name, days in (
        ("without staggering", result.unstaggered),
        ("with staggering", result.staggered),
    ):
        _weekly_histogram(console, name, days, result.policy)


def _weekly_histogram(
    console: Console, name: str, days: Mapping[int, int], policy: StaggerPolicy
) -> None:
    console.print(
        f"\nexpiry histogram {name} (certificates per week after day {policy.base_days}):"
    )
    weekly: dict[int, int] = {}
    for day, count in days.items():
        week = (day - policy.base_days) // 7
        weekly[week] = weekly.get(week, 0) + count
    top = max(weekly.values())
    for week in range((policy.window_days + 6) // 7):
        count = weekly.get(week, 0)
        bar = "#" * round(40 * count / top)
        console.print(f"  week {week + 1:>2} {count:>8}  {bar}")


def _plot(result: SimulationResult, issuers: tuple[CloudIssuer, ...], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "--plot: matplotlib is not installed; "
            "install it with: pip install 'iot-remote-access[plot]'"
        ) from None
    policy = result.policy
    days = list(range(policy.base_days - 2, policy.base_days + policy.window_days + 2))
    panels = [("without staggering", result.unstaggered)]
    if issuers:
        panels += [
            (issuer.label(), capped(result.staggered, issuer.cap_days)) for issuer in issuers
        ]
    else:
        panels.append(("with staggering", result.staggered))
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), sharex=True)
    for axis, (title, counts) in zip(axes, panels, strict=True):
        axis.bar(days, [counts.get(d, 0) for d in days], width=1.0)
        axis.axhline(
            result.ideal, linestyle="--", color="grey", label=f"ideal {result.ideal:.1f}/day"
        )
        axis.set_title(f"{result.devices} certificates issued on one day, {title}")
        axis.set_ylabel("certificates expiring")
        axis.legend()
    axes[-1].set_xlabel("validity (days after issuance)")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise InputError(f"--plot: cannot write {path} ({error.strerror})") from None
    finally:
        plt.close(figure)
