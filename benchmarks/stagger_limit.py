"""Stagger at the physical limit: 1,000,000 devices issued on one day.

For each window (30, 90, 365 days) one fresh process plans N devices with
``core.stagger.assign_offset`` on the in-process ledger, and checks after *every*
issuance that the busiest day holds at most ``ceil(n / W) + 1`` (the target) —
and how often it holds exactly the optimum ``ceil(n / W)``. Printed per window:

- the busiest day against the optimum and the bound, at N;
- wall and CPU time of the planning, and the process's peak RSS (whole process,
  so the interpreter's ~20 MiB are included); targets <= 5 s and <= 100 MiB;
- ledger operations per issuance: claims (each one conditional write in the
  DynamoDB ledger) and count reads (one GetItem), besides the one ``join``;
- side by side in the same process: the previous scheme (cap ``ceil(1.1 m / W)``)
  and a plain hash of the name, as peak / ideal.

    python benchmarks/stagger_limit.py                    # 1,000,000 devices
    python benchmarks/stagger_limit.py --short            # 50,000 devices
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from iot_remote_access.core.stagger import (  # noqa: E402
    MemoryLedger,
    StaggerPolicy,
    assign_offset,
)

COHORT = "2026-01-05"


@dataclass(frozen=True)
class PreviousPolicy(StaggerPolicy):
    """The scheme before issue 21: 10 % headroom over the even spread."""

    def cap(self, rank: int) -> int:
        return max(1, -(-11 * rank // (10 * self.window_days)))


class CountingLedger(MemoryLedger):
    """Counts the ledger operations that are DynamoDB calls in the signer."""

    claims: int = 0
    reads: int = 0

    def claim(self, cohort: str, offset: int, limit: int) -> bool:
        self.claims += 1
        return super().claim(cohort, offset, limit)

    def loads(self, cohort: str, window_days: int | None = None) -> list[int]:
        self.reads += 1
        return super().loads(cohort, window_days)


def plan(devices: int, window: int) -> dict[str, Any]:
    """Plan ``devices`` and check the bound after each one (runs in a fresh process)."""
    policy = StaggerPolicy(window_days=window)
    ledger = MemoryLedger(window)
    offsets = array("H")  # what a planner keeps: 2 bytes per device
    busiest = at_optimum = 0
    worst_excess = -1
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for n in range(1, devices + 1):
        offset = assign_offset(policy, ledger, COHORT, f"device-{n:07d}")
        offsets.append(offset)
        load = ledger._loads[COHORT][offset]
        busiest = max(busiest, load)
        optimum = -(-n // window)
        worst_excess = max(worst_excess, busiest - optimum)
        at_optimum += busiest == optimum
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    assert len(offsets) == devices == sum(ledger.loads(COHORT))
    return {
        "busiest": busiest,
        "optimum": math.ceil(devices / window),
        "worstExcess": worst_excess,
        "atOptimumShare": at_optimum / devices,
        "wall": wall,
        "cpu": cpu,
        "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def compare(devices: int, window: int) -> dict[str, Any]:
    """Claims per issuance, and the previous scheme and a plain hash, on the same names."""
    figures: dict[str, Any] = {}
    for label, policy in (
        ("balanced", StaggerPolicy(window_days=window)),
        ("previous", PreviousPolicy(window_days=window)),
    ):
        ledger = CountingLedger(window)
        for n in range(1, devices + 1):
            assign_offset(policy, ledger, COHORT, f"device-{n:07d}")
        figures[label] = {
            "peakToIdeal": max(ledger.loads(COHORT)) / (devices / window),
            "claimsPerIssuance": ledger.claims / devices,
            "readsPerIssuance": ledger.reads / devices,
        }
    hashed = [0] * window
    policy = StaggerPolicy(window_days=window)
    for n in range(1, devices + 1):
        hashed[policy.hashed_offset(f"device-{n:07d}")] += 1
    figures["hash"] = {"peakToIdeal": max(hashed) / (devices / window)}
    return figures


def _child(args: argparse.Namespace) -> None:
    result = compare(args.devices, args.window) if args.compare else plan(args.devices, args.window)
    print(json.dumps(result))


def _run_child(devices: int, window: int, *extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--devices", str(devices)]
    command += ["--window", str(window), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--windows", default="30,90,365")
    parser.add_argument("--compare-devices", type=int, default=None, help="default: --devices")
    parser.add_argument("--short", action="store_true", help="50,000 devices")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.short:
        args.devices = 50_000
    compare_devices = args.compare_devices or args.devices
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for window in (int(w) for w in args.windows.split(",")):
        r = _run_child(args.devices, window)
        print(
            f"window {window:3}: {args.devices:,} devices: busiest day {r['busiest']} "
            f"(optimum ceil(N/W) = {r['optimum']}, bound {r['optimum'] + 1}); "
            f"worst over every n <= N: optimum + {r['worstExcess']} (target <= +1), "
            f"at the optimum for {r['atOptimumShare']:.1%} of n"
        )
        print(
            f"            planning: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s (target <= 5 s); "
            f"peak RSS {r['peakRssMiB']:.0f} MiB (target <= 100)"
        )
        c = _run_child(compare_devices, window, "--compare")
        print(
            f"            {compare_devices:,} devices, peak/ideal: balanced "
            f"{c['balanced']['peakToIdeal']:.3f} "
            f"({c['balanced']['claimsPerIssuance']:.2f} claims + "
            f"{c['balanced']['readsPerIssuance']:.2f} reads per issuance), previous "
            f"{c['previous']['peakToIdeal']:.3f} "
            f"({c['previous']['claimsPerIssuance']:.2f} claims/issuance), plain hash "
            f"{c['hash']['peakToIdeal']:.3f}"
        )


if __name__ == "__main__":
    main()
