"""Folding verified ledger records into the pack's rows: sessions, certificate changes,
incidents and purposes (cloud-neutral, streaming, standard library only).

Each record is seen once, in chain order. A session is held only while it is open
(from ``tunnel.open`` to its ``tunnel.close``), so memory follows the sessions open
at one time, not the chain. Rows go to ``emit`` as soon as they are complete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iot_remote_access.core import incident_clock
from iot_remote_access.core.evidence_model import Period, ledger_time, z
from iot_remote_access.core.incident_clock import Incident, IncidentError

OPENED = frozenset({"opened", "allowed"})
SESSION_FIELDS = (
    "sessionId",
    "operator",
    "purpose",
    "thing",
    "service",
    "openedAt",
    "endedAt",
    "minutes",
    "requestedMinutes",
    "outcome",
    "endedBy",
    "openSeq",
    "endSeq",
)
CHANGE_FIELDS = ("time", "event", "thing", "certificateId", "serial", "detail", "seq")
CERT_EVENTS = {"cert.issue": "issued", "cert.rotate": "rotated", "cert.revoke": "revoked"}
#: Distinct purposes kept per operator; more are counted, not listed (bounded memory).
MAX_PURPOSES = 200
#: Devices listed per operator in the JSON (all are counted).
MAX_DEVICES_LISTED = 1000

Emit = Callable[[dict[str, Any]], None]


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


@dataclass
class OperatorUse:
    """What one operator reached: the GDPR Art. 25 purpose-limitation view."""

    sessions: int = 0
    refused: int = 0
    devices: set[str] = field(default_factory=set)
    services: Counter[str] = field(default_factory=Counter)
    purposes: Counter[str] = field(default_factory=Counter)
    other_purposes: int = 0

    def add(self, thing: str, service: str, purpose: str, refused: bool) -> None:
        if refused:
            self.refused += 1
            return
        self.sessions += 1
        self.devices.add(thing)
        self.services[service or "(none)"] += 1
        if purpose in self.purposes or len(self.purposes) < MAX_PURPOSES:
            self.purposes[purpose or "(no purpose stated)"] += 1
        else:
            self.other_purposes += 1

    def summary(self, operator: str) -> dict[str, Any]:
        devices = sorted(self.devices)
        return {
            "operator": operator,
            "sessions": self.sessions,
            "refused": self.refused,
            "devicesReached": len(devices),
            "devices": devices[:MAX_DEVICES_LISTED],
            "services": dict(self.services.most_common()),
            "purposes": dict(self.purposes.most_common()),
            "otherPurposes": self.other_purposes,
        }


@dataclass
class Fold:
    """The state of one pass over the chain."""

    period: Period
    emit_session: Emit
    emit_change: Emit
    emit_purpose: Emit
    open_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions_per_day: Counter[str] = field(default_factory=Counter)
    operators: dict[str, OperatorUse] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    #: Incident records whose ``incident.open`` is before the chain segment.
    orphan_incident_records: int = 0
    rotated_things: set[str] = field(default_factory=set)
    tunnel_ids: set[str] = field(default_factory=set)
    watched_tunnels: frozenset[str] = frozenset()
    records_in_period: int = 0
    records_before_end: int = 0
    sessions: int = 0
    commands: int = 0
    changes: int = 0
    events: Counter[str] = field(default_factory=Counter)

    def add(self, seq: int, time: str, data: Mapping[str, Any]) -> None:
        moment = ledger_time(time)
        in_period = self.period.holds(moment)
        if in_period:
            self.records_in_period += 1
        if moment < self.period.end:
            self.records_before_end += 1
        event = _text(data, "event")
        self.events[event] += 1
        if event == GCP_SESSION_EVENT:
            data = _as_tunnel(data)
            event = _text(data, "event")
        if event.startswith("tunnel."):
            self._tunnel(seq, moment, in_period, event, data)
        elif event in CERT_EVENTS:
            if in_period:
                self._change(seq, time, event, data)
        elif event in incident_clock.INCIDENT_EVENTS:
            self._incident(seq, time, event, data)
        elif event == COMMAND_EVENT and in_period:
            self._command(time, data)

    # -- sessions --------------------------------------------------------------------------

    def _tunnel(
        self, seq: int, moment: datetime, in_period: bool, event: str, data: Mapping[str, Any]
    ) -> None:
        tunnel = _text(data, "tunnelId")
        if tunnel and tunnel in self.watched_tunnels:
            self.tunnel_ids.add(tunnel)
        decision = _text(data, "decision")
        if event == "tunnel.open" and decision in OPENED and tunnel:
            self.open_sessions[tunnel] = _session(data, seq, moment, "open at period end")
            return
        if event == "tunnel.open":
            if in_period:  # refused or failed: a request, never a session
                row = _session(data, seq, moment, decision or "refused")
                row.update(endedAt=row["openedAt"], minutes=0, endSeq=seq)
                self._finish(row, refused=True)
            return
        if event == "tunnel.close":
            known = self.open_sessions.pop(tunnel, {})
            row = known or _session(data, None, None, "closed")
            if not known:  # opened before the segment: the close record says when
                row["openedAt"] = _text(data, "openedAt")
            ended = ledger_time(_text(data, "at")) if _is_time(data.get("at")) else moment
            row.update(
                endedAt=z(ended),
                outcome="closed"
                if not data.get("closeReason")
                else f"closed: {data['closeReason']}",
                endedBy=_text(data, "closedBy") or _text(data, "requester"),
                endSeq=seq,
            )
            row["minutes"] = _minutes(row["openedAt"], ended)
            if in_period or self.period.holds(_parsed(row["openedAt"]) or ended):
                self._finish(row)

    def _finish(self, row: dict[str, Any], refused: bool = False) -> None:
        row.pop("_expiresAt", None)
        self.sessions += 1
        self.emit_session(row)
        self.emit_purpose({k: row[k] for k in PURPOSE_FIELDS})
        if not refused:
            self.sessions_per_day[row["openedAt"][:10] or row["endedAt"][:10]] += 1
        use = self.operators.setdefault(row["operator"] or "(unknown)", OperatorUse())
        use.add(row["thing"], row["service"], row["purpose"], refused)

    def finish_open(self) -> None:
        """Sessions with no close record: expired on their own, or still open."""
        for row in self.open_sessions.values():
            opened = _parsed(row["openedAt"])
            if opened is None or not self.period.holds(opened):
                continue
            expires = _parsed(row.pop("_expiresAt", ""))
            if expires is not None and expires <= self.period.end:
                row.update(
                    outcome="expired (no close recorded)", endedAt=z(expires), endedBy="timeout"
                )
                row["minutes"] = _minutes(row["openedAt"], expires)
            self._finish(row)
        self.open_sessions.clear()

    def _command(self, time: str, data: Mapping[str, Any]) -> None:
        """A remote command: no session row, but an access row under its stated purpose."""
        refused = _text(data, "decision") == "refused"
        purpose = _text(data, "purpose")
        if data.get("reason"):
            purpose = f"{purpose}: {_text(data, 'reason')}" if purpose else _text(data, "reason")
        row = {
            "operator": _text(data, "requester"),
            "purpose": purpose,
            "thing": _text(data, "thing"),
            "service": f"command:{_text(data, 'command')}",
            "openedAt": z(ledger_time(_text(data, "at") if _is_time(data.get("at")) else time)),
            "outcome": "refused" if refused else "sent",
            "sessionId": _text(data, "commandId"),
        }
        self.commands += 1
        self.emit_purpose(row)
        use = self.operators.setdefault(row["operator"] or "(unknown)", OperatorUse())
        use.add(row["thing"], row["service"], row["purpose"], refused)

    # -- certificates and incidents ------------------------------------------------------

    def _change(self, seq: int, time: str, event: str, data: Mapping[str, Any]) -> None:
        thing = _text(data, "thing")
        if event == "cert.rotate":
            self.rotated_things.add(thing)
        detail = {
            k: v for k, v in data.items() if k not in {"event", "thing", "certificateId", "serial"}
        }
        self.changes += 1
        self.emit_change(
            {
                "time": z(ledger_time(_text(data, "at") if _is_time(data.get("at")) else time)),
                "event": CERT_EVENTS[event],
                "thing": thing,
                "certificateId": _text(data, "certificateId"),
                "serial": _text(data, "serial"),
                "detail": ";".join(f"{k}={_text(detail, k)}" for k in sorted(detail))[:300],
                "seq": seq,
            }
        )

    def _incident(self, seq: int, time: str, event: str, data: Mapping[str, Any]) -> None:
        try:
            if event == incident_clock.OPEN_EVENT:
                incident = incident_clock.opened(seq, data, time)
                self.incidents[incident.id] = incident
                return
            key = _text(data, "incident")
            known = self.incidents.get(key)
            if known is None:
                self.orphan_incident_records += 1
                return
            self.incidents[key] = incident_clock.apply(known, data, time)
        except IncidentError as error:
            raise ValueError(f"ledger record {seq}: {error}") from None


#: Google Cloud's access-proxy sessions (the kind is defined ahead of the proxy): the
#: same session rows as AWS tunnels, their fields renamed.
GCP_SESSION_EVENT = "gcp.proxy.session"
_GCP_FIELDS = {"sessionId": "tunnelId", "principal": "requester", "device": "thing"}


def _as_tunnel(data: Mapping[str, Any]) -> dict[str, Any]:
    decision = _text(data, "decision")
    renamed = {_GCP_FIELDS.get(key, key): value for key, value in data.items()}
    renamed["event"] = "tunnel.close" if decision == "closed" else "tunnel.open"
    if decision == "closed":
        renamed.setdefault("closedBy", _text(data, "principal"))
    return renamed


#: Remote commands (the command broker's decisions), when they are recorded in the ledger.
COMMAND_EVENT = "command.send"

PURPOSE_FIELDS = ("operator", "purpose", "thing", "service", "openedAt", "outcome", "sessionId")


def _session(
    data: Mapping[str, Any], seq: int | None, moment: datetime | None, outcome: str
) -> dict[str, Any]:
    opened = data.get("at") if _is_time(data.get("at")) else None
    row: dict[str, Any] = {
        "sessionId": _text(data, "tunnelId"),
        "operator": _text(data, "requester"),
        "purpose": _text(data, "reason"),
        "thing": _text(data, "thing"),
        "service": _text(data, "service") or _text(data, "services"),
        "openedAt": z(ledger_time(opened)) if opened else z(moment),
        "endedAt": "",
        "minutes": "",
        "requestedMinutes": _text(data, "minutes"),
        "outcome": outcome,
        "endedBy": "",
        "openSeq": "" if seq is None else seq,
        "endSeq": "",
        "_expiresAt": _text(data, "expiresAt"),
    }
    return row


def _is_time(value: object) -> bool:
    return isinstance(value, str) and _parsed(value) is not None


def _parsed(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _minutes(opened: str, ended: datetime) -> int | str:
    start = _parsed(opened)
    if start is None:
        return ""
    return max(0, round((ended - start).total_seconds() / 60))
