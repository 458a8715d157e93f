"""The access ledger: a hash chain of canonical JSON records, and its streaming verifier.

Every remote-access decision is one record::

    {"data":{...},"hash":"<sha256 hex>","prev":"<sha256 hex>","seq":0,"time":"...Z"}

``hash`` is the SHA-256 of the record's canonical JSON *without* ``hash``; ``prev``
is the ``hash`` of record ``seq - 1`` (``GENESIS`` for record 0). Canonical JSON:
sorted keys, no insignificant whitespace, UTF-8 (no ``\\u`` escapes for printable
text), integers only (floats have several spellings across JSON libraries), so
one record has exactly one byte spelling. The verifier demands that spelling, so
any changed byte anywhere in an exported chain is detected.

A chain alone cannot show that its *tail* was cut off or re-written with fresh
digests: that is what anchors are for. An anchor (``seq`` + the ``hash`` of that
record + when it was taken) is written periodically to write-once storage; the
verifier checks every anchored record and reports a chain that ends before an
anchor as truncated. Records after the newest anchor are only as safe as the
store they sit in, until the next anchor.

Standard library only; memory is bounded by the anchors (a few per hour), never
by the chain, which is read as a stream.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

GENESIS = "0" * 64
#: An access decision is a few hundred bytes; 16 KiB leaves room and bounds a hostile line.
MAX_RECORD_BYTES = 16 * 1024
#: A line of an export may hold a record of at most MAX_RECORD_BYTES plus the newline.
MAX_LINE_BYTES = MAX_RECORD_BYTES + 1
#: Nesting depth of a record (the record object itself is depth 1).
MAX_DEPTH = 8
#: Integers every JSON reader (JavaScript included) reads back exactly.
MAX_SAFE_INTEGER = 2**53 - 1
#: Anchors held in memory while verifying: ten years of hourly anchors is 87,600.
MAX_ANCHORS = 200_000

#: India's DPDP Rules 2025, rule 6(1)(e): keep logs "for a period of one year". 366 days so
#: that a year containing 29 February is covered. NIS2 (Implementing Regulation 2024/2690,
#: Annex 3.2) asks for a predetermined period without a number; one year satisfies both.
MIN_RETENTION_DAYS = 366
#: A year plus the weeks an auditor's request or an incident investigation takes.
DEFAULT_RETENTION_DAYS = 400
#: Object Lock in compliance mode cannot be shortened by anyone: a typo must not lock
#: storage (and its bill) for a century.
MAX_RETENTION_DAYS = 3650

_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_RECORD_KEYS = frozenset({"data", "hash", "prev", "seq", "time"})
_ANCHOR_KEYS = frozenset({"head", "seq", "time"})


class LedgerUnavailable(Exception):
    """The decision could not be recorded (store error, lost every race, corrupt head).

    Callers fail closed: a decision that cannot be recorded is not carried out.
    """


class LedgerError(ValueError):
    """A value the ledger refuses; ``problem`` is the message without the field name."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def shown(value: object, limit: int = 60) -> str:
    """A value as it may appear in an error: repr, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- canonical JSON -------------------------------------------------------------------------


def canonical(value: Mapping[str, Any], field: str = "record") -> bytes:
    """The one byte spelling of ``value``; refuses what has no single spelling or is too big."""
    _check_value(value, field, depth=1, budget=[MAX_RECORD_BYTES])
    encoded = _dumps(value).encode("utf-8")
    if len(encoded) > MAX_RECORD_BYTES:
        raise LedgerError(field, f"is {len(encoded)} bytes; allowed: at most {MAX_RECORD_BYTES}")
    return encoded


def _check_value(value: object, field: str, *, depth: int, budget: list[int]) -> None:
    # ``budget`` counts down roughly the bytes seen, so a huge value is refused early
    # instead of being serialised first.
    budget[0] -= 8
    if budget[0] < 0:
        raise LedgerError(field, f"is larger than {MAX_RECORD_BYTES} bytes")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise LedgerError(field, f"{shown(value)} is out of range; allowed: |n| <= 2**53-1")
        return
    if isinstance(value, str):
        _check_text(value, field, budget)
        return
    if depth > MAX_DEPTH and isinstance(value, list | tuple | dict):
        raise LedgerError(field, f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{field}[{index}]", depth=depth + 1, budget=budget)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError(field, f"key {shown(key)} is not a string")
            _check_text(key, field, budget)
            _check_value(item, f"{field}.{key[:40]}", depth=depth + 1, budget=budget)
        return
    raise LedgerError(
        field,
        f"{shown(value)} ({type(value).__name__}) is not allowed; allowed: "
        "null, true/false, integers, strings, lists and objects (no floats: a float has "
        "several spellings, an integer one)",
    )


def _check_text(text: str, field: str, budget: list[int]) -> None:
    budget[0] -= len(text)
    if budget[0] < 0:
        raise LedgerError(field, f"is larger than {MAX_RECORD_BYTES} bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LedgerError(field, f"{shown(text)} is not valid Unicode (lone surrogate)") from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_time(moment: datetime) -> str:
    """UTC with microseconds, one spelling: ``2026-12-02T03:09:44.123456Z``."""
    if moment.tzinfo is None:
        raise LedgerError("time", f"{moment.isoformat()} has no time zone; allowed: aware UTC")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- records and anchors --------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One link of the chain; ``line`` is its exact stored/exported spelling (no newline)."""

    seq: int
    time: str
    prev: str
    data: Mapping[str, Any]
    hash: str

    def line(self) -> bytes:
        return canonical(
            {
                "data": self.data,
                "hash": self.hash,
                "prev": self.prev,
                "seq": self.seq,
                "time": self.time,
            }
        )


def record_digest(seq: int, time: str, prev: str, data: Mapping[str, Any]) -> str:
    return digest(canonical({"data": data, "prev": prev, "seq": seq, "time": time}))


def next_record(head: Record | None, data: Mapping[str, Any], moment: datetime) -> Record:
    """The record that follows ``head`` (``None``: the first record of a new chain)."""
    if not isinstance(data, Mapping):
        raise LedgerError("data", f"{shown(data)} is not an object")
    kind = data.get("event")
    if not isinstance(kind, str) or not kind:
        raise LedgerError(
            "data.event",
            f"{shown(kind)} is not allowed; allowed: the decision's kind, e.g. 'tunnel.open'",
        )
    seq = 0 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    time = format_time(moment)
    plain = dict(data)
    return Record(seq, time, prev, plain, record_digest(seq, time, prev, plain))


@dataclass(frozen=True)
class Anchor:
    """A checkpoint kept in write-once storage: record ``seq`` had digest ``head``."""

    seq: int
    head: str
    time: str

    def line(self) -> bytes:
        return canonical({"head": self.head, "seq": self.seq, "time": self.time}, "anchor")


def anchor_of(record: Record, moment: datetime) -> Anchor:
    return Anchor(record.seq, record.hash, format_time(moment))


def parse_record(line: bytes) -> Record:
    """A record from its exact canonical spelling; LedgerError says what is wrong."""
    value, spelling = _parse_object(line, "record")
    _require_keys(value, _RECORD_KEYS, "record")
    seq, time, prev = value["seq"], value["time"], value["prev"]
    _require_seq(seq, "seq")
    _require_time(time, "time")
    _require_digest(prev, "prev")
    _require_digest(value["hash"], "hash")
    if not isinstance(value["data"], dict):
        raise LedgerError("data", f"{shown(value['data'])} is not an object")
    if spelling != line:
        raise LedgerError("record", "is not in canonical form (sorted keys, no spaces, UTF-8)")
    return Record(seq, time, prev, value["data"], value["hash"])


def line_digest(line: bytes, record: Record) -> str:
    """``record_digest`` of a record parsed from its canonical ``line``, without
    re-serialising it: in canonical form every key of the record sorts after ``data``,
    so the line ends with exactly this suffix, and dropping ``hash`` from it gives the
    bytes the digest covers. (The verifier's hot path: about twice as fast.)"""
    tail = f'"prev":"{record.prev}","seq":{record.seq},"time":"{record.time}"}}'.encode()
    with_hash = f',"hash":"{record.hash}",'.encode() + tail
    if not line.endswith(with_hash):
        raise LedgerError("record", "is not in canonical form (sorted keys, no spaces, UTF-8)")
    return digest(line[: -len(with_hash)] + b"," + tail)


def parse_anchor(line: bytes) -> Anchor:
    value, _ = _parse_object(line, "anchor")
    _require_keys(value, _ANCHOR_KEYS, "anchor")
    _require_seq(value["seq"], "anchor.seq")
    _require_digest(value["head"], "anchor.head")
    _require_time(value["time"], "anchor.time")
    return Anchor(value["seq"], value["head"], value["time"])


def _parse_object(line: bytes, field: str) -> tuple[dict[str, Any], bytes]:
    """The object on ``line`` and its canonical spelling.

    The verifier's hot path, so no walk over the values: the parser's hooks refuse
    floats, NaN/Infinity and out-of-range integers as they are read, the encoder
    refuses lone surrogates, the line length bounds the size, and the parser's
    recursion limit the depth (``MAX_DEPTH`` is enforced when a record is written).
    """
    if len(line) > MAX_RECORD_BYTES:
        raise LedgerError(field, f"line is longer than {MAX_RECORD_BYTES} bytes")
    try:
        value = json.loads(
            line.decode("utf-8"),
            parse_float=_refuse_float,
            parse_constant=_refuse_float,
            parse_int=_safe_int,
        )
        if not isinstance(value, dict):
            raise LedgerError(field, f"is a JSON {type(value).__name__}, not an object")
        return value, _dumps(value).encode("utf-8")
    except UnicodeDecodeError:
        raise LedgerError(field, "is not UTF-8 text") from None
    except UnicodeEncodeError:
        raise LedgerError(field, "holds a lone surrogate (not valid Unicode)") from None
    except RecursionError:
        raise LedgerError(field, "is nested too deeply to read") from None
    except _Refused as refused:
        raise LedgerError(field, str(refused)) from None
    except LedgerError:
        raise
    except ValueError as error:
        raise LedgerError(field, f"is not JSON ({shown(str(error), 80)})") from None


class _Refused(Exception):
    """Raised from inside the JSON parser's hooks (not a ValueError: the parser must not
    mistake it for a syntax error)."""


def _refuse_float(text: str) -> object:
    raise _Refused(
        f"{shown(text)} is not allowed; allowed: integers (no floats: a float has several "
        "spellings, an integer one)"
    )


def _safe_int(text: str) -> int:
    # Only JSON integer literals reach here; more than 16 digits is out of range anyway,
    # so a 4,000-digit literal never reaches int().
    number = int(text) if len(text.lstrip("-")) <= 16 else MAX_SAFE_INTEGER + 1
    if abs(number) > MAX_SAFE_INTEGER:
        raise _Refused(f"{shown(text)} is out of range; allowed: |n| <= 2**53-1")
    return number


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _require_keys(value: dict[str, Any], keys: frozenset[str], field: str) -> None:
    if set(value) != keys:
        raise LedgerError(field, f"has keys {sorted(value)[:8]}; allowed: exactly {sorted(keys)}")


def _require_seq(value: object, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerError(field, f"{shown(value)} is not a sequence number (an integer >= 0)")


def _require_digest(value: object, field: str) -> None:
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise LedgerError(field, f"{shown(value)} is not a SHA-256 digest (64 lowercase hex)")


def _require_time(value: object, field: str) -> None:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise LedgerError(field, f"{shown(value)} is not a time like 2026-12-02T03:09:44.000000Z")


# -- reading exports in bounded memory ------------------------------------------------------


def bounded_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """Lines without their newline; ``None`` for a line longer than ``limit`` (skipped
    chunk by chunk, so a 10 GB line costs ``limit`` bytes of memory)."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(64 * 1024)
            yield None
            continue
        yield line[:-1] if line.endswith(b"\n") else line


def read_anchors(lines: Iterable[bytes | None]) -> list[Anchor]:
    """Every anchor of an anchor file (one canonical anchor per line, blank lines allowed)."""
    anchors: list[Anchor] = []
    for number, line in enumerate(lines, start=1):
        if line is None:
            raise LedgerError(f"anchor line {number}", f"is longer than {MAX_LINE_BYTES} bytes")
        if not line.strip():
            continue
        if len(anchors) >= MAX_ANCHORS:
            raise LedgerError("anchors", f"more than {MAX_ANCHORS}; split the period")
        try:
            anchors.append(parse_anchor(line.rstrip(b"\r")))
        except LedgerError as error:
            raise LedgerError(f"anchor line {number}", str(error)) from None
    return anchors


# -- settings rules (checked by settings.ledger and the AccessLedger construct) -------------

DEFAULT_ANCHOR_MINUTES = 60
#: An anchor every 5 minutes at most often (Lambda runs and S3 objects cost), daily at least
#: (the window an attacker has to re-write the unanchored tail).
MIN_ANCHOR_MINUTES = 5
MAX_ANCHOR_MINUTES = 1440
DEFAULT_LEDGER_ID = "access"
_LEDGER_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def retention_problem(value: object) -> str | None:
    """Why ``value`` is not an allowed retention in days, or None."""
    if not _whole_number(value) or not (
        MIN_RETENTION_DAYS <= value <= MAX_RETENTION_DAYS  # type: ignore[operator]
    ):
        return (
            f"{shown(value)} is not allowed; allowed: a whole number of days from "
            f"{MIN_RETENTION_DAYS} (the legal minimum: one year of logs, DPDP Rules 2025 "
            f"rule 6(1)(e)) to {MAX_RETENTION_DAYS}"
        )
    return None


def anchor_interval_problem(value: object) -> str | None:
    if not _whole_number(value) or not (
        MIN_ANCHOR_MINUTES <= value <= MAX_ANCHOR_MINUTES  # type: ignore[operator]
    ):
        return (
            f"{shown(value)} is not allowed; allowed: whole minutes from {MIN_ANCHOR_MINUTES} "
            f"to {MAX_ANCHOR_MINUTES}"
        )
    return None


def ledger_id_problem(value: object) -> str | None:
    if not isinstance(value, str) or not _LEDGER_ID_RE.fullmatch(value):
        return (
            f"{shown(value)} is not allowed; allowed: 1-32 of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return None
