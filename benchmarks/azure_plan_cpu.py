"""CPU time of one `azure plan` (examples/azure-settings.yaml) against the local ARM stand-in.

    python benchmarks/azure_plan_cpu.py [--runs 7] [--compare DIR]

CPU (user + sys of the command and everything it starts, Node.js included)
rather than wall time, so that a loaded machine does not decide the figure.
``--compare DIR`` also measures another checkout's ``iot_remote_access`` (e.g.
``git archive 76c2e8a iot_remote_access | tar -x -C /tmp/old``, the jsii tree),
interleaved with this one; that one is given ``node`` on PATH, this one is not.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.azure.test_azure_cli_standin import EXAMPLE, azure_env, target
from tests.support.azure_arm_standin import ArmStandIn
from tests.support.azure_helpers import GROUP, SUBSCRIPTION
from tests.support.no_node import env_without_node

HERE = str(Path(__file__).resolve().parents[1])
# Runs the CLI from a given source directory (first argument), as the console script does.
CODE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from iot_remote_access.cli import main; main(sys.argv[1:])"
)


def _cpu_seconds(source: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-c", CODE, source, "azure", "plan", *target(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"azure plan from {source} failed: {result.stderr[-500:]}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", help="another checkout's source directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ArmStandIn(Path(tmp)) as standin:
        standin.add_resource_group(SUBSCRIPTION, GROUP)
        base = azure_env(standin, Path(tmp) / "home")
        runs = {f"{HERE} (no node on PATH)": (HERE, env_without_node(base, Path(tmp) / "bin"))}
        if args.compare:
            runs[f"{args.compare} (node on PATH)"] = (args.compare, base)
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.runs):
            for label, (source, env) in runs.items():
                times[label].append(_cpu_seconds(source, env))
        for label, values in times.items():
            print(
                f"{label}: CPU median {statistics.median(values):.2f} s, "
                f"min {min(values):.2f} s ({len(values)} runs)"
            )


if __name__ == "__main__":
    main()
