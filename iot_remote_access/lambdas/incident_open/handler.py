"""Incident opener: a high-severity security finding starts the NIS2 clocks.

Triggered by an EventBridge rule on ``source: iot-remote-access.security`` events with
``detail.severity: high``. Appends ``incident.open`` to the access ledger (detected
at, early warning due at +24 h, notification due at +72 h) and keeps the incident's
clock item next to the chain. The incident's id is ``inc-<ledger seq>``. A finding
seen twice (lifecycle events may be delivered twice) opens one incident.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from iot_remote_access.core.incident_clock import IncidentError, open_record, parse_utc
from iot_remote_access.core.log_safety import json_for_logs
from iot_remote_access.lambdas.incidents.store import IncidentStore
from iot_remote_access.lambdas.ledger.store import LedgerWriter

logger = Logger(json_serializer=json_for_logs)


@cache
def runtime() -> tuple[LedgerWriter, IncidentStore]:
    writer = LedgerWriter.from_environment()
    return writer, IncidentStore(
        writer.client, writer.table_name, writer.ledger_id, writer.retention.days
    )


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    writer, store = runtime()
    return open_incident(event, writer, store, now=datetime.now(UTC))


def open_incident(
    event: Any, writer: LedgerWriter, store: IncidentStore, *, now: datetime
) -> dict[str, Any]:
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or detail.get("severity") != "high":
        logger.warning("not a high-severity finding; no incident opened")
        return {"incident": None}
    try:
        detected = parse_utc(detail.get("observedAt"), "detail.observedAt")
    except IncidentError as error:
        logger.warning("malformed finding", extra={"problem": str(error)})
        return {"incident": None, "error": str(error)}
    finding_id = hashlib.sha256(
        json.dumps(detail, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    # Bounded and valid Unicode: a hostile finding must still open its incident, and a
    # record the ledger refuses (over 16 KiB, a lone surrogate) would be retried forever.
    detection, thing = _clean(detail.get("detection"), 64), _clean(detail.get("thingName"), 128)
    for known in store.incidents():
        if known.detection == detection and known.detected_at == detected and known.thing == thing:
            return {"incident": known.id, "duplicate": True}
    data = open_record(
        detection=detection or "",
        thing=thing,
        summary=_clean(detail.get("summary"), 300) or "",
        detected_at=detected,
        finding_id=finding_id,
    )
    record = writer.append(data)  # LedgerUnavailable: the run fails and EventBridge retries
    store.put_open(record.seq, data, now)
    incident = f"inc-{record.seq}"
    logger.info(
        "incident opened", extra={"incident": incident, "notificationDue": data["notificationDue"]}
    )
    return {
        "incident": incident,
        "earlyWarningDue": data["earlyWarningDue"],
        "notificationDue": data["notificationDue"],
    }


def _clean(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:limit].encode("utf-8", "replace").decode("utf-8")
