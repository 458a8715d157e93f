"""Durable file replacement: a reader sees the old file or the new one, never a part.

Power may fail at any instant. ``os.replace`` is atomic on POSIX file systems, but
only if the new content reached the disk before the rename, and the rename itself
is durable only once the directory is synced: write a temporary file, fsync it,
rename it over the target, fsync the directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: Temporary files carry this suffix; a restart after power loss removes them.
TEMP_SUFFIX = ".partial"


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` durably; the file is created with ``mode`` from the start.

    The temporary file is opened with ``mode`` (never wider), so a private key is not
    readable by others even for the instant before a ``chmod``.
    """
    temporary = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a power loss: never write through someone's link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened beyond mode
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def make_directory(path: Path, *, mode: int = 0o700) -> None:
    """Create ``path`` (and its parent) durably; nothing if it exists."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=mode)
    path.mkdir(mode=mode, exist_ok=True)
    fsync_directory(path.parent)


def remove_tree(path: Path) -> None:
    """Remove a directory of plain files durably (a pair of certificate files)."""
    if not path.exists():
        return
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    fsync_directory(path.parent)


def remove_partials(directory: Path) -> None:
    """Delete the temporary files a power loss left in ``directory`` and below."""
    if not directory.is_dir():
        return
    for stale in directory.rglob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
