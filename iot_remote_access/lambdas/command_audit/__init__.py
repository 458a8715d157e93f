"""One audit record per command decision: in the function's log group, and in the ledger.

The log group is the audit stream the tunnel broker uses too (``"audit": {...}`` in a
structured log line), which the SIEM export ships when the stack adds the log group
to ``SecurityMonitoring(log_groups_to_export=...)``. When the function has an
``AccessLedger``'s writer environment (``LEDGER_TABLE``), the same record is also
appended to the tamper-evident ledger. Staged with the command functions as a
shared package (``shared_packages=["command_audit", "ledger"]``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: Set by ``AccessLedger.writer_environment()``; without it nothing is appended.
LEDGER_TABLE_VARIABLE = "LEDGER_TABLE"

_writer: Any = None


class AuditUnavailable(Exception):
    """A decision that must be in the ledger could not be appended (fail closed)."""


def ledger_writer() -> Any:
    """The container's ``LedgerWriter``, or None when no ledger is configured."""
    global _writer
    if _writer is None and os.environ.get(LEDGER_TABLE_VARIABLE):
        # Imported only when configured: the ledger package is staged, but unused otherwise.
        from iot_remote_access.lambdas.ledger.store import LedgerWriter

        _writer = LedgerWriter.from_environment()
    return _writer


def record(
    logger: Any,
    message: str,
    audit: Mapping[str, Any],
    *,
    required: bool = False,
    ledger: bool = True,
) -> bool:
    """Log ``audit`` as one structured record and append it to the ledger if there is one.

    Returns False when the ledger should have taken it and did not. ``required``: raise
    :class:`AuditUnavailable` instead, so the caller does not carry out a decision that
    left no evidence. Otherwise the failure is logged (without the record's values) and
    the caller goes on. ``ledger=False``: log only (a caller that already knows the
    ledger is down for this run, so it does not wait for it again and again).
    """
    logger.info(message, extra={"audit": dict(audit)})
    try:
        writer = ledger_writer() if ledger else None
        if writer is not None:
            writer.append(dict(audit))
    except Exception as error:  # LedgerUnavailable, LedgerError, a bad environment
        logger.error(
            "ledger append failed",
            extra={"ledgerError": type(error).__name__, "event": audit.get("event")},
        )
        if required:
            raise AuditUnavailable(type(error).__name__) from None
        return False
    return ledger or ledger_writer() is None
