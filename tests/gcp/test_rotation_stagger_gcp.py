"""Staggered validity on GCP meets the AWS bound: busiest expiry day <= ceil(1.1 * N / W).

The GCP rotation service places each issuance with one Firestore transaction
(``FirestoreLedger.place``: join the cohort, read its counts, ``choose_day``, write).
Two tests together: 5,000 same-day devices through ``choose_day`` exactly as the
transaction runs it (the emulator's ~20 ms per transaction would make 5,000 of them a
two-minute test), and the transaction itself on the real Firestore emulator.
"""

from __future__ import annotations

import math
from collections import Counter

from google.cloud import firestore

from iot_remote_access.core.stagger import StaggerPolicy, peak_bound
from iot_remote_access.pubsub.rotation_inventory import (
    FirestoreInventory,
    FirestoreLedger,
    choose_day,
)
from tests.support.gcp_rotation import fresh_project
from tests.support.processes import FirestoreEmulator


def test_5000_same_day_devices_meet_the_aws_bound() -> None:
    policy = StaggerPolicy()
    devices = 5000
    loads = [0] * policy.window_days
    for rank in range(1, devices + 1):
        loads[choose_day(policy, loads, rank, f"gcp-device-{rank:05d}")] += 1
    busiest = max(loads)
    assert sum(loads) == devices
    assert busiest <= math.ceil(1.1 * devices / policy.window_days)  # the AWS bound: 62
    assert busiest <= peak_bound(devices, policy.window_days)
    # Exact counts in one transaction: the integer optimum, no slack for races.
    assert busiest == math.ceil(devices / policy.window_days) == 56


def test_placements_in_firestore_transactions_keep_exact_counts(
    firestore_emulator: FirestoreEmulator,
) -> None:
    """On the real emulator: each placement joins, reads and claims in one transaction.

    (Issuances racing for the cohort's document are Firestore's transaction retries:
    the emulator takes seconds per lock conflict, so the race is not replayed here; a
    placement that loses every try raises and the service retries the CSR later.)
    """
    policy = StaggerPolicy(window_days=30)
    ledger = FirestoreLedger(FirestoreInventory(firestore.Client(project=fresh_project("stag"))))
    offsets = [ledger.place(policy, "2026-12-02", f"device-{n:03d}") for n in range(60)]
    per_day = Counter(offsets)
    assert ledger.loads("2026-12-02", 30) == [per_day.get(d, 0) for d in range(30)]
    assert max(per_day.values()) == math.ceil(60 / 30)  # every day filled to 2, none to 3
    assert ledger.join("2026-12-02") == 61  # the 60 placements were counted as joins
