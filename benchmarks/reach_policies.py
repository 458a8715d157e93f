"""`reach` on 10,000 IoT policies, next to `lint` on the same files, in one run.

Writes a fleet's worth of policy files - most rendered by the library for varied topic
models and capabilities, the rest generated with wildcards, Deny statements, client-id
variables and conditions (seeded) - then runs the real console script for each command
in a subprocess and reports each process's CPU time, wall time and peak memory
(``os.wait4``), the ratio reach / lint, and how many documents had reach.

    python benchmarks/reach_policies.py              # 10,000 policies
    python benchmarks/reach_policies.py --short      # 1,000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from iot_remote_access.core.aws_policy import device_policy_document, plain_arn  # noqa: E402
from iot_remote_access.core.topics import DeviceAccess, TopicModel  # noqa: E402

ARN = "arn:aws:iot:eu-west-1:123456789012:"
SEGMENTS = ("dt", "cmd", "x", "${iot:ClientId}", "${iot:Connection.Thing.ThingName}", "*", "+", "#")
ACTIONS = ("iot:Publish", "iot:Subscribe", "iot:Receive", "iot:Connect", "iot:*")


def rendered(rng: random.Random) -> dict[str, Any]:
    topics = TopicModel(
        telemetry=f"dt/{{thing}}/s{rng.randrange(50)}",
        commands=f"cmd/{{thing}}/c{rng.randrange(50)}",
    )
    jobs = rng.random() < 0.3
    access = DeviceAccess(
        topics=topics,
        tunneling=rng.random() < 0.5,
        rotation=rng.random() < 0.5,
        jobs=jobs,
        job_ids=("ota-1",) if jobs and rng.random() < 0.5 else (),
        command_responses=rng.random() < 0.5,
    )
    return device_policy_document(access, plain_arn())


def generated(rng: random.Random) -> dict[str, Any]:
    statements = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("topic/", "topicfilter/", "client/"))
        levels = "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(1, 3)))
        statement: dict[str, Any] = {
            "Effect": "Deny" if rng.random() < 0.2 else "Allow",
            "Action": rng.choice(ACTIONS),
            "Resource": ARN + kind + levels,
        }
        if rng.random() < 0.3:
            statement["Condition"] = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def write_policies(folder: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        document = rendered(rng) if rng.random() < 0.7 else generated(rng)
        path = folder / f"p{index:05d}.json"
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths


def measure(command: list[str], cwd: Path) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    return {
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "lines": output.count(b"\n"),
        "reach_docs": len(
            {line.split(b": HIGH")[0] for line in output.splitlines() if b": HIGH" in line}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--short", action="store_true", help="1,000 policies")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    count = 1_000 if args.short else args.policies
    cli = str(Path(sys.executable).parent / "iot-remote-access")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_policies(Path(folder), count, args.seed)
        names = [p.name for p in paths]
        lint = measure([cli, "lint", *names], Path(folder))
        reach = measure([cli, "reach", *names], Path(folder))
    print(f"{count:,} policies (seed {args.seed}), load average {os.getloadavg()[0]:.1f}")
    for name, figures in (("lint", lint), ("reach", reach)):
        print(
            f"  {name:5}  cpu {figures['cpu']:7.2f} s  wall {figures['wall']:7.2f} s  "
            f"peak {figures['peak_mib']:6.1f} MiB  exit {figures['exit']}"
        )
    print(f"  reach found in {reach['reach_docs']:,} documents")
    ratio = reach["cpu"] / lint["cpu"]
    per_policy = 1000 * reach["cpu"] / count
    print(f"  reach / lint CPU: {ratio:.2f}x; per policy {per_policy:.2f} ms CPU")


if __name__ == "__main__":
    main()
