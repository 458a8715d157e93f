"""Optional ledger recording for the deciding functions (broker, sweeper, certificate handlers).

A function records its decisions only when its environment names a ledger
(``AccessLedger.connect`` / ``writer_environment()`` sets ``LEDGER_TABLE``); without
one it behaves exactly as it did before the ledger existed. ``Recorder.record``
appends one decision and returns what the audit log line says about it
(``{"recorded": true, "seq": N}`` or ``{"recorded": false, "error": ...}``), so every
log line of a decision tells whether the ledger holds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from iot_remote_access.core.ledger import LedgerError, Record
from iot_remote_access.core.ledger_records import recordable
from iot_remote_access.lambdas.ledger.store import TABLE_VARIABLE, LedgerUnavailable, LedgerWriter


class Recorder:
    """Appends decisions to a ledger; ``writer`` None means "no ledger configured"."""

    def __init__(self, writer: LedgerWriter | None) -> None:
        self.writer = writer
        #: What the last append said (``logged``/``not_recorded``), for the caller's log line.
        self.last: dict[str, Any] | None = None

    @classmethod
    def from_environment(cls) -> Recorder:
        """A recorder for the ledger named in the environment, or a no-op one."""
        if not os.environ.get(TABLE_VARIABLE):
            return cls(None)
        return cls(LedgerWriter.from_environment())

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def append(self, data: Mapping[str, Any]) -> Record | None:
        """Append ``data`` (made recordable); None without a ledger.

        Raises ``LedgerUnavailable`` when it could not be stored: callers decide what
        that means for their decision (fail closed, or fail the run).
        """
        if self.writer is None:
            return None
        try:
            record = self.writer.append(recordable(data))
        except LedgerError as error:  # recordable() leaves nothing to refuse but size
            unavailable = LedgerUnavailable(f"the record was refused: {error}")
            self.last = not_recorded(unavailable)
            raise unavailable from None
        except LedgerUnavailable as error:
            self.last = not_recorded(error)
            raise
        self.last = logged(record)
        return record

    def take_last(self) -> dict[str, Any] | None:
        """The note of the last append, once (None when nothing was appended since)."""
        note, self.last = self.last, None
        return note

    def record(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """Append and report, never raise: for decisions that stand without a record
        (a refusal is safe unrecorded). None without a ledger (the log line stays as it was)."""
        if self.writer is None:
            return None
        try:
            return logged(self.append(data))
        except LedgerUnavailable as error:
            return not_recorded(error)


def logged(record: Record | None) -> dict[str, Any] | None:
    """What a log line says about a record that was appended."""
    return None if record is None else {"recorded": True, "seq": record.seq}


def not_recorded(error: Exception) -> dict[str, Any]:
    """What a log line says about a record that could not be appended (never a secret:
    LedgerUnavailable messages name an error code or a record number only)."""
    return {"recorded": False, "error": str(error)[:300]}
