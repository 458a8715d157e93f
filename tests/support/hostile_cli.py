"""Hostile input for the CLI and settings fuzz tests, and the contract they must meet.

The contract for bad input (issue 14): exit 2, exactly one short line on stderr
naming the field or file, no traceback, nothing on stdout, bounded time and
memory. ``hostile_file`` draws the kinds of input attackers and mistakes make:
deep nesting, YAML alias bombs, duplicate keys, invalid UTF-8 and surrogates,
control and bidi characters, huge values, binary content and wrong types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.support.cli_runner import CliResult, run_cli

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "iot-remote-access")
#: Examples per fuzz test: modest in CI; ``IRA_FUZZ_EXAMPLES=2000`` for the long run.
EXAMPLES = int(os.environ.get("IRA_FUZZ_EXAMPLES", "12"))
#: The longest error line the contract allows (the CLI cuts at 1000 + a note).
MAX_LINE = 1100
#: Per input: generous for a loaded 2-core CI machine, far below an alias bomb's minutes.
MAX_SECONDS = 20.0
MAX_PEAK_BYTES = 256 * 1024 * 1024

fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # No shrinking: a hostile example is small already, and shrinking one that
    # takes seconds per run can take many minutes; the failing input is printed.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

CONTROL_AND_BIDI = "\x00\x07\x1b[31m\x1b]0;pwned\x07\r\b\u202e\u2066\u200f\ufeff\x85"


@dataclass(frozen=True)
class HostileFile:
    """Bytes for a file and the kind of hostility (for messages and statistics)."""

    kind: str
    data: bytes
    #: Certainly refused by every reader (the outcome must be exit 2).
    refused: bool = True


def _alias_bomb(levels: int, fan_out: int) -> bytes:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        items = ",".join(f"*a{level - 1}" for _ in range(fan_out))
        lines.append(f"a{level}: &a{level} [{items}]")
    return ("\n".join(lines) + "\n").encode()


def _deep(depth: int, as_yaml: bool) -> bytes:
    if as_yaml:
        return ("key: " + "[" * depth + "]" * depth + "\n").encode()
    return ('{"key": ' + "[" * depth + "]" * depth + "}").encode()


def _nested_object(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


@st.composite
def hostile_file(draw: st.DrawFn, *, valid_base: dict[str, Any] | None = None) -> HostileFile:
    """One hostile file; ``valid_base`` (a usable settings object) is mutated for wrong types."""
    kind = draw(
        st.sampled_from(
            [
                "deep",
                "deep-object",
                "alias-bomb",
                "duplicate-key",
                "invalid-utf8",
                "surrogate",
                "binary",
                "huge",
                "control-bidi-key",
                "wrong-type",
                "random-text",
            ]
        )
    )
    if kind == "deep":
        return HostileFile(kind, _deep(draw(st.integers(65, 50_000)), draw(st.booleans())))
    if kind == "deep-object":
        return HostileFile(kind, _nested_object(draw(st.integers(65, 20_000))))
    if kind == "alias-bomb":
        return HostileFile(kind, _alias_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 12))))
    if kind == "duplicate-key":
        key = draw(st.text(min_size=1, max_size=20))
        value = json.dumps(draw(st.text(max_size=10)))
        dumped = json.dumps(key)
        return HostileFile(kind, f"{{{dumped}: {value}, {dumped}: {value}}}".encode())
    if kind == "invalid-utf8":
        prefix = draw(st.text(max_size=50)).encode()
        return HostileFile(
            kind, prefix + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]))
        )
    if kind == "surrogate":
        text = (
            '{"telemetryTopic": "' + draw(st.sampled_from(["\ud800", "\udfff", "\udc80x"])) + '"}'
        )
        return HostileFile(kind, text.encode("utf-8", "surrogatepass"))
    if kind == "binary":
        return HostileFile(kind, draw(st.binary(min_size=1, max_size=4096)) + b"\x00")
    if kind == "huge":
        size = draw(st.sampled_from([1024 * 1024 + 1, 3 * 1024 * 1024, 20 * 1024 * 1024]))
        return HostileFile(kind, b'{"telemetryTopic": "' + b"A" * size + b'"}')
    if kind == "control-bidi-key":
        key = draw(st.text(alphabet=CONTROL_AND_BIDI.replace("\x00", "") + "ab", min_size=1))
        return HostileFile(kind, json.dumps({key: draw(st.text(max_size=30))}).encode())
    if kind == "wrong-type" and valid_base is not None:
        return HostileFile(kind, json.dumps(_wrong_type(draw, valid_base)).encode())
    text = draw(st.text(max_size=300))
    return HostileFile("random-text", text.encode("utf-8", "surrogatepass"), refused=False)


def _wrong_type(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one scalar (at any depth) replaced by a value of another JSON type."""
    paths = list(_scalar_paths(base))
    path = draw(st.sampled_from(paths))
    old = _get(base, path)
    wrong = draw(
        st.sampled_from(
            ["no", "365", "", 3.5, -1, 10**30, None, [], {}, ["x"], {"a": 1}, True, "x" * 5000]
        ).filter(lambda new: type(new) is not type(old))
    )
    copy = json.loads(json.dumps(base))
    parent = _get(copy, path[:-1])
    parent[path[-1]] = wrong
    return copy


def _scalar_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _scalar_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _scalar_paths(child, (*path, index))
    elif isinstance(value, str | bool):
        yield path


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@contextmanager
def bounded(max_seconds: float = MAX_SECONDS, max_bytes: int = MAX_PEAK_BYTES) -> Iterator[None]:
    """Fail when the block takes more than ``max_seconds`` of CPU or allocates more than ``max_bytes``."""
    tracemalloc.start()
    started, cpu_started = time.monotonic(), time.process_time()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu_started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # CPU time is the bound (CI machines are shared: one input once took 156 s of
    # wall time for under 20 s of CPU); wall time only catches hangs.
    assert cpu < max_seconds, f"took {cpu:.1f} s of CPU"
    assert elapsed < 600, f"took {elapsed:.1f} s"
    assert peak < max_bytes, f"allocated {peak / 1e6:.0f} MB at peak"


def assert_refused(result: CliResult, *names: str) -> str:
    """Exit 2, one short terminal-safe line on stderr naming one of ``names``, nothing else."""
    assert result.code == 2, (result.code, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:3000]
    line = lines[0]
    assert line.startswith("error: "), line[:300]
    assert len(line) <= MAX_LINE, len(line)
    assert all(ch.isprintable() for ch in line), repr(line[:300])
    assert any(name in line for name in names), (names, line[:300])
    assert result.stdout == ""
    return line


def run_bounded(*args: str) -> CliResult:
    """The real entry point, in-process, within the time and memory bounds."""
    with bounded():
        return run_cli(*args)


def run_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[CliResult, float]:
    """The installed console script in a subprocess: its result and its own peak RSS (MB).

    A small wrapper process runs the script and reports its only child's peak RSS:
    this process's RUSAGE_CHILDREN would be the largest of every child it ever had
    (a cdk synth's Node.js in the same pytest worker, say), not this command's.
    """
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        completed = subprocess.run(
            [sys.executable, "-c", _MEASURED, str(peak_file), CONSOLE_SCRIPT, *args],
            cwd=cwd,
            env=env if env is not None else dict(os.environ),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        peak_mb = int(peak_file.read_text()) / 1024
    return CliResult(completed.returncode, completed.stdout, completed.stderr), peak_mb


_MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[2:], check=False).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def nothing_written(folder: Path) -> Callable[[], bool]:
    """A check that ``folder`` is still empty (or absent)."""
    return lambda: not folder.exists() or not any(folder.iterdir())
