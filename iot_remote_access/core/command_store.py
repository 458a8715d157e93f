"""Execution records of remote commands on GCP and Azure, in one SQLite file.

AWS keeps its records in DynamoDB (the broker's table). The GCP command service and
the Azure direct-method client keep theirs here: the same record shape
(:func:`~iot_remote_access.core.command_executions.execution_item`), the same
state rules (:func:`~iot_remote_access.core.command_executions.refusal_reason`),
and the same "write only if still pending" condition as the DynamoDB update, so two
answers cannot both complete one record.

SQLite (standard library) because the records belong to whoever runs the service:
one file, transactions, no server. Every write is one statement inside a
transaction; the file may be shared by processes on one host (SQLite locks it).

Standard library only.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from iot_remote_access.core import strict_json
from iot_remote_access.core.command_executions import PENDING, TIMED_OUT, effective_status
from iot_remote_access.core.commands import (
    MAX_REQUEST_BYTES,
    CommandCatalogue,
    CommandMessage,
    CommandRuleError,
    SendRequest,
    arguments_digest,
    format_time,
    parse_send_request,
)

MAX_LIST = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    thing TEXT NOT NULL,
    status TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_thing ON executions (thing, issued_at);
"""


class ExecutionStore:
    """Execution records by command id. ``path`` ``":memory:"`` keeps them in memory."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection, used under a lock: the service's threads share it.
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """Write a new record; if its id exists, change nothing and return the existing one."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO executions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    item["id"],
                    item["thing"],
                    item["status"],
                    item["issuedAt"],
                    item["expiresAt"],
                    json.dumps(dict(item), sort_keys=True),
                ),
            )
            if cursor.rowcount == 1:
                return None
            return self._get_locked(str(item["id"]))

    def get(self, command_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get_locked(command_id)

    def _get_locked(self, command_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT item FROM executions WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def complete(
        self, command_id: str, *, thing: str, values: Mapping[str, Any], now: datetime
    ) -> bool:
        """Set ``values`` only if the record is this thing's, still pending and not expired.

        The condition is part of the write (as the DynamoDB update's), so of two
        answers racing for one record exactly one wins. False: nothing changed.
        """
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT item FROM executions WHERE id = ? AND thing = ? AND status = ? "
                "AND expires_at >= ?",
                (command_id, thing, PENDING, format_time(now)),
            ).fetchone()
            if row is None:
                return False
            item = {**json.loads(row[0]), **values}
            cursor = self._db.execute(
                "UPDATE executions SET status = ?, item = ? WHERE id = ? AND status = ?",
                (item["status"], json.dumps(item, sort_keys=True), command_id, PENDING),
            )
            return cursor.rowcount == 1

    def sweep(self, *, now: datetime) -> int:
        """Write ``timed-out`` into every pending record past its expiry; how many."""
        moment = format_time(now)
        with self._lock, self._db:
            rows = self._db.execute(
                "SELECT id, item FROM executions WHERE status = ? AND expires_at < ?",
                (PENDING, moment),
            ).fetchall()
            for command_id, text in rows:
                item = {**json.loads(text), "status": TIMED_OUT, "completedAt": moment}
                self._db.execute(
                    "UPDATE executions SET status = ?, item = ? WHERE id = ? AND status = ?",
                    (TIMED_OUT, json.dumps(item, sort_keys=True), command_id, PENDING),
                )
            return len(rows)

    def list(
        self, *, thing: str | None, status: str | None, limit: int, now: datetime
    ) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` (1..1000), with the status as it reads now."""
        if not 1 <= limit <= MAX_LIST:
            raise CommandRuleError("limit", f"{limit}; allowed: 1 to {MAX_LIST}")
        query = "SELECT item FROM executions"
        parameters: list[str] = []
        if thing is not None:
            query += " WHERE thing = ?"
            parameters.append(thing)
        query += " ORDER BY issued_at DESC, id"
        found: list[dict[str, Any]] = []
        with self._lock:
            for (text,) in self._db.execute(query, parameters):
                item = dict(json.loads(text))
                item["status"] = effective_status(item, now=now)
                if status is None or item["status"] == status:
                    found.append(item)
                    if len(found) >= limit:
                        break
        return found


def same_request(existing: Mapping[str, Any], request: SendRequest) -> bool:
    """Whether a record with a retried client token is the same command (else 409)."""
    return (existing.get("thing"), existing.get("command"), existing.get("argumentsDigest")) == (
        request.thing,
        request.spec.name,
        arguments_digest(request.arguments),
    )


def replayed(existing: Mapping[str, Any], request: SendRequest) -> dict[str, Any]:
    """The answer to a retry: the first command's record, or a 409 naming ``clientToken``."""
    if not same_request(existing, request):
        raise CommandRuleError(
            "clientToken",
            f"{request.client_token!r} was already used for another thing, command or "
            "arguments; allowed: a new client token",
            status=409,
        )
    return dict(existing)


def shown_record(item: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """A record as ``command get`` shows it: without the TTL, status as it reads now."""
    shown = {key: value for key, value in item.items() if key != "ttl"}
    shown["status"] = effective_status(item, now=now)
    return shown


def refusal_fields(body: object, error: CommandRuleError) -> dict[str, object]:
    """The audit fields of a refused send (the request's thing and name, shortened)."""
    raw = body if isinstance(body, Mapping) else {}
    thing, name = raw.get("thing"), raw.get("name")
    return {
        "event": "command.send",
        "decision": "refused",
        "thing": None if thing is None else str(thing)[:128],
        "command": None if name is None else str(name)[:64],
        "status": error.status,
        "field": error.field,
        "message": error.problem[:300],
    }


def readable(
    item: Mapping[str, Any] | None, catalogue: CommandCatalogue, requester: str, command_id: str
) -> Mapping[str, Any]:
    """``item`` if ``requester`` may send its command, else 404 as for an unknown id: who
    may not send a command learns nothing, not even that it exists."""
    spec = None
    if item is not None:
        spec = next((s for s in catalogue.commands if s.name == item.get("command")), None)
    if item is None or spec is None or not spec.may_send(requester):
        raise CommandRuleError("id", f"{command_id!r} is not a command you may read", status=404)
    return item


def readable_commands(catalogue: CommandCatalogue, requester: str) -> set[str]:
    return {spec.name for spec in catalogue.commands if spec.may_send(requester)}


def sent_fields(request: SendRequest, command: CommandMessage, now: datetime) -> dict[str, object]:
    """The audit fields of an allowed send (the arguments as a digest only)."""
    return {
        "event": "command.send",
        "decision": "allowed",
        "thing": request.thing,
        "command": request.spec.name,
        "purpose": request.purpose,
        "reason": request.reason,
        "argumentsDigest": arguments_digest(request.arguments),
        "commandId": command.id,
        "expiresAt": format_time(command.expires_at),
        "at": format_time(now),
    }


def checked_request(
    body: object, catalogue: CommandCatalogue, *, requester: str, thing_name_pattern: str
) -> SendRequest:
    """A request body from the CLI, bounded as the broker bounds its HTTP body (8 KiB,
    413 ``body``), then checked by every catalogue rule."""
    if not isinstance(body, Mapping):
        raise CommandRuleError("body", "allowed: an object with the request fields")
    size = len(strict_json.dumps(dict(body)).encode("utf-8"))
    if size > MAX_REQUEST_BYTES:
        raise CommandRuleError(
            "body", f"{size} bytes; allowed: at most {MAX_REQUEST_BYTES}", status=413
        )
    return parse_send_request(
        dict(body), catalogue, requester=requester, thing_name_pattern=thing_name_pattern
    )
