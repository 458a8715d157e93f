"""Writing one section of the evidence pack as JSON and CSV at once, as a stream.

Rows are written as they come, so a section of a million rows costs one row of
memory. The JSON file is one array (written element by element); the CSV file has
a header and one line per row. Text that a spreadsheet would run as a formula
(starting with ``= + - @``, tab or CR) is prefixed with ``'`` in the CSV only: the
JSON keeps the exact value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

_FORMULA_START = frozenset("=+-@\t\r")


#: One encoder for every row (json.dumps with options builds a new one per call).
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str).encode


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def csv_cell(value: object) -> object:
    """A value as a CSV cell: nested values as JSON, formula-like text defused."""
    if isinstance(value, str):
        return "'" + value if value[:1] in _FORMULA_START else value
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return dumps(value)
    return value


class Section:
    """``<name>.json`` (an array) and ``<name>.csv`` in ``folder``; use as a context manager."""

    def __init__(self, folder: Path, name: str, fields: Sequence[str]) -> None:
        self.name = name
        self.fields = tuple(fields)
        self.count = 0
        self._json: IO[str] = (folder / f"{name}.json").open("w", encoding="utf-8")
        self._csv_file: IO[str] = (folder / f"{name}.csv").open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file, lineterminator="\n")
        self._csv.writerow(self.fields)
        self._json.write("[")

    def write(self, row: dict[str, Any]) -> None:
        # Rows keep their fields' order (no sorting): the hot path of a million-row section.
        text = _ROW_ENCODER(row)
        self._json.write(("\n" if self.count == 0 else ",\n") + text)
        self._csv.writerow([csv_cell(row.get(key, "")) for key in self.fields])
        self.count += 1

    def close(self) -> None:
        self._json.write("\n]\n" if self.count else "]\n")
        self._json.close()
        self._csv_file.close()

    def __enter__(self) -> Section:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json(path: Path, value: Any) -> None:
    path.write_text(
        json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str) + "\n",
        encoding="utf-8",
    )
