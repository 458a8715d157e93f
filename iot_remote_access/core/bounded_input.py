"""Untrusted files and values, read and quoted within limits (stdlib only).

Settings files (``azure``/``gcp`` commands), templates and policies (``lint``)
and inventory files (``certs plan``) all come from users or CI checkouts. Each
is read here with a size limit, refused if binary or not UTF-8, parsed as JSON
with duplicate keys refused, and checked for nesting depth and total size
*before* any consumer walks it. Every problem is a :class:`BoundedInputError`
whose message is one short line; values are quoted with :func:`excerpt`.

The YAML side (PyYAML) lives with its callers (``settings.files``,
``guard.sources``): this module stays stdlib-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: Default limits: generous for real settings, templates and inventories.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
#: Containers plus scalars after parsing (aliases counted once per use).
MAX_NODES = 2_000_000
#: Characters of a value quoted in a message.
EXCERPT_CHARS = 40
_CHUNK_BYTES = 1024 * 1024


class BoundedInputError(ValueError):
    """Input beyond a limit or not parseable; ``problem`` is the message without the file."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of ``value``, cut to about ``limit`` characters, safe for a terminal.

    Containers are summarised (their repr can be unbounded, or shared many times
    over by YAML aliases); strings are cut with their length noted. ``repr``
    escapes control, bidi and surrogate characters, so nothing in the excerpt can
    move the cursor or reorder the line.
    """
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, list | tuple | set | frozenset):
        return f"a list of {len(value)} items"
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, bytes) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} bytes)"
    text = repr(value)
    return text if len(text) <= limit + 20 else text[: limit + 20] + "..."


def one_line(message: str, limit: int = 600) -> str:
    """``message`` as one terminal-safe line of at most about ``limit`` characters."""
    cleaned = "".join(
        ch if ch.isprintable() or ch in "\t\n" else f"\\u{ord(ch):04x}" for ch in message
    )
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + f"... ({len(cleaned) - limit} more characters)"
    return cleaned


def read_text(path: Path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> str:
    """The file as text: at most ``max_bytes``, not binary, valid UTF-8 (a BOM is dropped)."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            return read_stream(handle, source, max_bytes=max_bytes)
    except OSError as error:
        raise BoundedInputError(source, f"cannot read {what} ({error.strerror or error})") from None


def read_stream(stream: BinaryIO, source: str, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """As :func:`read_text`, from an open binary stream (e.g. stdin, named ``source``)."""
    chunks: list[bytes] = []
    total = 0
    # In chunks: read(max_bytes + 1) would allocate the whole limit up front.
    while chunk := stream.read(_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise BoundedInputError(
                source, f"larger than {max_bytes} bytes; allowed: a smaller file"
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    if b"\x00" in data:
        raise BoundedInputError(
            source, "is a binary file (NUL bytes); allowed: a UTF-8 text file (JSON, YAML or CSV)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise BoundedInputError(
            source,
            f"not UTF-8 (byte 0x{data[error.start]:02x} at line {line}); "
            "allowed: a UTF-8 text file",
        ) from None
    return text.removeprefix("\ufeff")


def parse_json(text: str, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """JSON with duplicate keys refused, nesting depth and size checked."""
    _check_bracket_depth(text, source, max_depth)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys(source))
    except BoundedInputError:
        raise
    except json.JSONDecodeError as error:
        raise BoundedInputError(
            source, f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise BoundedInputError(source, f"not valid JSON: {one_line(str(error), 120)}") from None
    except RecursionError:  # pragma: no cover - _check_bracket_depth refuses it first
        raise BoundedInputError(source, f"nested deeper than {max_depth} levels") from None
    check_shape(data, source, max_depth=max_depth)
    return data


def _check_bracket_depth(text: str, source: str, max_depth: int) -> None:
    # json's parser recurses once per level: refuse deep input before it does.
    # Brackets inside strings count too, so this over-estimates; the exact depth
    # is checked again after parsing, and only an implausible count stops here.
    depth = 0
    limit = max(max_depth * 4, 256)
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                raise BoundedInputError(
                    source, f"nested deeper than {max_depth} levels; allowed: at most {max_depth}"
                )
        elif ch in "]}":
            depth -= 1


def _unique_keys(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise BoundedInputError(
                    source, f"duplicate key {excerpt(key)}; allowed: each key once per object"
                )
            result[key] = value
        return result

    return hook


def check_shape(
    data: Any, source: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> None:
    """Refuse ``data`` nested deeper than ``max_depth`` or holding more than ``max_nodes``.

    Iterative (no recursion to exhaust) and counts a shared container each time
    it is reached, which is what a consumer walking the data would pay.
    """
    nodes = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise BoundedInputError(
                source,
                f"more than {max_nodes} values (YAML aliases expand to that?); "
                "allowed: a smaller document",
            )
        if isinstance(value, dict | list | tuple):
            if depth > max_depth:
                raise BoundedInputError(
                    source, f"nested deeper than {max_depth} levels; allowed: at most {max_depth}"
                )
            stack.extend((child, depth + 1) for child in _children(value))


def _children(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    else:
        yield from value
