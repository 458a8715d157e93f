"""NIS2 incident clocks: the deadlines a significant incident starts, and their state.

Directive (EU) 2022/2555, Article 23(4): an **early warning** within 24 hours of
becoming aware of a significant incident, an **incident notification** within 72
hours, and a **final report** no later than one month after the notification was
submitted. India's DPDP Rules 2025 (rule 7) ask for a breach report within 72 hours
too, so the 72-hour clock serves both.

An incident's whole history is ledger records (``incident.open``, ``incident.ack``,
``incident.report``, ``incident.overdue``), so its clocks can be recomputed by anyone
holding a verified export; the state item the functions keep is a cache of the same
facts. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

EARLY_WARNING = "early-warning"
NOTIFICATION = "notification"
FINAL = "final"
KINDS = (EARLY_WARNING, NOTIFICATION, FINAL)
EARLY_WARNING_WITHIN = timedelta(hours=24)
NOTIFICATION_WITHIN = timedelta(hours=72)
#: "One month" after the notification; 30 days is the shortest reading that never
#: lands after a calendar month's end (February aside, which is earlier still).
FINAL_WITHIN = timedelta(days=30)

#: Ledger events of the incident lifecycle.
OPEN_EVENT = "incident.open"
ACK_EVENT = "incident.ack"
REPORT_EVENT = "incident.report"
OVERDUE_EVENT = "incident.overdue"
INCIDENT_EVENTS = frozenset({OPEN_EVENT, ACK_EVENT, REPORT_EVENT, OVERDUE_EVENT})

_ID_RE = re.compile(r"inc-(0|[1-9][0-9]{0,15})")


class IncidentError(ValueError):
    def __init__(self, field_name: str, problem: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {problem}")


def incident_id(open_seq: int) -> str:
    """An incident is named by the ledger record that opened it: unique, and traceable."""
    return f"inc-{open_seq}"


def parse_incident_id(text: str) -> int:
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        shown = repr(text)[:40]
        raise IncidentError("--id", f"{shown} is not allowed; allowed: inc-<number>, e.g. inc-42")
    return int(text[4:])


def parse_kind(text: str) -> str:
    if text not in KINDS:
        raise IncidentError("--kind", f"{text!r:.40} is not allowed; allowed: {', '.join(KINDS)}")
    return text


def parse_utc(text: object, field_name: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` or an offset), as UTC."""
    if not isinstance(text, str) or len(text) > 40:
        raise IncidentError(field_name, f"{str(text)[:40]!r} is not a time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise IncidentError(
            field_name, f"{text!r} is not a time; allowed: ISO 8601, e.g. 2026-12-01T08:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise IncidentError(field_name, f"{text!r} has no time zone; allowed: ...Z or +hh:mm")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Clock:
    kind: str
    due: datetime | None  # None: not started (the final report waits for the notification)
    sent: datetime | None = None

    def state(self, now: datetime) -> str:
        """``sent``, ``sent late``, ``overdue``, ``running`` or ``waiting``."""
        if self.sent is not None:
            return "sent late" if self.due is not None and self.sent > self.due else "sent"
        if self.due is None:
            return "waiting"
        return "overdue" if now > self.due else "running"


@dataclass(frozen=True)
class Incident:
    """One incident's facts; its clocks follow from them (:meth:`clocks`)."""

    id: str
    detected_at: datetime
    detection: str
    thing: str | None
    summary: str
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    significant: bool = True
    sent: Mapping[str, datetime] = field(default_factory=dict)
    references: Mapping[str, str] = field(default_factory=dict)
    alarms: tuple[str, ...] = ()

    def clocks(self) -> tuple[Clock, Clock, Clock]:
        notified = self.sent.get(NOTIFICATION)
        return (
            Clock(
                EARLY_WARNING, self.detected_at + EARLY_WARNING_WITHIN, self.sent.get(EARLY_WARNING)
            ),
            Clock(NOTIFICATION, self.detected_at + NOTIFICATION_WITHIN, notified),
            Clock(FINAL, notified + FINAL_WITHIN if notified else None, self.sent.get(FINAL)),
        )

    def overdue(self, now: datetime) -> list[Clock]:
        """Clocks past due and not sent; none for an incident judged not significant."""
        if not self.significant:
            return []
        return [clock for clock in self.clocks() if clock.state(now) == "overdue"]

    def closed(self) -> bool:
        return not self.significant or FINAL in self.sent


def opened(open_seq: int, data: Mapping[str, Any], time: str) -> Incident:
    """The incident an ``incident.open`` record (at ledger ``open_seq``) starts."""
    detected = data.get("detectedAt", time)
    return Incident(
        id=incident_id(open_seq),
        detected_at=parse_utc(detected, "detectedAt"),
        detection=str(data.get("detection", "")),
        thing=data.get("thing") if isinstance(data.get("thing"), str) else None,
        summary=str(data.get("summary", ""))[:300],
    )


def apply(incident: Incident, data: Mapping[str, Any], time: str) -> Incident:
    """``incident`` after one later ledger record of it (ack, report, overdue alarm)."""
    event = data.get("event")
    at = parse_utc(data.get("at", time), "at")
    if event == ACK_EVENT:
        return replace(
            incident,
            acknowledged_at=incident.acknowledged_at or at,
            acknowledged_by=str(data.get("by", "")) or incident.acknowledged_by,
            significant=data.get("significant", True) is not False,
        )
    if event == REPORT_EVENT:
        kind = parse_kind(str(data.get("kind")))
        if kind in incident.sent:
            return incident  # the first report of a kind is the one that met the deadline
        references = dict(incident.references)
        if isinstance(data.get("reference"), str):
            references[kind] = data["reference"]
        return replace(incident, sent={**incident.sent, kind: at}, references=references)
    if event == OVERDUE_EVENT:
        return replace(incident, alarms=(*incident.alarms, str(data.get("kind"))))
    return incident


def open_record(
    *, detection: str, thing: str | None, summary: str, detected_at: datetime, finding_id: str
) -> dict[str, Any]:
    """The ``incident.open`` ledger data for a high-severity finding."""
    record: dict[str, Any] = {
        "event": OPEN_EVENT,
        "detection": detection,
        "summary": summary[:300],
        "detectedAt": detected_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "earlyWarningDue": _z(detected_at + EARLY_WARNING_WITHIN),
        "notificationDue": _z(detected_at + NOTIFICATION_WITHIN),
        "findingId": finding_id[:128],
    }
    if thing:
        record["thing"] = thing
    return record


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def z(moment: datetime | None) -> str:
    """A time as the pack and the ledger spell it ('' for none)."""
    return _z(moment) if moment is not None else ""
