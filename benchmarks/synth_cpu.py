"""Synthesis CPU: the reference app against an empty CDK app with one bucket.

Both run as `cdk synth` runs them (`python <app>`, CDK_OUTDIR set), in fresh
processes, side by side. CPU is user + system of every process in the synth's
session (python and the jsii node process), sampled from /proc every 20 ms: the
node process is not always waited for, so the children's times of ``os.times``
miss it. Also checks that no ``ira-*`` temporary folder
is left behind (each process gets its own TMPDIR). Both are measured with
aws-cdk-lib's built-in CloudFormation validation on (the default) and off
(``CDK_VALIDATION=false``, which ``cdk synth --no-validation`` also sets); the
explicitly registered cdk-nag pack and IoT policy guard run either way. Target
(issue 21): reference <= 1.5x the empty app.

    python benchmarks/synth_cpu.py            # 3 paired runs
    python benchmarks/synth_cpu.py --short    # 1 run
"""

from __future__ import annotations

import argparse
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


def synth(command: list[str], *, builtin_validation: bool = True) -> tuple[float, float, list[str]]:
    """Wall, CPU and the ``ira-*`` names left in the process's TMPDIR."""
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as folder:
        temp = Path(folder) / "tmp"
        temp.mkdir()
        env = {**os.environ, "TMPDIR": str(temp), "CDK_OUTDIR": str(Path(folder) / "out")}
        if not builtin_validation:
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
            raise SystemExit(f"{command[-1]}: synth failed ({process.returncode})")
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
    medians: dict[tuple[str, bool], float] = {}
    for builtin in (True, False):
        label = "built-in CloudFormation validation " + ("on" if builtin else "off")
        print(f"{label} (CDK_VALIDATION={'unset' if builtin else 'false'}):")
        pairs = []
        for _ in range(repeat):
            empty = synth([sys.executable, "-c", EMPTY_APP], builtin_validation=builtin)
            reference = synth([sys.executable, "app.py"], builtin_validation=builtin)
            pairs.append((empty, reference))
            print(
                f"  empty app {empty[1]:6.1f} s CPU ({empty[0]:6.1f} s wall); reference app "
                f"{reference[1]:6.1f} s CPU ({reference[0]:6.1f} s wall); left behind: "
                f"{reference[2] or 'nothing'}"
            )
        ratio = statistics.median(ref[1] / empty[1] for empty, ref in pairs)
        print(f"  reference / empty app, CPU: {ratio:.2f}x (target <= 1.5)")
        medians["empty", builtin] = statistics.median(empty[1] for empty, _ in pairs)
        medians["reference", builtin] = statistics.median(ref[1] for _, ref in pairs)
    print(
        "reference without built-in validation / empty app with the defaults, CPU: "
        f"{medians['reference', False] / medians['empty', True]:.2f}x"
    )


if __name__ == "__main__":
    main()
