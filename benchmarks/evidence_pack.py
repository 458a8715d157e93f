"""`evidence pack` build time and peak memory, and `evidence verify` throughput.

Generates 90 days of a fleet's ledger (default: 100,000 devices, 1,000,000 records:
remote sessions opened and closed, refused requests, certificate rotations, incidents
with acknowledgements, reports and overdue alarms; an anchor every hour), an inventory
of every device and the period's security findings, then builds the pack in a fresh
process (so its peak RSS is the pack's own) and runs the real console script's
`evidence verify` on the pack's copy of the chain.

    python benchmarks/evidence_pack.py            # 100,000 devices, 1,000,000 records
    python benchmarks/evidence_pack.py --short    # 10,000 devices, 100,000 records
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from iot_remote_access.core.incident_clock import open_record  # noqa: E402
from iot_remote_access.core.ledger import Record, anchor_of, next_record  # noqa: E402

START = datetime(2026, 8, 1, tzinfo=UTC)
DAYS = 90
OPERATORS = 50
#: Sessions open at one time (the fold holds only these).
CONCURRENT = 16
OPERATOR_ARN = "arn:aws:sts::123456789012:assumed-role/Operator/"


def _events(
    records: int, devices: int, seed: int = 7
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(ledger data, side facts) in time order; side facts feed the inventory and findings."""
    rng = random.Random(seed)
    open_now: deque[tuple[str, str, str]] = deque()
    incidents: deque[tuple[str, int]] = deque()
    emitted = 0
    sessions = 0
    while emitted < records:
        roll = rng.random()
        if roll < 0.85:
            if len(open_now) >= CONCURRENT or (open_now and rng.random() < 0.5):
                tunnel, thing, operator = open_now.popleft()
                yield (
                    {
                        "event": "tunnel.close",
                        "decision": "closed",
                        "tunnelId": tunnel,
                        "thing": thing,
                        "closedBy": operator,
                    },
                    {},
                )
            else:
                sessions += 1
                tunnel, thing = f"tun-{sessions:08d}", f"dev-{rng.randrange(devices):06d}"
                operator = f"{OPERATOR_ARN}op{rng.randrange(OPERATORS):02d}"
                open_now.append((tunnel, thing, operator))
                yield (
                    {
                        "event": "tunnel.open",
                        "decision": "opened",
                        "requester": operator,
                        "thing": thing,
                        "service": rng.choice(("SSH", "VNC", "HTTP")),
                        "minutes": 30,
                        "reason": f"ticket OPS-{rng.randrange(20_000)}: sensor check",
                        "tunnelId": tunnel,
                    },
                    {},
                )
        elif roll < 0.90:
            yield (
                {
                    "event": "tunnel.open",
                    "decision": "refused",
                    "requester": "arn:aws:sts::123456789012:assumed-role/Operator/op99",
                    "thing": f"dev-{rng.randrange(devices):06d}",
                    "service": "SSH",
                    "reason": "look around",
                    "status": 403,
                },
                {},
            )
        elif roll < 0.99:
            thing = f"dev-{rng.randrange(devices):06d}"
            yield (
                {
                    "event": "cert.rotate",
                    "thing": thing,
                    "certificateId": f"cert-{emitted:08d}",
                    "serial": f"{emitted:x}",
                },
                {"rotated": thing},
            )
        elif incidents and roll < 0.995:
            incident, step = incidents.popleft()
            kind = ("incident.ack", "incident.report")[min(step, 1)]
            data = (
                {"event": kind, "incident": incident, "by": "on-call"}
                if step == 0
                else {"event": kind, "incident": incident, "kind": "early-warning"}
            )
            if step == 0:
                incidents.append((incident, 1))
            yield data, {}
        else:
            yield {"event": "incident.open", "_open": True}, {"finding": True}
        emitted += 1


def generate(records: int, devices: int, folder: Path) -> dict[str, Any]:
    """chain.jsonl, anchors.jsonl (hourly), rotated.jsonl and findings.jsonl in ``folder``."""
    step = timedelta(days=DAYS) / records
    head: Record | None = None
    next_anchor = START + timedelta(hours=1)
    started = time.perf_counter()
    rng = random.Random(11)
    with (
        (folder / "chain.jsonl").open("wb") as chain,
        (folder / "anchors.jsonl").open("wb") as anchors,
        (folder / "rotated.jsonl").open("w") as rotated,
        (folder / "findings.jsonl").open("w") as findings,
    ):
        for index, (data, side) in enumerate(_events(records, devices)):
            moment = START + step * index
            while head is not None and moment >= next_anchor:
                anchors.write(anchor_of(head, next_anchor).line() + b"\n")
                next_anchor += timedelta(hours=1)
            if data.pop("_open", False):
                thing = f"dev-{rng.randrange(devices):06d}"
                data = open_record(
                    detection="unexpected-subscription",
                    thing=thing,
                    summary=f"{thing} subscribed outside its topics",
                    detected_at=moment,
                    finding_id=str(index),
                )
                findings.write(
                    json.dumps({"at": moment.isoformat(), "thing": thing, "severity": "high"})
                    + "\n"
                )
            elif index % 200 == 0:
                findings.write(
                    json.dumps(
                        {
                            "at": moment.isoformat(),
                            "thing": f"dev-{rng.randrange(devices):06d}",
                            "severity": "medium",
                        }
                    )
                    + "\n"
                )
            head = next_record(head, data, moment)
            chain.write(head.line() + b"\n")
            if "rotated" in side:
                rotated.write(json.dumps([side["rotated"], head.time]) + "\n")
        end = START + timedelta(days=DAYS)
        while head is not None and next_anchor <= end + timedelta(hours=1):
            anchors.write(anchor_of(head, next_anchor).line() + b"\n")
            next_anchor += timedelta(hours=1)
    return {
        "seconds": time.perf_counter() - started,
        "bytes": (folder / "chain.jsonl").stat().st_size,
    }


def build_in_child(folder: Path, devices: int) -> None:
    """Run in a fresh process: build the pack from the generated files; print the figures."""
    from iot_remote_access.core.evidence_model import Asset, Certificate, Period, SecurityFinding
    from iot_remote_access.core.evidence_pack import ChainSource, PackInputs, build_pack
    from iot_remote_access.core.ledger import bounded_lines, read_anchors

    rotations: dict[str, datetime] = {}
    with (folder / "rotated.jsonl").open() as stream:
        for line in stream:
            thing, at = json.loads(line)
            rotations[thing] = datetime.fromisoformat(at)

    def assets() -> Iterator[Asset]:
        for n in range(devices):
            thing = f"dev-{n:06d}"
            expiry = START + timedelta(days=30 + n % 365, hours=n % 24)
            yield Asset(
                thing,
                (Certificate(f"c-{n}", f"{n:x}", expiry, "ACTIVE"),),
                START + timedelta(days=DAYS - 1),
                {"owner": f"plant-{n % 40}"},
                "sensor",
                "IDLE",
                last_rotation_at=rotations.get(thing),
            )

    def findings() -> Iterator[SecurityFinding]:
        with (folder / "findings.jsonl").open() as stream:
            for line in stream:
                row = json.loads(line)
                high = row["severity"] == "high"
                yield SecurityFinding(
                    datetime.fromisoformat(row["at"]),
                    "unexpected-subscription" if high else "authorization-failure",
                    row["severity"],
                    row["thing"],
                    "finding",
                )

    with (folder / "anchors.jsonl").open("rb") as stream:
        anchors = read_anchors(bounded_lines(stream))
    now = START + timedelta(days=DAYS + 1)
    period = Period.parse(
        START.date().isoformat(),
        (START + timedelta(days=DAYS - 1)).date().isoformat(),
        retention_days=400,
        now=now,
    )
    started = time.perf_counter()
    with (folder / "chain.jsonl").open("rb") as chain:
        inputs = PackInputs(
            period=period,
            now=now,
            cloud="aws",
            assets=assets(),
            chain=ChainSource(bounded_lines(chain), anchors, "benchmark"),
            findings=findings(),
            policies=[],
        )
        result = build_pack(inputs, folder / "pack")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peakMb": peak,
                "counts": result.counts,
                "records": result.verification.records,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="10,000 devices, 100,000 records")
    parser.add_argument("--devices", type=int)
    parser.add_argument("--records", type=int)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    devices = args.devices or (10_000 if args.short else 100_000)
    records = args.records or (100_000 if args.short else 1_000_000)
    if args.child is not None:
        build_in_child(args.child, devices)
        return
    with tempfile.TemporaryDirectory(prefix="evidence-pack-bench-") as name:
        folder = Path(name)
        made = generate(records, devices, folder)
        print(
            f"fleet: {devices:,} devices; ledger: {records:,} records over {DAYS} days "
            f"({made['bytes'] / 1e6:.0f} MB), generated in {made['seconds']:.0f} s"
        )
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(folder),
                "--devices",
                str(devices),
                "--records",
                str(records),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            print(child.stderr[-2000:])
            sys.exit(1)
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        counts = figures["counts"]
        print(
            f"pack: {figures['seconds']:.1f} s, "
            f"{figures['records'] / figures['seconds']:,.0f} records/s, "
            f"peak RSS {figures['peakMb']:.0f} MB"
        )
        print(
            f"pack holds: {counts['assets']:,} assets, {counts['sessions']:,} sessions, "
            f"{counts['inventoryChanges']:,} certificate changes, {counts['findings']:,} "
            f"findings, {counts['incidents']:,} incidents ({counts['overdueClocks']:,} overdue "
            f"clocks), {counts['operators']} operators"
        )
        size = sum(path.stat().st_size for path in (folder / "pack").rglob("*") if path.is_file())
        print(
            f"pack size: {size / 1e6:.0f} MB "
            f"(report.html {(folder / 'pack' / 'report.html').stat().st_size / 1e3:.0f} kB)"
        )
        script = Path(sys.executable).parent / "iot-remote-access"
        started = time.perf_counter()
        verify = subprocess.run(
            [
                str(script),
                "evidence",
                "verify",
                str(folder / "pack/ledger/chain.jsonl"),
                "--anchors",
                str(folder / "pack/ledger/anchors.jsonl"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        print(f"verify exit {verify.returncode}: {(verify.stdout or verify.stderr).strip()[:160]}")
        print(f"verify: {seconds:.1f} s, {records / seconds:,.0f} records/s (console script)")


if __name__ == "__main__":
    main()
