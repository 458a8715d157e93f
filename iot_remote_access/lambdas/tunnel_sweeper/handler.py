"""Tunnel sweeper: closes tunnels the broker would not let stay open.

Runs on a schedule. For every OPEN tunnel in the account and region it reads
``DescribeTunnel`` and closes the tunnel when ``core.tunnel_rules.close_reason``
says so: past its allowed lifetime (defense in depth: AWS enforces the timeout
too, and tunnels opened around the broker get the deployment's maximum), or its
source has not been connected for the grace period. Each close is one structured
audit record and, when the environment names an access ledger, one ledger record
appended after the close (closing is never held back by the ledger: a tunnel that
must close, closes). A failure on one tunnel does not stop the others; the run then
fails so that the function's Errors metric shows it. A close whose record could not
be stored is appended again at the end of the run; if that fails too, its audit
log line (``ledger.recorded: false``) and CloudTrail's CloseTunnel event are what
remain, and the run fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core.ledger_records import TUNNEL_CLOSE
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.core.tunnel_rules import (
    TAG_EXPIRES_AT,
    TAG_REQUESTER,
    TunnelPolicy,
    TunnelState,
    audit_record,
    close_reason,
    format_time,
)
from iot_remote_access.lambdas.ledger.recording import Recorder, logged, not_recorded
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

POLICY_VARIABLE = "TUNNEL_POLICY"

# Escape, never drop: hostile text in a record must not cost the record.
logger = Logger(json_serializer=json_for_logs)
# LibraryFunction sets the namespace; the fallback keeps metrics flowing wherever this runs.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "IotRemoteAccess"))

_tunneling: Any = None


def tunneling() -> Any:
    """One client per container; tests replace ``_tunneling``."""
    global _tunneling
    if _tunneling is None:
        _tunneling = boto3.client(
            "iotsecuretunneling", config=Config(retries={"mode": "standard", "max_attempts": 5})
        )
    return _tunneling


_recorder: Recorder | None = None


def recorder() -> Recorder:
    """The ledger named in the environment (a no-op without one); tests replace ``_recorder``."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder.from_environment()
    return _recorder


@lru_cache(maxsize=4)
def _policy(text: str) -> TunnelPolicy:
    return TunnelPolicy.from_json(text) if text else TunnelPolicy()


class SweepFailed(Exception):
    """Some tunnels could not be read or closed (their ids, never tokens)."""


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    policy = _policy(os.environ.get(POLICY_VARIABLE, ""))
    return sweep(tunneling(), policy, now=datetime.now(UTC), ledger=recorder())


def sweep(
    client: Any, policy: TunnelPolicy, *, now: datetime, ledger: Recorder | None = None
) -> dict[str, Any]:
    """Close what must be closed; return the counts (and raise if anything failed)."""
    ledger = ledger or Recorder(None)
    closed: list[str] = []
    failed: list[str] = []
    unrecorded: list[dict[str, Any]] = []
    checked = 0
    # Listed in full first: closing while paging could shift the pages.
    for tunnel_id in list(_open_tunnel_ids(client)):
        checked += 1
        try:
            state = TunnelState.from_description(
                client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
            )
            reason = close_reason(state, now, policy)
            if reason is None:
                continue
            client.close_tunnel(tunnelId=tunnel_id, delete=False)
        except (ClientError, BotoCoreError) as error:
            if _code(error) == "ResourceNotFoundException":
                continue  # deleted since it was listed: nothing left to close
            failed.append(tunnel_id)
            logger.error(
                "could not sweep a tunnel", extra={"tunnelId": tunnel_id, "error": _code(error)}
            )
            continue
        closed.append(tunnel_id)
        audit = audit_record(
            event=TUNNEL_CLOSE,
            decision="closed",
            closedBy="sweeper",
            closeReason=reason,
            tunnelId=tunnel_id,
            thing=state.thing,
            requester=state.tags.get(TAG_REQUESTER),
            openedAt=format_time(state.created_at) if state.created_at else None,
            expiresAt=state.tags.get(TAG_EXPIRES_AT),
            at=format_time(now),
        )
        extra: dict[str, Any] = {"audit": audit}
        if ledger.enabled:
            # After one failure the ledger is taken as down for the rest of the run: each
            # failed append costs seconds, and the run must end within its timeout.
            extra["ledger"] = (
                ledger.record(audit)
                if not unrecorded
                else not_recorded(LedgerUnavailable("not tried: the ledger failed earlier"))
            )
            if not extra["ledger"]["recorded"]:
                unrecorded.append(audit)
        logger.info("tunnel closed by the sweeper", extra=extra)
        metrics.add_metric(name="TunnelsClosedBySweeper", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TunnelsChecked", unit=MetricUnit.Count, value=checked)
    lost = _record_again(ledger, unrecorded)
    if lost:
        metrics.add_metric(name="LedgerWriteFailures", unit=MetricUnit.Count, value=len(lost))
        failed += [f"{tunnel_id} (closed, not recorded in the ledger)" for tunnel_id in lost]
    if failed:
        metrics.add_metric(name="TunnelSweepFailures", unit=MetricUnit.Count, value=len(failed))
        raise SweepFailed(f"could not sweep {len(failed)} tunnel(s): {', '.join(failed)}")
    return {"checked": checked, "closed": closed}


def _record_again(ledger: Recorder, audits: list[dict[str, Any]]) -> list[str]:
    """Append the closes the ledger missed during the run; the tunnel ids still missing.

    Each retry is logged with the same audit record, so the log line that counts says
    whether the ledger finally holds it.
    """
    lost: list[str] = []
    failure: LedgerUnavailable | None = None
    for audit in audits:
        try:
            if failure is not None:  # still down: the others are not tried again
                raise failure
            note = logged(ledger.append(audit))
        except LedgerUnavailable as error:
            failure = error
            note = not_recorded(error)
            lost.append(str(audit.get("tunnelId")))
        logger.info("tunnel close recorded again", extra={"audit": audit, "ledger": note})
    return lost


def _open_tunnel_ids(client: Any) -> Iterator[str]:
    token: str | None = None
    while True:
        page = client.list_tunnels(maxResults=100, **({"nextToken": token} if token else {}))
        for summary in page.get("tunnelSummaries", []):
            if summary.get("status") == "OPEN":
                yield summary["tunnelId"]
        token = page.get("nextToken")
        if not token:
            return


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "Unknown"))
    return type(error).__name__
