"""A period of fleet activity as the ledger records it, for evidence-pack tests.

Real records from ``core.ledger`` (never hand-written digests) and anchors every hour,
as the anchor function writes them: sessions opened and closed (by the operator and by
the sweeper), one refused request, one session that expired without a close record,
certificate rotations, and a high-severity incident whose early warning was sent and
whose notification is overdue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from iot_remote_access.core.evidence_model import Asset, Certificate, SecurityFinding
from iot_remote_access.core.incident_clock import open_record, z
from iot_remote_access.core.ledger import Anchor, Record, anchor_of, next_record

OPERATOR = "arn:aws:sts::123456789012:assumed-role/Operator/ana"
OTHER = "arn:aws:sts::123456789012:assumed-role/Operator/ben"


@dataclass
class Scenario:
    start: datetime
    end: datetime
    records: list[Record] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    findings: list[SecurityFinding] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)
    tunnels: dict[str, datetime] = field(default_factory=dict)

    def add(self, data: dict[str, Any], moment: datetime) -> Record:
        head = self.records[-1] if self.records else None
        record = next_record(head, data, moment)
        self.records.append(record)
        return record

    def lines(self) -> list[bytes | None]:
        return [r.line() for r in self.records]


def _open(tunnel: str, thing: str, operator: str, reason: str, at: datetime) -> dict[str, Any]:
    return {
        "event": "tunnel.open",
        "decision": "opened",
        "requester": operator,
        "thing": thing,
        "service": "SSH",
        "minutes": 30,
        "reason": reason,
        "tunnelId": tunnel,
        "expiresAt": z(at + timedelta(minutes=30)),
        "at": z(at),
    }


def build(start: datetime, days: int = 5) -> Scenario:
    """``days`` of activity from ``start`` (midnight UTC), anchored every hour."""
    s = Scenario(start, start + timedelta(days=days))
    s.add(
        {"event": "cert.issue", "thing": "sensor-0", "certificateId": "c0", "serial": "01"},
        start - timedelta(hours=2),
    )
    for day in range(days):
        base = start + timedelta(days=day, hours=9)
        for n in range(3):
            at = base + timedelta(hours=n)
            tunnel = f"t-{day}-{n}"
            operator = OPERATOR if n != 2 else OTHER
            s.add(
                _open(
                    tunnel, f"sensor-{n}", operator, f"ticket OPS-{day}{n}: capteur défectueux", at
                ),
                at,
            )
            s.tunnels[tunnel] = at
            closer = (
                {"closedBy": "sweeper", "closeReason": "expired"}
                if n == 1
                else {"closedBy": operator}
            )
            s.add(
                {
                    "event": "tunnel.close",
                    "decision": "closed",
                    "tunnelId": tunnel,
                    "thing": f"sensor-{n}",
                    "at": z(at + timedelta(minutes=20)),
                    **closer,
                },
                at + timedelta(minutes=20),
            )
    refused_at = start + timedelta(hours=15)
    s.add(
        {
            "event": "tunnel.open",
            "decision": "refused",
            "requester": OTHER,
            "thing": "sensor-9",
            "service": "SSH",
            "reason": "curious",
            "status": 403,
            "field": "thing",
        },
        refused_at,
    )
    expired_at = start + timedelta(days=1, hours=20)
    s.add(
        _open("t-expired", "sensor-4", OPERATOR, '=HYPERLINK("x") <script>', expired_at), expired_at
    )
    s.tunnels["t-expired"] = expired_at
    command_at = start + timedelta(days=2, hours=14)
    s.add(
        {
            "event": "command.send",
            "decision": "allowed",
            "requester": OTHER,
            "thing": "sensor-2",
            "command": "diagnostics",
            "purpose": "maintenance",
            "reason": "OPS-77",
            "commandId": "cmd-1",
        },
        command_at,
    )
    s.add(
        {
            "event": "command.send",
            "decision": "refused",
            "requester": OTHER,
            "thing": "sensor-2",
            "command": "dump-occupancy",
            "purpose": "occupancy-analytics",
            "status": 403,
        },
        command_at + timedelta(minutes=1),
    )
    rotated = start + timedelta(days=1, hours=3)
    for thing in ("sensor-1", "sensor-2"):
        s.add(
            {
                "event": "cert.rotate",
                "thing": thing,
                "certificateId": f"new-{thing}",
                "serial": "0a",
            },
            rotated,
        )
    detected = start + timedelta(hours=30)
    finding = SecurityFinding(
        detected,
        "unexpected-subscription",
        "high",
        "sensor-3",
        "sensor-3 subscribed to cmd/+/commands",
        "detector",
    )
    s.findings = [
        finding,
        SecurityFinding(
            start + timedelta(hours=5),
            "authorization-failure",
            "medium",
            "sensor-5",
            "refused publish",
            "detector",
        ),
    ]
    opened = s.add(
        open_record(
            detection=finding.detection,
            thing="sensor-3",
            summary=finding.summary,
            detected_at=detected,
            finding_id="f1",
        ),
        detected + timedelta(seconds=5),
    )
    incident = "INC"  # the real id is the open record's seq, known once re-chained in order
    del opened
    s.add(
        {
            "event": "incident.ack",
            "incident": incident,
            "by": "on-call",
            "significant": True,
            "at": z(detected + timedelta(hours=1)),
        },
        detected + timedelta(hours=1),
    )
    s.add(
        {
            "event": "incident.report",
            "incident": incident,
            "kind": "early-warning",
            "reference": "CSIRT-1",
            "at": z(detected + timedelta(hours=20)),
        },
        detected + timedelta(hours=20),
    )
    s.records.sort(key=lambda r: r.time)
    _relink(s)
    _anchor_hourly(s)
    s.assets = [
        Asset(
            f"sensor-{n}",
            (
                Certificate(
                    f"new-sensor-{n}" if n in (1, 2) else f"c{n}",
                    "0a",
                    start + timedelta(days=40 + 7 * n),
                    "ACTIVE",
                ),
            ),
            start + timedelta(days=2),
            {"owner": "plant-3"},
            "sensor",
            "IDLE",
            last_rotation_at=rotated if n in (1, 2) else None,
            enrolled_at=start + timedelta(days=3) if n == 5 else start - timedelta(days=90),
        )
        for n in range(6)
    ]
    return s


def _relink(s: Scenario) -> None:
    """Records were added out of time order above; re-chain them in time order."""
    datas = [(r.data, datetime.fromisoformat(r.time)) for r in s.records]
    s.records = []
    incident = ""
    for data, moment in datas:
        fixed = dict(data)
        if fixed.get("incident") == "INC":
            fixed["incident"] = incident
        record = s.add(fixed, moment)
        if fixed["event"] == "incident.open":
            incident = f"inc-{record.seq}"


def _anchor_hourly(s: Scenario) -> None:
    moment = s.start - timedelta(hours=1)
    last = s.end + timedelta(hours=2)
    index = 0
    while moment <= last:
        while (
            index + 1 < len(s.records)
            and datetime.fromisoformat(s.records[index + 1].time) <= moment
        ):
            index += 1
        if datetime.fromisoformat(s.records[index].time) <= moment:
            s.anchors.append(anchor_of(s.records[index], moment))
        moment += timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
