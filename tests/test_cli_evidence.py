"""`iot-remote-access evidence verify`: exit 0 holds, 1 broken (one line, the record), 2 bad input.

Hostile files are fuzzed through the real entry point: whatever the bytes, one line on
stderr, exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core.ledger import MAX_ANCHORS, MAX_LINE_BYTES
from tests.support.cli_runner import CliResult, run_cli
from tests.support.ledger_chain import anchor_file, anchors_every, build_chain, export

RECORDS = build_chain(30)
ANCHORS = anchors_every(RECORDS[:25], 8)  # seqs 7, 15, 23, 24


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    chain, anchors = tmp_path / "chain.jsonl", tmp_path / "anchors.jsonl"
    chain.write_bytes(export(RECORDS))
    anchors.write_bytes(anchor_file(ANCHORS))
    return chain, anchors


def _verify(chain: Path, anchors: Path, *extra: str) -> CliResult:
    return run_cli("evidence", "verify", str(chain), "--anchors", str(anchors), *extra)


def _one_line_error(result: CliResult) -> str:
    assert result.stdout == "" or result.stdout.startswith("{")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_chain_that_holds_exits_0_and_says_what_is_not_yet_anchored(
    files: tuple[Path, Path],
) -> None:
    result = _verify(*files)
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout == (
        "holds: 30 record(s), seq 0..29, 4 anchor(s) checked; "
        "records 25..29 are after the last anchor (not yet anchored)\n"
    )


def test_json_output(files: tuple[Path, Path]) -> None:
    result = _verify(*files, "--json")
    assert result.code == 0
    assert json.loads(result.stdout) == {
        "holds": True,
        "records": 30,
        "firstSeq": 0,
        "lastSeq": 29,
        "anchorsChecked": 4,
        "lastAnchoredSeq": 24,
        "broken": None,
    }


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda lines: lines[:12] + lines[13:],
            "record 12: record(s) 12 missing (deleted or moved)",
        ),
        (
            lambda lines: [*lines[:5], lines[6], lines[5], *lines[7:]],
            "record 5: record(s) 5 missing (deleted or moved): found 6 after 4",
        ),
        (lambda lines: lines[:20], "record 20: the chain ends at record 19 but the anchor of"),
        (
            lambda lines: [*lines[:9], lines[9].replace(b"sensor-2", b"sensor-3"), *lines[10:]],
            "record 9: digest does not match the record's content (edited)",
        ),
        (
            lambda lines: [*lines[:3], lines[3] + b" ", *lines[4:]],
            "record 3: line 4 is not a ledger record: is not in canonical form",
        ),
    ],
    ids=["deleted", "swapped", "truncated", "edited", "respelled"],
)
def test_tampering_exits_1_naming_the_record(
    files: tuple[Path, Path], damage: object, expected: str
) -> None:
    chain, anchors = files
    lines = chain.read_bytes().splitlines()
    chain.write_bytes(b"\n".join(damage(lines)) + b"\n")  # type: ignore[operator]
    result = _verify(chain, anchors)
    assert result.code == 1
    assert _one_line_error(result).startswith(f"error: chain broken at {expected}")


@pytest.mark.parametrize(
    ("chain_bytes", "anchor_bytes", "expected"),
    [
        (
            b"\x00\xff" * 100,
            None,
            r"chain '.*' is not a ledger export: line 1 is not a ledger record: is not UTF-8",
        ),
        (b"[" * 100_000 + b"\n", None, r"is not a ledger export: line 1 is longer than"),
        (
            b"[" * 10_000 + b"\n",
            None,
            r"is not a ledger export: line 1 is not a ledger record: is nested too deeply",
        ),
        (b"x" * (3 * MAX_LINE_BYTES), None, r"is not a ledger export: line 1 is longer than"),
        (None, b"", r"--anchors: the anchor file\(s\) hold no anchor"),
        (
            None,
            b'{"head":"' + b"0" * 64 + b'","seq":1.5,"time":"x"}\n',
            r"anchor line 1: anchor: '1.5' is not allowed; allowed: integers \(no floats",
        ),
        (None, b"{}\n" * 2 + b"[" * 50_000, r"anchor line 1: anchor: has keys"),
    ],
    ids=[
        "binary",
        "huge-deep-line",
        "deep-json",
        "huge-line-no-newline",
        "no-anchor",
        "float-anchor",
        "bad-anchor",
    ],
)
def test_unusable_input_exits_2_with_one_line(
    files: tuple[Path, Path], chain_bytes: bytes | None, anchor_bytes: bytes | None, expected: str
) -> None:
    chain, anchors = files
    if chain_bytes is not None:
        chain.write_bytes(chain_bytes)
    if anchor_bytes is not None:
        anchors.write_bytes(anchor_bytes)
    result = _verify(chain, anchors)
    assert result.code == 2, result
    assert re.search(expected, _one_line_error(result)), result.stderr


def test_missing_files_directories_and_missing_anchors_exit_2(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    chain, anchors = files
    assert "cannot be read (No such file or directory)" in _one_line_error(
        _verify(tmp_path / "nope", anchors)
    )
    assert "cannot be read" in _one_line_error(_verify(chain, tmp_path / "nope"))
    directory = run_cli("evidence", "verify", str(tmp_path), "--anchors", str(anchors))
    assert directory.code == 2 and "is a directory" in _one_line_error(directory)
    no_anchors = run_cli("evidence", "verify", str(chain))
    assert no_anchors.code == 2 and "--anchors" in _one_line_error(no_anchors)


def test_anchors_of_two_ledgers_are_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain, _ = files
    other = anchors_every(build_chain(25, [{"event": "cert.issue"}] * 25), 8)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(anchor_file([*ANCHORS, *other]))
    result = _verify(chain, mixed)
    assert result.code == 2
    assert "different digests for record 7" in _one_line_error(result)


def test_too_many_anchors_are_refused(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain, _ = files
    many = tmp_path / "many.jsonl"
    many.write_bytes((ANCHORS[0].line() + b"\n") * (MAX_ANCHORS + 1))
    result = _verify(chain, many)
    assert result.code == 2 and f"more than {MAX_ANCHORS}" in _one_line_error(result)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    junk=st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.just("1"),
            lambda c: c.map(lambda x: f"[{x}]") | c.map(lambda x: f'{{"a":{x}}}'),
            max_leaves=200,
        ).map(str.encode),
    ),
    where=st.sampled_from(["prefix", "middle", "replace", "anchors"]),
)
def test_fuzzed_hostile_files_never_traceback(
    files: tuple[Path, Path], junk: bytes, where: str
) -> None:
    chain, anchors = files
    good_chain, good_anchors = export(RECORDS), anchor_file(ANCHORS)
    chain.write_bytes(
        {
            "prefix": junk + good_chain,
            "middle": good_chain[:500] + junk + good_chain[500:],
            "replace": junk,
            "anchors": good_chain,
        }[where]
    )
    anchors.write_bytes(junk if where == "anchors" else good_anchors)
    result = _verify(chain, anchors)
    if result.code == 0:
        # Only empty junk leaves the files as they were.
        assert junk == b"" and where in ("prefix", "middle")
        return
    assert result.code in (1, 2)
    _one_line_error(result)


def test_the_console_script_reads_stdin_and_exits_1_on_tampering(files: tuple[Path, Path]) -> None:
    chain, anchors = files
    script = Path(sys.executable).parent / "iot-remote-access"
    ok = subprocess.run(
        [str(script), "evidence", "verify", "-", "--anchors", str(anchors)],
        input=chain.read_bytes(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (ok.returncode, ok.stderr) == (0, b"")
    assert ok.stdout.startswith(b"holds: 30 record(s)")
    tampered = chain.read_bytes().replace(b"sensor-4", b"sensor-5", 1)
    bad = subprocess.run(
        [str(script), "evidence", "verify", "-", "--anchors", str(anchors)],
        input=tampered,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("error: chain broken at record 4: digest does not match")
    assert bad.stderr.count(b"\n") == 1
