"""Drive synthetic Secure Tunneling events through the tunnel-metrics handler, in-process.

DynamoDB is, by default, ``tests/support/dynamodb_standin.InMemoryDynamoDB``: an
in-memory stand-in (not DynamoDB, not moto) that is fast, so the time measured is
the handler's; ``tests/test_tunnel_metrics_calls.py`` checks it agrees with moto on
every result and item. ``--backend moto`` runs on moto instead (78 % of the time is
then moto's). DescribeTunnel is a botocore Stubber (moto has no Secure Tunneling).
The events are spread over a few simulated days (the rate of a large fleet): opens,
closes 1-120 minutes later (10% never closed), renewals, redelivered duplicates,
malformed events and closes of tunnels opened before deployment (DescribeTunnel).
The 5-minute sweep is not an event stream; it is run a few times on the final
state and reported apart.

Prints DynamoDB calls per event (target <= 2.1; they carry over to AWS: each is
one request, billed), events per second, and the handler's CPU per event with
the stand-in's own time taken out (target >= 4,000 events/s).

    python benchmarks/tunnel_metrics_throughput.py              # 100,000 events
    python benchmarks/tunnel_metrics_throughput.py --short      # 10,000 events
    python benchmarks/tunnel_metrics_throughput.py --backend moto --events 5000
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}.items():
    os.environ[key] = value  # never a real account

import boto3  # noqa: E402
from botocore.stub import Stubber  # noqa: E402
from moto import mock_aws  # noqa: E402

from iot_remote_access.lambdas.tunnel_metrics import handler as handler_module  # noqa: E402
from iot_remote_access.lambdas.tunnel_metrics.handler import TunnelMetricsApp  # noqa: E402
from tests.support import secure_tunneling_events as ev  # noqa: E402
from tests.support.dynamodb_standin import InMemoryDynamoDB  # noqa: E402
from tests.support.tunnel_metrics_harness import (  # noqa: E402
    TABLE,
    CallCounter,
    FakeLambdaContext,
    Harness,
)

RENEWAL_SHARE = 0.15
DUPLICATE_SHARE = 0.01
MALFORMED_SHARE = 0.005
UNKNOWN_CLOSE_SHARE = 0.002
NEVER_CLOSED_SHARE = 0.10


class StandinHarness:
    """What the benchmark needs of ``Harness``, over the in-memory DynamoDB stand-in."""

    def __init__(self) -> None:
        self.dynamodb = InMemoryDynamoDB(record=True)
        self.tunneling = boto3.client("iotsecuretunneling", region_name=ev.REGION)
        self.tunneling_stubber = Stubber(self.tunneling)
        self.tunneling_stubber.activate()
        self.app = TunnelMetricsApp(
            table_name=TABLE, dynamodb=self.dynamodb, tunneling=self.tunneling
        )
        self.context = FakeLambdaContext()

    @property
    def dynamodb_calls(self) -> CallCounter:
        return CallCounter(dict(self.dynamodb.calls))

    def items(self) -> int:
        return len(self.dynamodb.items)


class CountingSink(io.TextIOBase):
    """Where EMF and logs go: counted, not kept (100k events would be ~100 MB)."""

    def __init__(self) -> None:
        self.emf_records = 0
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text)
        self.emf_records += text.count('{"_aws"')
        return len(text)


def synthetic_events(
    count: int,
    things: int,
    start: datetime,
    span: timedelta,
    rng: random.Random,
    harness: Harness | StandinHarness,
) -> tuple[list[tuple[str, dict[str, Any]]], datetime]:
    """(kind, event) in delivery order; queues DescribeTunnel stub answers in that order.

    A share of closes is followed by a reopen of the same thing 0-20 minutes later,
    so some renewals fall inside the 15-minute window and some outside.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    # Scheduled follow-ups: (time, tiebreak, "close" or "renewal", tunnel id or thing).
    scheduled: list[tuple[datetime, int, str, str]] = []
    tunnel_thing: dict[str, str] = {}
    now = start
    mean_gap = span.total_seconds() / count

    def open_for(thing: str, kind: str, at: datetime) -> None:
        opened = ev.open_tunnel(at, thing=thing)
        tunnel_id = ev.tunnel_id_of(opened)
        events.append((kind, opened))
        if rng.random() >= NEVER_CLOSED_SHARE:
            tunnel_thing[tunnel_id] = thing
            closes = at + timedelta(minutes=rng.uniform(1, 120))
            heapq.heappush(scheduled, (closes, len(events), "close", tunnel_id))

    while len(events) < count:
        now += timedelta(seconds=rng.expovariate(1 / mean_gap))
        if scheduled and scheduled[0][0] <= now:
            at, _, action, subject = heapq.heappop(scheduled)
            if action == "renewal":
                open_for(subject, "renewal", at)
                continue
            events.append(("close", ev.close_tunnel(at, subject)))
            thing = tunnel_thing.pop(subject)
            if rng.random() < RENEWAL_SHARE:
                reopen = at + timedelta(minutes=rng.uniform(0, 20))
                heapq.heappush(scheduled, (reopen, len(events), "renewal", thing))
            continue
        roll = rng.random()
        if roll < DUPLICATE_SHARE and events:
            events.append(("duplicate", rng.choice(events[-500:])[1]))
        elif roll < DUPLICATE_SHARE + MALFORMED_SHARE:
            bad = ev.open_tunnel(now)
            bad["detail"]["responseElements"] = None
            events.append(("malformed", bad))
        elif roll < DUPLICATE_SHARE + MALFORMED_SHARE + UNKNOWN_CLOSE_SHARE:
            tunnel_id = ev.new_tunnel_id()
            harness.tunneling_stubber.add_response(
                "describe_tunnel",
                ev.describe_tunnel_response(
                    tunnel_id,
                    thing=f"sensor-{rng.randrange(things):06d}",
                    created_at=now - timedelta(hours=2),
                ),
                expected_params={"tunnelId": tunnel_id},
            )
            events.append(("unknown-close", ev.close_tunnel(now, tunnel_id)))
        else:
            open_for(f"sensor-{rng.randrange(things):06d}", "open", now)
    return events, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument(
        "--days", type=float, default=6.0, help="simulated days the events spread over"
    )
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--backend", choices=("standin", "moto"), default="standin")
    parser.add_argument("--short", action="store_true", help="10,000 events, 1,000 things")
    args = parser.parse_args()
    if args.short:
        args.events, args.things = 10_000, 1_000
    if args.days <= 0:
        parser.error(f"--days {args.days:g}: allowed: a number of days above 0")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.backend == "moto":
        with mock_aws():
            run(args, Harness())
    else:
        run(args, StandinHarness())


def run(args: argparse.Namespace, harness: Harness | StandinHarness) -> None:
    rng = random.Random(args.seed)
    span = timedelta(days=args.days)
    start = (datetime.now(UTC) - span).replace(microsecond=0)
    events, end = synthetic_events(args.events, args.things, start, span, rng, harness)
    sink = CountingSink()
    log_handler = handler_module.logger.registered_handler
    assert isinstance(log_handler, logging.StreamHandler)
    log_handler.setStream(sink)
    calls_by_kind: Counter[str] = Counter()
    events_by_kind: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    seconds_by_kind: Counter[str] = Counter()
    started, started_cpu = time.perf_counter(), time.process_time()
    with redirect_stdout(sink):
        for kind, event in events:
            before_calls, before = harness.dynamodb_calls.total, time.perf_counter()
            result = harness.app.process(event, harness.context)  # type: ignore[arg-type]
            seconds_by_kind[kind] += time.perf_counter() - before
            calls_by_kind[kind] += harness.dynamodb_calls.total - before_calls
            events_by_kind[kind] += 1
            statuses[f"{kind}:{result['status']}"] += 1
            statuses[f"{kind}:renewalLoop"] += bool(result.get("renewalLoop"))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        standin = _standin_cpu(harness)
        sweep_calls, sweep_started = harness.dynamodb_calls.total, time.perf_counter()
        sweep_results = [
            harness.app.process(ev.scheduled(end + timedelta(minutes=5 * (i + 1))), harness.context)  # type: ignore[arg-type]
            for i in range(args.sweeps)
        ]
        sweep_seconds = time.perf_counter() - sweep_started
        sweep_calls = harness.dynamodb_calls.total - sweep_calls
    harness.tunneling_stubber.assert_no_pending_responses()
    _report(args, events, elapsed, cpu, standin, harness, calls_by_kind, events_by_kind)
    _per_kind(calls_by_kind, events_by_kind, seconds_by_kind, statuses)
    if args.sweeps:
        print(
            f"  sweep (every 5 min, not per event): {args.sweeps} runs over "
            f"{sweep_results[-1]['openTunnels']:,} open tunnels of "
            f"{sweep_results[-1]['things']:,} things: "
            f"{1000 * sweep_seconds / args.sweeps:,.0f} ms and "
            f"{sweep_calls / args.sweeps:.1f} DynamoDB calls each"
        )


def _standin_cpu(harness: Harness | StandinHarness) -> float:
    """CPU the stand-in itself spent on the run's calls: the same calls, replayed alone."""
    if not isinstance(harness, StandinHarness) or harness.dynamodb.log is None:
        return 0.0
    log = list(harness.dynamodb.log)
    started = time.process_time()
    InMemoryDynamoDB().replay(log)
    return time.process_time() - started


def _report(
    args: argparse.Namespace,
    events: list[tuple[str, dict[str, Any]]],
    elapsed: float,
    cpu: float,
    standin: float,
    harness: Harness | StandinHarness,
    calls_by_kind: Counter[str],
    events_by_kind: Counter[str],
) -> None:
    total_calls = sum(calls_by_kind.values())
    backend = "the in-memory DynamoDB stand-in" if args.backend == "standin" else "moto DynamoDB"
    print(
        f"tunnel-metrics handler, in-process on {backend}: {len(events):,} events over "
        f"{args.days:g} simulated days, {args.things:,} things, seed {args.seed}"
    )
    print(
        f"  DynamoDB calls  {total_calls / len(events):.2f} per event (target <= 2.1)  ("
        + ", ".join(f"{op} {n:,}" for op, n in sorted(harness.dynamodb_calls.calls.items()))
        + ")"
    )
    print(f"  throughput      {len(events) / elapsed:,.0f} events/s wall ({elapsed:,.1f} s)")
    if args.backend == "standin":
        handler_cpu = max(cpu - standin, 1e-9)
        print(
            f"  handler CPU     {1e6 * handler_cpu / len(events):,.0f} us/event = "
            f"{len(events) / handler_cpu:,.0f} events per CPU-second (target >= 4,000); "
            f"the stand-in's own CPU {standin:,.1f} s (replayed alone) is taken out "
            f"(with it: {len(events) / cpu:,.0f} events per CPU-second)"
        )
    items = harness.items() if isinstance(harness, StandinHarness) else None
    if items is not None:
        print(f"  state items     {items:,}")


def _per_kind(
    calls_by_kind: Counter[str],
    events_by_kind: Counter[str],
    seconds_by_kind: Counter[str],
    statuses: Counter[str],
) -> None:
    print("  per kind        events   calls/event   ms/event   outcomes")
    for kind in ("open", "renewal", "close", "unknown-close", "duplicate", "malformed"):
        n = events_by_kind[kind]
        if not n:
            continue
        outcomes = {
            s.split(":")[1]: c for s, c in statuses.items() if s.startswith(kind + ":") and c
        }
        print(
            f"    {kind:<14}{n:>7,}   {calls_by_kind[kind] / n:>11.2f}   "
            f"{1000 * seconds_by_kind[kind] / n:>8.2f}   {json.dumps(outcomes)}"
        )


if __name__ == "__main__":
    main()
