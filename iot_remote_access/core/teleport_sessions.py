"""Teleport's session audit events, as Cloud Logging exports them, as ledger records.

How the events reach us (``core/teleport_audit.py``): Teleport's auth service mirrors
every audit event to stdout, GKE's agent makes each line a Cloud Logging entry with the
event in ``jsonPayload``, and the Cloud Logging sink of ``gcp.accessProxy.auditSinkDestination``
exports session and access-request events to a Pub/Sub topic, one ``LogEntry`` (JSON)
per message. The ledger writer pulls from a subscription of that topic and maps:

- ``access_request.create``: not a record; its ``reason`` and ``max_duration`` are kept
  (per request id and per user, bounded) so the sessions under it say *why*;
- ``session.start``: ``gcp.proxy.session`` ``opened``: who (``user``), which device
  (``server_hostname``: the device's node name is its thing name), when, the login, and
  the request's reason and requested minutes;
- ``session.end``: ``closed``: when it started and stopped (``session_start`` /
  ``session_stop``), how long (``seconds``), who was in it, and how it ended: the request
  expired (Teleport disconnects expired certificates) or the operator ended it;
- ``session.rejected``: ``refused`` with Teleport's reason.

Field names follow Teleport's audit event reference (see ``tests/support/teleport_events.py``).
Standard library only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.ledger import format_time, shown
from iot_remote_access.core.ledger_records import proxy_session_record

#: Access requests kept for the sessions that follow them (a few hundred bytes each).
MAX_REQUESTS = 10_000
#: A session that stops within this of its request's expiry was ended by the expiry.
EXPIRY_SLACK = timedelta(seconds=60)
SERVICE = "ssh"
MAX_PARTICIPANTS = 10
ENDED_BY_EXPIRY = "access request expired (certificate disconnected)"
ENDED_BY_OPERATOR = "ended by the operator"


class UnusableEntry(ValueError):
    """A message that is not a Teleport audit log entry (named field, shortened value)."""


@dataclass(frozen=True)
class AccessRequest:
    reason: str | None
    expires_at: datetime | None
    minutes: int | None
    request_id: str


class SessionMapper:
    """Maps log entries to ``gcp.proxy.session`` records, remembering recent requests."""

    def __init__(self, max_requests: int = MAX_REQUESTS) -> None:
        self.max_requests = max_requests
        self._by_id: OrderedDict[str, AccessRequest] = OrderedDict()
        self._by_user: OrderedDict[str, AccessRequest] = OrderedDict()

    def record_of(self, entry: object) -> dict[str, Any] | None:
        """The record for one log entry, or None (an event that is not a session)."""
        if not isinstance(entry, Mapping):
            raise UnusableEntry(f"entry: {shown(entry)} is not a log entry object")
        payload = entry.get("jsonPayload")
        if not isinstance(payload, Mapping):
            raise UnusableEntry(f"jsonPayload: {shown(payload)} is not an object")
        event = payload.get("event")
        log_id = _text(entry.get("insertId"))
        if event == "access_request.create":
            self._remember(payload)
            return None
        if event == "session.start":
            return self._opened(payload, log_id)
        if event == "session.end":
            return self._closed(payload, log_id)
        if event == "session.rejected":
            return self._refused(payload, log_id)
        return None

    # -- access requests -------------------------------------------------------------------

    def _remember(self, payload: Mapping[str, Any]) -> None:
        at = _time(payload, "time")
        expires = _optional_time(payload.get("max_duration"))
        request = AccessRequest(
            reason=_text(payload.get("reason")) or None,
            expires_at=expires,
            minutes=None if expires is None else int((expires - at).total_seconds() // 60),
            request_id=_text(payload.get("id")),
        )
        for table, key in ((self._by_id, request.request_id), (self._by_user, _user(payload))):
            if key:
                table[key] = request
                table.move_to_end(key)
                while len(table) > self.max_requests:
                    table.popitem(last=False)

    def _request_for(self, payload: Mapping[str, Any]) -> AccessRequest | None:
        ids = payload.get("access_requests")
        for request_id in ids if isinstance(ids, list) else []:
            if isinstance(request_id, str) and request_id in self._by_id:
                return self._by_id[request_id]
        return self._by_user.get(_user(payload))

    # -- sessions --------------------------------------------------------------------------

    def _base(self, payload: Mapping[str, Any], decision: str, session_id: str) -> dict[str, Any]:
        request = self._request_for(payload)
        record = proxy_session_record(
            decision=decision,
            session_id=session_id,
            principal=_user(payload) or "(unknown)",
            device=_text(payload.get("server_hostname")),
            service=SERVICE,
            reason=None if request is None else request.reason,
            minutes=None if request is None else request.minutes,
        )
        if request is not None and request.request_id:
            record["requestId"] = request.request_id
        if payload.get("login") is not None:
            record["login"] = _text(payload.get("login"))
        return record

    def _opened(self, payload: Mapping[str, Any], log_id: str) -> dict[str, Any]:
        record = self._base(payload, "opened", _required(payload, "sid"))
        record["at"] = format_time(_time(payload, "time"))
        request = self._request_for(payload)
        if request is not None and request.expires_at is not None:
            record["expiresAt"] = format_time(request.expires_at)
        return {**record, "logEntry": log_id}

    def _closed(self, payload: Mapping[str, Any], log_id: str) -> dict[str, Any]:
        record = self._base(payload, "closed", _required(payload, "sid"))
        started = _time(payload, "session_start")
        stopped = _time(payload, "session_stop")
        request = self._request_for(payload)
        expired = (
            request is not None
            and request.expires_at is not None
            and stopped >= request.expires_at - EXPIRY_SLACK
        )
        participants = payload.get("participants")
        record.update(
            openedAt=format_time(started),
            at=format_time(stopped),
            seconds=max(0, int((stopped - started).total_seconds())),
            closeReason=ENDED_BY_EXPIRY if expired else ENDED_BY_OPERATOR,
            closedBy="timeout" if expired else record["principal"],
            # Bounded so that a record always fits the ledger's 16 KiB.
            participants=[_text(p)[:200] for p in participants[:MAX_PARTICIPANTS]]
            if isinstance(participants, list)
            else [],
            logEntry=log_id,
        )
        return record

    def _refused(self, payload: Mapping[str, Any], log_id: str) -> dict[str, Any]:
        session_id = _text(payload.get("sid")) or _text(payload.get("uid")) or log_id
        record = self._base(payload, "refused", session_id)
        record.update(
            at=format_time(_time(payload, "time")),
            refusal=_text(payload.get("reason")) or "rejected by Teleport",
            logEntry=log_id,
        )
        return record


def _text(value: object) -> str:
    return value[:600] if isinstance(value, str) else ""


def _user(payload: Mapping[str, Any]) -> str:
    return _text(payload.get("user"))


def _required(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise UnusableEntry(
            f"jsonPayload.{key}: {shown(value)} is missing or not text; allowed: "
            f"Teleport's {payload.get('event')!s:.40} event carries it"
        )
    return value[:200]


def _time(payload: Mapping[str, Any], key: str) -> datetime:
    parsed = _optional_time(payload.get(key))
    if parsed is None:
        raise UnusableEntry(
            f"jsonPayload.{key}: {shown(payload.get(key))} is not a time; allowed: "
            "RFC 3339 with a zone, e.g. 2026-11-30T08:00:00.000Z"
        )
    return parsed


def _optional_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
