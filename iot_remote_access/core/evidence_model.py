"""The evidence pack's record model, cloud-neutral: what each section holds.

A cloud's sources (AWS today; Azure and GCP fill the same model) turn their inventory,
findings and policies into these rows; the ledger's records become sessions,
certificate changes and incidents here, the same way for every cloud. Standard
library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from iot_remote_access.core.ledger import MAX_RETENTION_DAYS

#: A pack covers at most this many days: one run, bounded time and output.
MAX_PERIOD_DAYS = MAX_RETENTION_DAYS


class PackInputError(ValueError):
    """Input the pack cannot use (exit 2): names the field, the value and what is allowed."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {problem}")


class PackVerificationError(Exception):
    """The evidence does not hold (exit 1): a broken chain, a record missing from the ledger."""


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_moment(text: str, field_name: str, *, end_of_day: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole day: its start, or the next day's start for ``--to``)
    or an ISO 8601 time with a zone."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise PackInputError(field_name, f"{_short(text)} is not allowed; {_ALLOWED_DATE}")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PackInputError(
            field_name, f"{_short(text)} is not allowed; {_ALLOWED_DATE}"
        ) from None
    if moment.tzinfo is None:
        raise PackInputError(field_name, f"{_short(text)} has no time zone; {_ALLOWED_DATE}")
    return moment.astimezone(UTC)


_ALLOWED_DATE = "allowed: a date YYYY-MM-DD or a time like 2026-12-01T08:00:00Z"


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC. ``--to 2026-11-30`` includes the whole of 30 November."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, start: str, end: str, *, retention_days: int, now: datetime) -> Period:
        begin = parse_moment(start, "--from")
        finish = parse_moment(end, "--to", end_of_day=True)
        if begin >= finish:
            raise PackInputError(
                "--from", f"{start!r:.40} is not before --to {end!r:.40}; allowed: --from < --to"
            )
        days = (finish - begin) / timedelta(days=1)
        if days > retention_days:
            raise PackInputError(
                "--from",
                f"the period is {days:.0f} days, longer than the ledger's retention "
                f"({retention_days} days): its oldest records are gone; allowed: a period "
                f"within the retention (split it, or pass --retention-days)",
            )
        oldest = now - timedelta(days=retention_days)
        if begin < oldest:
            raise PackInputError(
                "--from",
                f"{start!r:.40} is before the retention window (records older than "
                f"{retention_days} days, before {oldest:%Y-%m-%d}, are deleted); allowed: "
                f"--from on or after {oldest:%Y-%m-%d}",
            )
        if begin > now:
            raise PackInputError("--from", f"{start!r:.40} is in the future; allowed: a past time")
        return cls(begin, finish)

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def as_of(self, now: datetime) -> datetime:
        """When clocks are judged: the period's end, or now for a period still running."""
        return min(self.end, now)


def ledger_time(text: str) -> datetime:
    """A ledger record's ``time`` (``...Z``, checked by the parser) as a datetime."""
    return datetime.fromisoformat(text)


def z(moment: datetime | None) -> str:
    """UTC to the second, ``2026-12-01T08:00:00Z`` ('' for none)."""
    if moment is None:
        return ""
    # isoformat is about 40 % faster than strftime: this runs for every row of a pack.
    return moment.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"


@dataclass(frozen=True)
class Certificate:
    id: str
    serial: str = ""
    not_after: datetime | None = None
    status: str = ""
    role: str = "current"  # current | pending | previous (kept until its revocation day)


@dataclass(frozen=True)
class Asset:
    """One device of the inventory: the thing, its certificate(s), when it was last seen."""

    thing: str
    certificates: tuple[Certificate, ...]
    last_seen: datetime | None = None
    owner_labels: Mapping[str, str] = field(default_factory=dict)
    thing_type: str = ""
    rotation_state: str = ""
    enrolled_at: datetime | None = None
    last_rotation_at: datetime | None = None
    #: Where the row came from (e.g. "inventory+registry", "registry only").
    source: str = ""

    def current(self) -> Certificate | None:
        return next((c for c in self.certificates if c.role == "current"), None)

    def row(self) -> dict[str, Any]:
        current = self.current()
        return {
            "thing": self.thing,
            "thingType": self.thing_type,
            "certificateId": current.id if current else "",
            "serial": current.serial if current else "",
            "notAfter": z(current.not_after) if current else "",
            "certificateStatus": current.status if current else "",
            "otherCertificates": ";".join(
                f"{c.role}:{c.id}" for c in self.certificates if c.role != "current"
            ),
            "lastSeen": z(self.last_seen),
            "ownerLabels": ";".join(f"{k}={v}" for k, v in sorted(self.owner_labels.items())),
            "rotationState": self.rotation_state,
            "enrolledAt": z(self.enrolled_at),
            "lastRotationAt": z(self.last_rotation_at),
            "source": self.source,
        }


ASSET_FIELDS = tuple(Asset("", ()).row())


@dataclass(frozen=True)
class SecurityFinding:
    """A security finding as the detections publish it (any cloud)."""

    observed_at: datetime
    detection: str
    severity: str
    thing: str | None
    summary: str
    source: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDocument:
    """A deployed policy: an IoT policy the guard checks, or an operator (IAM) policy."""

    name: str
    kind: str  # "iot" | "operator"
    arn: str
    document: Mapping[str, Any]
    #: The guard's findings on it: (ruleId, severity, message).
    findings: tuple[tuple[str, str, str], ...] = ()
    device_policy: bool = False

    def denies(self) -> list[Mapping[str, Any]]:
        statements = self.document.get("Statement", [])
        if isinstance(statements, Mapping):
            statements = [statements]
        return [s for s in statements if isinstance(s, Mapping) and s.get("Effect") == "Deny"]
