"""The daily rotation plan for 1,000,000 devices on GCP side by side with AWS, in one run.

Run: ``python benchmarks/rotation_planner_gcp.py`` (``--devices 100000`` for a quick run).

The fleet is ``cert_planning.build_fleet``'s (same-day batches over a year, each issued
with the real stagger), loaded into both inventories:

- AWS: ``lambdas.certs.sweep.Sweep.plan`` over ``cert_planning.PagedTable`` (the
  in-memory DynamoDB stand-in that pages at 1 MB and counts calls);
- GCP: ``pubsub.rotation_planner.GcpRotationPlanner.plan`` over ``FirestoreStandIn``
  below: an in-memory STAND-IN for ``FirestoreInventory`` (not Firestore: it answers
  the same equality queries and transitions, and counts the queries, the documents
  read and the documents written, which is what Firestore bills and what this compares).

Both run ``core.rotation_plan.plan_rotations`` on the same records with the same
settings; they differ in what they do with the slots of the next 24 hours: AWS sends
them to SQS for the worker, GCP writes them itself (one transaction each). Printed:
wall time, peak memory, calls, and the GCP/AWS ratio of the plan's wall time.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cert_planning import (  # the sibling benchmark's fleet and stand-ins
    CountingQueue,
    PagedTable,
    build_fleet,
    measure,
    peak_mib,
)

from iot_remote_access.core.certificate_issuer import IssuedCertificate
from iot_remote_access.core.inventory_item import slot_key, to_record
from iot_remote_access.core.rotation_plan import (
    InventoryRecord,
    RotationSettings,
    RotationState,
)
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import Inventory
from iot_remote_access.lambdas.certs.issuance import Clients, Rotation
from iot_remote_access.lambdas.certs.sweep import Sweep
from iot_remote_access.pubsub.rotation_inventory import DELETE, StateConflict
from iot_remote_access.pubsub.rotation_planner import GcpRotationPlanner
from iot_remote_access.pubsub.rotation_protocol import RotationProtocol

Item = dict[str, Any]


class FirestoreStandIn:
    """STAND-IN for ``FirestoreInventory``: equality queries and transitions in memory, counted."""

    def __init__(self, items: Iterator[Item]) -> None:
        self.docs: dict[str, Item] = {}
        self.by_field: dict[str, dict[object, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.counts: dict[str, int] = defaultdict(int)
        for item in items:  # the table's own dicts (a copy of 1M would double the GC's work)
            self.docs[item["thing"]] = item
            self.by_field["expiryDay"][item["expiryDay"]].add(item["thing"])

    def _where(self, field: str, value: object) -> list[Item]:
        self.counts["queries"] += 1
        found = [self.docs[t] for t in self.by_field[field].get(value, ())]
        self.counts["documentsRead"] += len(found)
        return found

    def get(self, thing: str) -> Item | None:
        self.counts["documentsRead"] += 1
        return self.docs.get(thing)

    def expiring_on(self, days: Sequence[date]) -> Iterator[InventoryRecord]:
        for day in days:
            for item in self._where("expiryDay", day.isoformat()):
                yield to_record(item)

    def scheduled_in(self, hour: datetime) -> list[str]:
        return [i["thing"] for i in self._where("slotHour", slot_key(hour))]

    def revoke_pending(self) -> list[Item]:
        return self._where("revokePending", True)

    def transition(
        self,
        thing: str,
        expected: Sequence[RotationState] | None,
        changes: Item | Callable[[Item], Item],
    ) -> Item:
        self.counts["transactions"] += 1
        item = self.get(thing)
        allowed = None if expected is None else {s.value for s in expected}
        if item is None or (allowed is not None and item.get("rotationState") not in allowed):
            raise StateConflict(thing)
        values = changes(item) if callable(changes) else changes
        for key, value in values.items():
            if key in ("slotHour", "revokePending"):
                self.by_field[key][item.get(key)].discard(thing)
                if value is not DELETE:
                    self.by_field[key][value].add(thing)
            if value is DELETE:
                item.pop(key, None)
            else:
                item[key] = value
        self.docs[thing] = item
        self.counts["documentsWritten"] += 1
        return item


class NoIssuer:
    """The plan of a fleet with nothing in flight calls no CA."""

    def issue(self, *args: object) -> IssuedCertificate:
        raise AssertionError("the daily plan issues nothing")

    def revoke(self, name: str) -> None:
        raise AssertionError("nothing to revoke in this fleet")


def _aws(table: PagedTable, now: datetime, policy: StaggerPolicy, settings: Any) -> Any:
    inventory = Inventory(table)
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
    return Sweep(config, inventory, rotation, CountingQueue()), inventory


def _gcp(table: PagedTable, settings: RotationSettings) -> tuple[GcpRotationPlanner, Any]:
    items = (i for by_day in table.by_index.values() for day in by_day.values() for i in day)
    inventory = FirestoreStandIn(items)
    protocol = RotationProtocol(inventory=inventory, issuer=NoIssuer(), replies=None)  # type: ignore[arg-type]
    planner = GcpRotationPlanner(
        inventory=inventory,  # type: ignore[arg-type]
        protocol=protocol,
        publisher=None,
        commands_topic="projects/p/topics/iot-commands",
        settings=settings,
    )
    return planner, inventory


def _row(label: str, aws: str, gcp: str) -> None:
    print(f"  {label:<30}{aws:>22}{gcp:>26}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--hourly-budget", type=int, default=1000)
    args = parser.parse_args()
    now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    policy = StaggerPolicy()
    settings = RotationSettings(hourly_budget=args.hourly_budget)
    table = build_fleet(args.devices, args.batches, now, policy)
    print(f"fleet: {args.devices:,} devices in {args.batches} same-day batches over a year")

    sweep, aws_inventory = _aws(table, now, policy, settings)
    second_sweep = _aws(table, now, policy, settings)[0]
    planner, gcp_inventory = _gcp(table, settings)
    second_planner = _gcp(table, settings)[0]
    # The fleet exists before either run: the garbage collector should not walk its
    # million items inside one run and not the other (it did, by chance, 3x apart).
    gc.collect()
    gc.freeze()
    aws_outcome, aws_s = measure(lambda: sweep.plan(now))
    gcp_report, gcp_s = measure(lambda: planner.plan(now))
    aws_mib = peak_mib(lambda: second_sweep.plan(now))
    gcp_mib = peak_mib(lambda: second_planner.plan(now))

    counts = gcp_inventory.counts
    print(f"\n{'':32}{'AWS (DynamoDB, SQS)':>22}{'GCP (Firestore, inline)':>26}")
    gcp_due = gcp_report.counts["pending"] + gcp_report.counts["inFlight"]
    _row("due devices", f"{aws_outcome.body['due']:,}", f"{gcp_due:,}")
    slots = gcp_report.counts["scheduledNext24h"]
    _row("slots of the next 24 h", f"{aws_outcome.body['queued']:,}", f"{slots:,}")
    _row("plan wall time", f"{aws_s:.2f} s", f"{gcp_s:.2f} s")
    _row("peak memory", f"{aws_mib:.1f} MiB", f"{gcp_mib:.1f} MiB")
    _row("queries", f"{aws_inventory.calls.get('Query', 0):,}", f"{counts['queries']:,}")
    _row("documents read", "-", f"{counts['documentsRead']:,}")
    _row("transactions (slots written)", "-", f"{counts['transactions']:,}")
    print(f"\nratio GCP / AWS, plan wall time: {gcp_s / aws_s:.2f}x")
    print(f"ratio GCP / AWS, peak memory:    {gcp_mib / aws_mib:.2f}x")


if __name__ == "__main__":
    main()
