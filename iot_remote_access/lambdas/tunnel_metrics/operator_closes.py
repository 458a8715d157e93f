"""Tunnels closed by operators, in the access ledger (``tunnel.close``, ``closedBy`` the caller).

The library records its own closes where it decides them (the sweeper's ``tunnel.close``,
the broker's rolled-back opens); a tunnel an operator closes with ``tunnel close``, the
console or the API is no decision of the library, and reaches it only as CloudTrail's
``CloseTunnel`` event, which this function already receives. So this function appends
those, and skips the closes whose caller's role is one of the library's own closers
(``LEDGER_OWN_CLOSERS``, set by the stack): those are recorded by their function already.

At least once, never lost: the record is appended after the close is claimed in the
state table and the tunnel item then marked with its ``ledgerSeq``; an append that fails
fails the invocation (Lambda retries it, then the dead-letter queue and its alarm), and
the redelivered event, which the state table sees as a replay, is appended then because
the item has no ``ledgerSeq``. A crash between the append and the mark appends twice
(both records name the same ``eventId``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from iot_remote_access.core.aws_schema import LEDGER_OWN_CLOSERS_VARIABLE
from iot_remote_access.core.ledger import format_time
from iot_remote_access.core.ledger_records import TUNNEL_CLOSE
from iot_remote_access.core.tunnel_metrics import KnownTunnel, TunnelClosed
from iot_remote_access.lambdas.ledger.recording import Recorder, logged
from iot_remote_access.lambdas.tunnel_metrics.aws_state import DynamoDBTunnelStore

#: Set on the tunnel item once its operator close is in the ledger.
RECORDED_ATTRIBUTE = "ledgerSeq"
OPERATOR_REASON = "closed by an operator (CloseTunnel)"


def own_closers_from_environment() -> frozenset[str]:
    own = os.environ.get(LEDGER_OWN_CLOSERS_VARIABLE, "")
    return frozenset(arn.strip() for arn in own.split(",") if arn.strip())


class OperatorCloses:
    """Appends operator closes to the ledger; a no-op without one (``Recorder(None)``)."""

    def __init__(
        self, recorder: Recorder, store: DynamoDBTunnelStore, own_closers: frozenset[str]
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.own_closers = own_closers

    def wanted(self, closed: TunnelClosed) -> bool:
        """An operator's close, with a ledger to write to."""
        return self.recorder.enabled and closed.closer_role not in self.own_closers

    def record(self, closed: TunnelClosed, tunnel: KnownTunnel) -> dict[str, Any] | None:
        """Append the close and mark the tunnel; what the log line says about it.

        Raises LedgerUnavailable when it could not be appended (the invocation fails
        and is retried).
        """
        if not self.wanted(closed):
            return None
        record = self.recorder.append(
            {
                "event": TUNNEL_CLOSE,
                "decision": "closed",
                "closedBy": closed.closed_by or "(unknown caller)",
                "closeReason": OPERATOR_REASON,
                "tunnelId": tunnel.tunnel_id,
                "thing": tunnel.thing_name,
                "openedAt": format_time(tunnel.opened_at),
                "at": format_time(closed.closed_at),
                "eventId": closed.event_id,
            }
        )
        if record is None:  # no ledger configured (wanted() said so already)
            return None
        self.store.mark_close_recorded(tunnel.tunnel_id, record.seq)
        return logged(record)

    def record_replay(
        self, closed: TunnelClosed, tunnel: KnownTunnel, old: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A redelivered close whose first delivery could not append it: append it now.

        Only the same CloudTrail event (``closeEvent``) counts: another CloseTunnel of a
        closed tunnel closed nothing.
        """
        first_event = old.get("closeEvent", {}).get("S")
        if RECORDED_ATTRIBUTE in old or first_event != closed.event_id:
            return None
        return self.record(closed, tunnel)
