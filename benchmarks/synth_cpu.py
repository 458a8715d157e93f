"""Synthesis CPU: the reference app against an empty CDK app with one bucket.

Both run as `cdk synth` runs them (`python <app>`, CDK_OUTDIR set, cdk.json's
context passed in CDK_CONTEXT_JSON as the CLI passes it, so the reference app is
the one `cdk synth` builds, certificates on), in fresh processes, side by side. CPU
is user + system of every process in the synth's session (python and the jsii
node process), sampled from /proc every 20 ms: the node process is not always
waited for, so the children's times of ``os.times`` miss it. Also checks that no
``ira-*`` temporary folder is left behind (each process gets its own TMPDIR).

Each round synthesizes four apps: the empty app with aws-cdk-lib's defaults
(built-in CloudFormation validation on) and with ``CDK_VALIDATION=false`` (what
``cdk synth --no-validation`` sets); the reference app with cdk.json as shipped
(validation on) and with the library's documented setting
``iot-remote-access:builtinCloudFormationValidation: false``. cdk-nag's pack and the
IoT policy guard run in every reference synth. Target (issue 21): reference <=
1.5x the empty app.

    python benchmarks/synth_cpu.py            # 3 rounds, medians
    python benchmarks/synth_cpu.py --short    # 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EMPTY_APP = """
import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
app = cdk.App()
stack = cdk.Stack(app, "Empty")
s3.Bucket(stack, "Bucket")
app.synth()
"""


#: What the cdk CLI adds to cdk.json's context by default (toolkit-lib contextFromSettings).
CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
}
SETTING = "iot-remote-access:builtinCloudFormationValidation"  # see stacks/builtin_validation.py
CASES = {
    # label: (app, how built-in validation is turned off; None: it is on)
    "empty, defaults": ("empty", None),
    "empty, CDK_VALIDATION=false": ("empty", "env"),
    "reference, cdk.json as shipped": ("reference", None),
    f"reference, {SETTING}=false": ("reference", "setting"),
}


def synth(app: str, *, off: str | None) -> tuple[float, float, list[str]]:
    """Wall, CPU and the ``ira-*`` names left in the process's TMPDIR."""
    command = (
        [sys.executable, "app.py"] if app == "reference" else [sys.executable, "-c", EMPTY_APP]
    )
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context.update(CLI_CONTEXT)
    if off == "setting":
        context[SETTING] = False
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as folder:
        temp = Path(folder) / "tmp"
        temp.mkdir()
        env = {
            **os.environ,
            "TMPDIR": str(temp),
            "CDK_OUTDIR": str(Path(folder) / "out"),
            "CDK_CONTEXT_JSON": json.dumps(context),
        }
        env.pop("CDK_VALIDATION", None)
        if off == "env":
            env["CDK_VALIDATION"] = "false"  # what `cdk synth --no-validation` passes on
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        ticks: dict[int, int] = {}
        while process.poll() is None:
            ticks.update(_session_ticks(process.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"{app} app: synth failed ({process.returncode})")
        cpu = sum(ticks.values()) / os.sysconf("SC_CLK_TCK")
        return wall, cpu, sorted(p.name for p in temp.iterdir() if p.name.startswith("ira-"))


def _session_ticks(session: int) -> dict[int, int]:
    """utime + stime (clock ticks) of every process whose session id is ``session``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # After "pid (comm)": state ppid pgrp session ... utime(12th) stime(13th).
        if int(fields[3]) == session:
            found[int(entry.name)] = int(fields[11]) + int(fields[12])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    repeat = 1 if args.short else args.repeat
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    cpu: dict[str, list[float]] = {label: [] for label in CASES}
    for round_ in range(repeat):
        for label, (app, off) in CASES.items():
            wall, seconds, left = synth(app, off=off)
            cpu[label].append(seconds)
            print(
                f"  round {round_ + 1}: {label:<75} {seconds:6.1f} s CPU ({wall:6.1f} s wall)"
                + (f"; left behind: {left}" if app == "reference" else "")
            )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    labels = list(CASES)

    def ratio(reference: str, empty: str) -> str:
        # Median of the per-round ratios: each pair ran back to back.
        pairs = zip(cpu[reference], cpu[empty], strict=True)
        value = statistics.median(r / e for r, e in pairs)
        return f"{value:.2f}x (target <= 1.5)"

    print("CPU, median of paired ratios:")
    print(f"  reference as shipped / empty with defaults:       {ratio(labels[2], labels[0])}")
    print(f"  reference with the setting / empty with defaults: {ratio(labels[3], labels[0])}")
    print(f"  both with built-in validation off:                {ratio(labels[3], labels[1])}")
    for label in labels:
        print(f"  median CPU, {label}: {statistics.median(cpu[label]):.1f} s")


if __name__ == "__main__":
    main()
