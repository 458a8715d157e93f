"""Certificate planning for a fleet of 1,000,000 devices: time, memory, AWS API calls.

Run: ``python benchmarks/cert_planning.py`` (``--devices 100000`` for a quick run).

The fleet: ``--batches`` same-day batches spread over the past year, each issued
with the real stagger (``core.stagger``), so the inventory looks like one a year
of provisioning leaves. Measured side by side in one run:

1. the daily sweep as the planner Lambda runs it (``Sweep.plan``: one query per
   day of the due window on the expiry index, the plan, the fan-out) against
   ``PagedTable``, an in-memory stand-in for the DynamoDB table that pages query
   results at DynamoDB's 1 MB limit and counts every call (named so: it is not
   DynamoDB; it counts the calls our code makes, which is what this compares);
2. the naive sweep that has no inventory: ``ListCertificates`` (250 per page)
   and one ``DescribeCertificate`` per certificate to learn its expiry, counted
   from the fleet size (the IoT API has no other way to read validity dates);
3. ``core.rotation_plan.plan_rotations`` over the due window and over all
   1,000,000 records (wall time and peak traced memory).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.aws_schema import EXPIRY_INDEX, REVOKE_INDEX
from iot_remote_access.core.rotation_plan import InventoryRecord, RotationSettings, plan_rotations
from iot_remote_access.core.stagger import MemoryLedger, StaggerPolicy, assign_offset, cohort_of
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import Inventory
from iot_remote_access.lambdas.certs.issuance import Clients, Rotation
from iot_remote_access.lambdas.certs.sweep import Sweep

PAGE_BYTES = 1024 * 1024
LIST_PAGE = 250  # ListCertificates pageSize maximum


class PagedTable:
    """In-memory stand-in for the inventory table: queries by index key, 1 MB pages, call counts."""

    def __init__(self) -> None:
        self.by_index: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.calls: dict[str, int] = defaultdict(int)
        self.sizes: dict[int, int] = {}

    def add(self, item: dict[str, Any]) -> None:
        self.by_index[EXPIRY_INDEX][item["expiryDay"]].append(item)
        self.sizes[id(item)] = len(json.dumps(item))  # DynamoDB's size, roughly: names + values

    def query(
        self, IndexName: str, KeyConditionExpression: Any, ExclusiveStartKey: Any = None
    ) -> dict[str, Any]:
        self.calls["Query"] += 1
        value = KeyConditionExpression.get_expression()["values"][1]
        items = self.by_index[IndexName].get(value, [])
        start = ExclusiveStartKey or 0
        size = 0
        end = start
        while end < len(items) and size < PAGE_BYTES:
            size += self.sizes[id(items[end])]
            end += 1
        page: dict[str, Any] = {"Items": items[start:end]}
        if end < len(items):
            page["LastEvaluatedKey"] = end
        return page


class CountingQueue:
    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.messages += len(Entries)
        return {"Successful": Entries}


def build_fleet(devices: int, batches: int, now: datetime, policy: StaggerPolicy) -> PagedTable:
    table = PagedTable()
    ledger = MemoryLedger(policy.window_days)
    per_batch = math.ceil(devices / batches)
    for n in range(devices):
        batch = n // per_batch
        # Batches spread over the past 365 days: the fleet has been provisioned for a year.
        issued = now - timedelta(days=365 - batch * 365 // batches, hours=3)
        thing = f"sensor-{n:07d}"
        offset = assign_offset(policy, ledger, cohort_of(issued), thing)
        not_after = issued + timedelta(days=policy.validity_days(offset))
        table.add(
            {
                "thing": thing,
                "certificateId": f"{n:064x}",
                "notAfter": not_after.isoformat(timespec="seconds"),
                "expiryDay": not_after.date().isoformat(),
                "status": "ACTIVE",
                "rotationState": "IDLE",
                "attempts": 0,
                "serial": f"{n:032x}",
            }
        )
    return table


def measure(function: Any) -> tuple[Any, float]:
    """Wall time, without tracemalloc (which slows allocation-heavy code several times)."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def peak_mib(function: Any) -> float:
    """Peak traced memory of a second, separate run."""
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=50)
    # 1,000 per hour rotates 1.44 M devices in the 60 days between lead time and the 30-day
    # alarm; the library's default of 500 suits fleets up to 720,000.
    parser.add_argument("--hourly-budget", type=int, default=1000)
    parser.add_argument(
        "--describe-rate",
        type=float,
        default=10.0,
        help="assumed DescribeCertificate calls per second for the naive sweep",
    )
    args = parser.parse_args()
    now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    policy = StaggerPolicy()
    settings = RotationSettings(hourly_budget=args.hourly_budget)

    started = time.perf_counter()
    table = build_fleet(args.devices, args.batches, now, policy)
    print(
        f"fleet: {args.devices:,} devices in {args.batches} same-day batches over a year "
        f"(built with the real stagger in {time.perf_counter() - started:.1f} s)"
    )

    # 1. The daily sweep, as the planner Lambda runs it.
    def make_sweep() -> tuple[Inventory, CountingQueue, Sweep]:
        inventory = Inventory(table)
        queue = CountingQueue()
        config = RotationConfig(
            table_name="inventory",
            ca_arn="",
            policy_name="",
            topics=TopicModel(),
            stagger=policy,
            plan=settings,
            queue_url="https://sqs.example/queue",
            inline_limit=100,
        )
        rotation = Rotation(config, inventory, Clients(None, None, None))
        return inventory, queue, Sweep(config, inventory, rotation, queue)

    inventory, queue, sweep = make_sweep()
    outcome, sweep_s = measure(lambda: sweep.plan(now))
    sweep_mib = peak_mib(lambda: make_sweep()[2].plan(now))
    queued = outcome.body["queued"]
    sweep_reads = inventory.calls.get("Query", 0)
    # The worker does one conditional UpdateItem per scheduled device; the hourly dispatch
    # one Query per hour plus, per device, one UpdateItem and one Publish.
    sweep_total = sweep_reads + queue.calls + queued + 24 + 2 * queued
    print("\ndaily sweep (inventory, expiry index)")
    print(f"  due devices found:            {outcome.body['due']:>12,}")
    print(f"  rotations started in 24 h:    {queued:>12,}  (budget {args.hourly_budget}/h)")
    print(f"  plan time:                    {sweep_s:>12.2f} s")
    print(f"  plan peak memory:             {sweep_mib:>12.1f} MiB")
    print(
        f"  DynamoDB Query calls:         {sweep_reads:>12,}  "
        f"({settings.lead_days + 31} expiry days and 8 retirement days, 1 MB pages)"
    )
    print(f"  SQS SendMessageBatch calls:   {queue.calls:>12,}")
    print(f"  calls per day, all included:  {sweep_total:>12,}")

    # 2. The naive sweep: list every certificate, describe each to read its expiry.
    naive_reads = math.ceil(args.devices / LIST_PAGE) + args.devices
    naive_total = naive_reads + 2 * queued + queued
    print("\nnaive sweep (ListCertificates + DescribeCertificate per certificate)")
    print(f"  calls to find the due devices:{naive_reads:>12,}")
    print(f"  calls per day, all included: {naive_total:>13,}")
    print(
        f"  time at {args.describe_rate:g} DescribeCertificate/s: "
        f"{args.devices / args.describe_rate / 3600:>8.1f} h"
    )

    print(
        f"\nratio of calls to find due devices: naive / sweep = {naive_reads / sweep_reads:,.0f}x"
    )
    print(f"ratio of all daily calls:           naive / sweep = {naive_total / sweep_total:,.1f}x")

    # 3. The core planner alone, over the due window and over the whole fleet.
    due_records = list(
        inventory.expiring_on(
            [now.date() + timedelta(days=i) for i in range(settings.lead_days + 1)]
        )
    )
    all_records = [
        InventoryRecord(i["thing"], i["certificateId"], datetime.fromisoformat(i["notAfter"]))
        for items in table.by_index[EXPIRY_INDEX].values()
        for i in items
    ]
    plan, due_s = measure(lambda: plan_rotations(due_records, now, settings))
    due_mib = peak_mib(lambda: plan_rotations(due_records, now, settings))
    _, all_s = measure(lambda: plan_rotations(all_records, now, settings))
    all_mib = peak_mib(lambda: plan_rotations(all_records, now, settings))
    print("\ncore.rotation_plan.plan_rotations")
    print(
        f"  over the due window ({len(due_records):,} records): "
        f"{due_s:.2f} s, peak {due_mib:.1f} MiB"
    )
    print(f"  over all {len(all_records):,} records:        {all_s:.2f} s, peak {all_mib:.1f} MiB")
    print(
        f"  busiest hour: {max(plan.per_hour().values()):,} (budget {args.hourly_budget}); "
        f"late slots: {len(plan.late):,}"
    )
    assert REVOKE_INDEX  # the retirement queries are counted in the sweep's Query calls


if __name__ == "__main__":
    main()
