"""Verifying an exported ledger chain against its anchors, as a stream.

The first broken link is reported with the sequence number it broke at and why:
a record that is not one (edited bytes), a digest that does not match its content
(edited), a sequence gap (deleted), a sequence going back (reordered, duplicated),
a ``prev`` that is not the previous record's digest (inserted, or the previous
record edited and re-hashed), a record that differs from its anchor (re-written
chain), and a chain that ends before an anchor (truncated).

A chain may start after record 0 (an export of a period): its first record must
then be anchored itself, or its ``prev`` vouched for by an anchor of the record
before it, so a forged segment cannot start anywhere it likes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from iot_remote_access.core.ledger import (
    GENESIS,
    MAX_LINE_BYTES,
    Anchor,
    LedgerError,
    Record,
    line_digest,
    parse_record,
)


@dataclass(frozen=True)
class Broken:
    """The first broken link: the sequence number where the chain stops holding, and why."""

    seq: int
    reason: str
    #: The line could not be read as a record at all (not JSON, too long, not UTF-8, ...).
    unreadable: bool = False


@dataclass(frozen=True)
class Verification:
    records: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None
    anchors_checked: int
    broken: Broken | None

    @property
    def holds(self) -> bool:
        return self.broken is None


class AnchorConflict(LedgerError):
    """Two anchors name different digests for one record: the anchor store itself is forked."""


def index_anchors(anchors: Iterable[Anchor]) -> dict[int, Anchor]:
    by_seq: dict[int, Anchor] = {}
    for anchor in anchors:
        seen = by_seq.get(anchor.seq)
        if seen is not None and seen.head != anchor.head:
            raise AnchorConflict(
                "anchors",
                f"the anchors of {seen.time} and {anchor.time} name different digests for "
                f"record {anchor.seq}",
            )
        by_seq.setdefault(anchor.seq, anchor)
    return by_seq


class _Walk:
    """The state of one pass; ``step`` returns the first problem of one line, if any."""

    def __init__(
        self, anchors: dict[int, Anchor], on_record: Callable[[Record, bytes], None] | None
    ) -> None:
        self.anchors = anchors
        self.on_record = on_record
        self.head: Record | None = None
        self.first_seq: int | None = None
        self.records = 0
        self.anchors_checked = 0

    def expected_seq(self) -> int:
        # Before the first record the position is unknown; 0 with the line number in the reason.
        return self.head.seq + 1 if self.head is not None else 0

    def step(self, number: int, line: bytes | None) -> Broken | None:
        if line is None:
            return Broken(
                self.expected_seq(), f"line {number} is longer than {MAX_LINE_BYTES} bytes", True
            )
        try:
            record = parse_record(line)
        except LedgerError as error:
            # "record: ..." would repeat what the sentence already says.
            why = error.problem if error.field == "record" else str(error)
            return Broken(self.expected_seq(), f"line {number} is not a ledger record: {why}", True)
        problem = self._link(record) or self._content(record, line)
        if problem is not None:
            return problem
        self.head = record
        self.records += 1
        if self.on_record is not None:
            self.on_record(record, line)
        if self.first_seq is None:
            self.first_seq = record.seq
        return None

    def _link(self, record: Record) -> Broken | None:
        head = self.head
        if head is None:
            return self._start(record)
        if record.seq > head.seq + 1:
            missing = (
                f"{head.seq + 1}"
                if record.seq == head.seq + 2
                else f"{head.seq + 1}..{record.seq - 1}"
            )
            return Broken(
                head.seq + 1,
                f"record(s) {missing} missing (deleted or moved): "
                f"found {record.seq} after {head.seq}",
            )
        if record.seq <= head.seq:
            return Broken(
                head.seq + 1,
                f"found record {record.seq} after {head.seq} (reordered or duplicated)",
            )
        if record.prev != head.hash:
            return Broken(
                record.seq,
                f"prev digest is not the digest of record {head.seq} (a record was inserted, "
                f"or record {head.seq} was edited and re-hashed)",
            )
        return None

    def _start(self, record: Record) -> Broken | None:
        if record.seq == 0:
            if record.prev != GENESIS:
                return Broken(0, "record 0 does not start from the genesis digest")
            return None
        if record.seq in self.anchors:
            return None  # starts at an anchored record: _content checks it against the anchor
        vouch = self.anchors.get(record.seq - 1)
        if vouch is None:
            return Broken(
                record.seq,
                f"the export starts at record {record.seq} but no anchor vouches for record "
                f"{record.seq - 1} or {record.seq}; export from an anchored record",
            )
        if vouch.head != record.prev:
            return Broken(record.seq, f"prev digest differs from the anchor of {vouch.time}")
        self.anchors_checked += 1
        return None

    def _content(self, record: Record, line: bytes) -> Broken | None:
        if line_digest(line, record) != record.hash:
            return Broken(record.seq, "digest does not match the record's content (edited)")
        anchor = self.anchors.get(record.seq)
        if anchor is not None:
            if anchor.head != record.hash:
                return Broken(
                    record.seq, f"differs from the anchor of {anchor.time} (chain re-written)"
                )
            self.anchors_checked += 1
        return None

    def end(self) -> Broken | None:
        latest = max(self.anchors, default=None)
        if latest is None:
            return None
        when = self.anchors[latest].time
        if self.head is None:
            # Which records an empty export should have held is unknown: name the first
            # record an anchor vouches for.
            return Broken(
                min(self.anchors),
                f"the export holds no record but the anchor of {when} vouches for record "
                f"{latest} (truncated)",
            )
        if latest > self.head.seq:
            return Broken(
                self.head.seq + 1,
                f"the chain ends at record {self.head.seq} but the anchor of {when} "
                f"vouches for record {latest} (truncated)",
            )
        return None


def verify(
    lines: Iterable[bytes | None],
    anchors: Iterable[Anchor],
    on_record: Callable[[Record, bytes], None] | None = None,
) -> Verification:
    """Check a chain (lines as ``bounded_lines`` yields them) against ``anchors``.

    Stops at the first broken link. Anchors before the export's first record cannot be
    checked and are ignored; anchors after its last record mean it was truncated.
    ``on_record`` sees each record (and its exact line) once it has been checked, so a
    reader (the evidence pack) folds the chain in the same pass as it is verified.
    """
    walk = _Walk(index_anchors(anchors), on_record)
    broken: Broken | None = None
    for number, line in enumerate(lines, start=1):
        broken = walk.step(number, line)
        if broken is not None:
            break
    else:
        broken = walk.end()
    return Verification(
        records=walk.records,
        first_seq=walk.first_seq,
        last_seq=walk.head.seq if walk.head is not None else None,
        last_hash=walk.head.hash if walk.head is not None else None,
        anchors_checked=walk.anchors_checked,
        broken=broken,
    )
