"""The ledger's hash chain: canonical records and the streaming verifier (property tests)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core.ledger import (
    GENESIS,
    MAX_LINE_BYTES,
    MAX_RECORD_BYTES,
    LedgerError,
    Record,
    anchor_of,
    bounded_lines,
    canonical,
    line_digest,
    next_record,
    parse_anchor,
    parse_record,
    read_anchors,
    record_digest,
)
from iot_remote_access.core.ledger_verify import AnchorConflict, verify
from tests.support.ledger_chain import (
    START,
    anchors_every,
    build_chain,
    decision,
    export,
    lines,
)

# Any JSON the ledger accepts: integers, text (any Unicode but lone surrogates), lists, objects.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_payload = st.builds(
    lambda extra, kind: {**extra, "event": kind},
    st.dictionaries(_text, _json, max_size=4),
    st.sampled_from(["tunnel.open", "tunnel.close", "cert.issue", "écluse ✓"]),
)
_chain = st.lists(_payload, min_size=1, max_size=12).map(lambda data: build_chain(len(data), data))
_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _verify_bytes(blob: bytes, anchors: list = ()):  # type: ignore[no-untyped-def, assignment]
    return verify(bounded_lines(io.BytesIO(blob)), anchors)


@_FAST
@given(_chain)
def test_a_valid_chain_holds_and_every_anchor_is_checked(records: list[Record]) -> None:
    anchors = anchors_every(records, 3)
    result = _verify_bytes(export(records), anchors)
    assert result.holds, result.broken
    assert (result.records, result.first_seq, result.last_seq) == (
        len(records),
        0,
        len(records) - 1,
    )
    assert result.anchors_checked == len(anchors)


@_FAST
@given(_chain, st.data())
def test_any_single_byte_change_anywhere_is_detected(
    records: list[Record], data: st.DataObject
) -> None:
    blob = bytearray(export(records))
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[position]), label="byte")
    blob[position] = new
    # No anchors at all: the chain alone must catch a changed byte.
    result = _verify_bytes(bytes(blob))
    assert not result.holds
    line_of_change = bytes(blob[:position]).count(b"\n")
    assert result.broken is not None and result.broken.seq == line_of_change, result.broken


@_FAST
@given(_chain.filter(lambda r: len(r) >= 2), st.data())
def test_a_deleted_record_is_reported_at_its_sequence_number(
    records: list[Record], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(records) - 2))
    damaged = records[:index] + records[index + 1 :]
    result = _verify_bytes(export(damaged))
    assert result.broken is not None
    if index == 0:
        # The export now starts at record 1, and nothing vouches for its prev digest.
        assert result.broken.seq == 1
        assert "no anchor vouches for record 0 or 1" in result.broken.reason
    else:
        assert result.broken.seq == index
        assert f"record(s) {index} missing" in result.broken.reason


@_FAST
@given(_chain.filter(lambda r: len(r) >= 2), st.data())
def test_two_swapped_records_are_reported_where_the_order_breaks(
    records: list[Record], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(records) - 2))
    damaged = list(records)
    damaged[index], damaged[index + 1] = damaged[index + 1], damaged[index]
    result = _verify_bytes(export(damaged))
    assert result.broken is not None
    # Swapping record 0 away leaves an export that starts at record 1, unanchored.
    assert result.broken.seq == (index if index else 1), result.broken


@_FAST
@given(_chain.filter(lambda r: len(r) >= 2), st.data())
def test_an_edited_and_rehashed_record_breaks_the_next_link_or_its_anchor(
    records: list[Record], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(records) - 1))
    target = records[index]
    forged_data = {**target.data, "requester": "someone-else"}
    forged = replace(
        target,
        data=forged_data,
        hash=record_digest(target.seq, target.time, target.prev, forged_data),
    )
    if forged.hash == target.hash:
        return  # the edit changed nothing
    damaged = [*records[:index], forged, *records[index + 1 :]]
    anchors = anchors_every(records, 4)  # always anchors the last record
    anchored = {a.seq for a in anchors}
    result = _verify_bytes(export(damaged), anchors)
    assert result.broken is not None
    expected = index if index in anchored else index + 1
    assert result.broken.seq == expected, result.broken


@_FAST
@given(_chain, st.data())
def test_a_rewritten_tail_is_caught_by_the_first_anchor_it_covers(
    records: list[Record], data: st.DataObject
) -> None:
    # The forger re-computes every digest from ``index`` on: the chain alone still holds.
    index = data.draw(st.integers(0, len(records) - 1))
    head = records[index - 1] if index else None
    rewritten = records[:index] + build_chain(
        len(records) - index,
        [{**r.data, "thing": "elsewhere"} for r in records[index:]],
        start=head,
    )
    assert _verify_bytes(export(rewritten)).holds
    anchors = anchors_every(records, 3)
    first_covered = min(a.seq for a in anchors if a.seq >= index)
    result = _verify_bytes(export(rewritten), anchors)
    assert result.broken is not None and result.broken.seq == first_covered
    assert "anchor" in result.broken.reason


@_FAST
@given(_chain, st.data())
def test_truncation_before_an_anchor_is_detected(
    records: list[Record], data: st.DataObject
) -> None:
    keep = data.draw(st.integers(0, len(records) - 1))
    anchors = anchors_every(records, 5)
    result = _verify_bytes(export(records[:keep]), anchors)
    # An empty export is reported at the first record an anchor vouches for.
    expected = keep if keep else min(a.seq for a in anchors)
    assert result.broken is not None and result.broken.seq == expected
    assert "truncated" in result.broken.reason


def test_an_inserted_record_is_detected() -> None:
    records = build_chain(5)
    inserted = next_record(records[1], decision(99), START)  # seq 2, prev = digest of 1
    damaged = [*records[:2], inserted, *records[2:]]
    result = _verify_bytes(export(damaged))
    assert result.broken is not None
    assert result.broken.seq == 3
    assert "found record 2 after 2" in result.broken.reason


def test_a_period_export_must_start_at_an_anchored_record() -> None:
    records = build_chain(10)
    anchors = anchors_every(records, 4)  # seqs 3, 7, 9
    assert _verify_bytes(export(records[4:]), anchors).holds  # prev vouched by anchor 3
    assert _verify_bytes(export(records[3:]), anchors).holds  # record 3 itself anchored
    unanchored = _verify_bytes(export(records[5:]), anchors)
    assert unanchored.broken is not None and unanchored.broken.seq == 5
    assert "no anchor vouches for record 4 or 5" in unanchored.broken.reason


def test_conflicting_anchors_are_refused() -> None:
    records = build_chain(3)
    other = build_chain(3, [decision(7)] * 3)
    with pytest.raises(AnchorConflict, match="different digests for record 2"):
        _verify_bytes(export(records), [anchor_of(records[2], START), anchor_of(other[2], START)])


def test_first_record_must_start_from_genesis() -> None:
    (record,) = build_chain(1)
    fake_prev = "a" * 64
    forged = replace(
        record, prev=fake_prev, hash=record_digest(0, record.time, fake_prev, record.data)
    )
    result = _verify_bytes(export([forged]))
    assert result.broken is not None and "genesis" in result.broken.reason
    assert record.prev == GENESIS


# -- canonical form and hostile values ----------------------------------------------------


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": float("nan")}, "no floats"),
        ({"x": 1.5}, "no floats"),
        ({"x": 2**60}, "out of range"),
        ({"x": "\ud800"}, "lone surrogate"),
        ({1: "x"}, "is not a string"),
        ({"x": "y" * (MAX_RECORD_BYTES + 1)}, "larger than"),
        ({"x": [[[[[[[[[[1]]]]]]]]]]}, "deeper than 8"),
        ({"x": b"bytes"}, "bytes"),
    ],
)
def test_values_without_one_spelling_or_too_big_are_refused(value: object, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        canonical(value)  # type: ignore[arg-type]


def test_a_decision_needs_its_kind() -> None:
    with pytest.raises(LedgerError, match=r"data\.event: None is not allowed"):
        next_record(None, {"thing": "x"}, START)


def test_naive_times_are_refused() -> None:
    with pytest.raises(LedgerError, match="no time zone"):
        next_record(None, {"event": "tunnel.open"}, datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a":' + b"9" * 5000 + b"}", "out of range"),
        (b'{"a":"\\ud800"}', "lone surrogate"),
        (b'{"a":1', "is not JSON"),
        (b"[1]", "not an object"),
        (b'{"seq":1}', "has keys"),
        (b'{"data":{},"hash":"x","prev":"' + b"0" * 64 + b'","seq":0,"time":"t"}', "time"),
        (
            b'{"data":{"x":NaN},"hash":"'
            + b"0" * 64
            + b'","prev":"'
            + b"0" * 64
            + b'","seq":0,"time":"2026-01-01T00:00:00.000000Z"}',
            "no floats",
        ),
    ],
)
def test_hostile_lines_are_refused_with_a_reason(line: bytes, message: str) -> None:
    with pytest.raises(LedgerError, match=message):
        parse_record(line)


def test_a_record_in_another_spelling_is_refused() -> None:
    (record,) = build_chain(1)
    respelled = json.dumps(json.loads(record.line()), sort_keys=True).encode()  # spaces added
    with pytest.raises(LedgerError, match="canonical form"):
        parse_record(respelled)
    assert parse_record(record.line()) == record


def test_a_huge_line_costs_bounded_memory_and_is_reported() -> None:
    records = build_chain(3)
    blob = (
        records[0].line() + b"\n" + b"x" * (5 * MAX_LINE_BYTES) + b"\n" + records[1].line() + b"\n"
    )
    got = list(bounded_lines(io.BytesIO(blob)))
    assert got == [records[0].line(), None, records[1].line()]
    result = _verify_bytes(blob)
    assert result.broken is not None and result.broken.seq == 1
    assert "longer than" in result.broken.reason


def test_anchor_files_are_read_strictly() -> None:
    records = build_chain(2)
    anchor = anchor_of(records[1], START)
    assert read_anchors([anchor.line(), b"", anchor.line()]) == [anchor, anchor]
    assert parse_anchor(anchor.line()) == anchor
    with pytest.raises(LedgerError, match=r"anchor line 2: anchor.head: 'nope'"):
        read_anchors([anchor.line(), b'{"head":"nope","seq":1,"time":"x"}'])
    with pytest.raises(LedgerError, match=r"anchor line 1: .* longer than"):
        read_anchors([None])


def test_lines_helper_matches_export() -> None:
    records = build_chain(4)
    assert b"".join(line + b"\n" for line in lines(records) if line) == export(records)
    assert datetime.fromisoformat(records[0].time.replace("Z", "+00:00")).tzinfo == UTC


@_FAST
@given(_chain)
def test_the_fast_line_digest_equals_the_digest_of_the_record(records: list[Record]) -> None:
    for record in records:
        assert line_digest(record.line(), record) == record.hash
