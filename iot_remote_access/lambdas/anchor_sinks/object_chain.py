"""The access ledger's chain on Google Cloud and Azure: one write-once object per record.

Where AWS keeps the chain in DynamoDB (``lambdas/ledger/store.py``), Google Cloud and
Azure keep it in the same write-once storage as the anchors (the GCS bucket with a
locked retention policy, the Azure container with a locked immutability policy), one
object per record, created only if absent (GCS ``ifGenerationMatch=0``, Azure
``If-None-Match: *``): so on these clouds a record, once written, cannot be edited or
deleted by anyone until the retention ends, on top of what the chain and its anchors
prove.

Names: ``records/<ledger id>/<block>/<seq>.json``, ``block`` = ``seq // 10000`` (6
digits), ``seq`` 12 digits, so names sort by ``seq`` and every listing is by prefix
(Azure has no "list from"), at most 10,000 names (two pages) per block. The body is the
record's canonical line and a newline.

Appending works as on DynamoDB: put ``head + 1`` create-only; two writers that read
the same head race for that name, exactly one wins, and the other re-reads the head
and re-links. So the chain cannot fork, whatever the number of writers. A writer keeps
the head it wrote last, so an append is one create (a lost race adds one listing).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from iot_remote_access.core.ledger import (
    DEFAULT_LEDGER_ID,
    LedgerError,
    Record,
    next_record,
    parse_record,
)
from iot_remote_access.lambdas.anchor_sinks.sinks import AnchorExists, AnchorSink, anchor_chain
from iot_remote_access.lambdas.ledger.store import MAX_ATTEMPTS, LedgerUnavailable

RECORDS = "records"
BLOCK = 10_000
_NAME = re.compile(r"\d{12}\.json")


def record_name(ledger_id: str, seq: int) -> str:
    return f"{RECORDS}/{ledger_id}/{seq // BLOCK:06d}/{seq:012d}.json"


class ObjectChain:
    """One ledger's chain in write-once object storage (an ``AnchorSink``)."""

    def __init__(
        self,
        sink: AnchorSink,
        ledger_id: str = DEFAULT_LEDGER_ID,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sink = sink
        self.ledger_id = ledger_id
        self.clock = clock
        self.sleep = sleep
        self._head: Record | None = None

    def anchor(self, now: datetime) -> dict[str, Any]:
        """Verify the records since the last anchor and anchor the head (``anchor_chain``);
        raises ``TailBroken`` (nothing written) when they do not hold."""
        return anchor_chain(self.lines, self.sink, self.ledger_id, now=now)

    def _names(self, block: int) -> list[str]:
        """The record names of ``block``, in order; anything else there is not a record."""
        prefix = f"{RECORDS}/{self.ledger_id}/{block:06d}/"
        return sorted(n for n in self.sink.keys(prefix) if _NAME.fullmatch(n[len(prefix) :]))

    def head(self) -> Record | None:
        """The last record, found from the last one this writer knows (or record 0)."""
        block = 0 if self._head is None else self._head.seq // BLOCK
        last: str | None = None
        while names := self._names(block):
            last, block = names[-1], block + 1
        if last is None:
            return self._head
        try:
            return parse_record(self.sink.get(last).rstrip(b"\n"))
        except LedgerError as error:
            raise LedgerUnavailable(
                f"the ledger's head ({last}) is not a record: {error}"
            ) from None

    def lines(self, from_seq: int = 0) -> Iterator[bytes]:
        """Every record's exact line from ``from_seq`` on, in order (for the anchor job and
        an export). Stops at the first missing block: the chain's end."""
        block = from_seq // BLOCK
        while names := self._names(block):
            for name in names:
                if int(name[-17:-5]) >= from_seq:
                    yield self.sink.get(name).rstrip(b"\n")
            block += 1

    def append(self, data: Mapping[str, Any]) -> Record:
        """Record one decision; returns its record. LedgerError for a value the ledger
        refuses, LedgerUnavailable when it could not be stored."""
        for attempt in range(MAX_ATTEMPTS):
            head = self._current_head()
            record = next_record(head, data, self.clock())
            try:
                self.sink.put(record_name(self.ledger_id, record.seq), record.line() + b"\n")
            except AnchorExists:
                # Another writer took this sequence number: back off a little, re-link.
                self._head = self._read_head_after(record.seq)
                self.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter
                continue
            except Exception as error:  # any SDK error: not stored
                raise LedgerUnavailable(
                    f"could not store record {record.seq}: {type(error).__name__}"
                ) from None
            self._head = record
            return record
        raise LedgerUnavailable(f"lost {MAX_ATTEMPTS} races for the ledger's next record")

    def _current_head(self) -> Record | None:
        if self._head is not None:
            return self._head
        return self._read_head_after(0)

    def _read_head_after(self, seq: int) -> Record | None:
        try:
            return self.head()
        except LedgerUnavailable:
            raise
        except Exception as error:  # any SDK error: head unknown
            raise LedgerUnavailable(
                f"could not read the ledger's head (after record {seq}): {type(error).__name__}"
            ) from None
