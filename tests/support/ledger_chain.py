"""Building ledger chains for tests: real records from core.ledger, never hand-written digests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.ledger import Anchor, Record, anchor_of, next_record

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def decision(index: int) -> dict[str, Any]:
    """A tunnel decision like the broker's audit records (varied, with non-ASCII text)."""
    return {
        "event": "tunnel.open" if index % 3 else "tunnel.close",
        "decision": "opened" if index % 5 else "refused",
        "thing": f"sensor-{index % 7}",
        "requester": "arn:aws:sts::123456789012:assumed-role/Operator/ana",
        "reason": f"ticket OPS-{index}: capteur défectueux ✓",
        "minutes": 30,
        "services": ["SSH"],
    }


def build_chain(
    count: int, data: Sequence[Mapping[str, Any]] | None = None, start: Record | None = None
) -> list[Record]:
    records: list[Record] = []
    head = start
    for index in range(count):
        payload = data[index] if data is not None else decision(index)
        head = next_record(head, payload, START + timedelta(seconds=index))
        records.append(head)
    return records


def export(records: Sequence[Record]) -> bytes:
    return b"".join(record.line() + b"\n" for record in records)


def lines(records: Sequence[Record]) -> list[bytes | None]:
    return [record.line() for record in records]


def anchors_every(records: Sequence[Record], step: int) -> list[Anchor]:
    """An anchor at every ``step``-th record and at the last one, as the hourly job writes."""
    chosen = [r for r in records if (r.seq + 1) % step == 0]
    if records and (not chosen or chosen[-1] is not records[-1]):
        chosen.append(records[-1])
    return [anchor_of(r, START + timedelta(hours=1 + r.seq)) for r in chosen]


def anchor_file(anchors: Sequence[Anchor]) -> bytes:
    return b"".join(anchor.line() + b"\n" for anchor in anchors)
