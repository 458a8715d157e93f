"""Building the evidence pack from cloud-neutral sources, in one streaming pass each.

Order: the inventory (written as it is read), then the ledger segment (verified and
folded in the same pass: sessions, certificate changes and incidents are written
as they complete), then the findings, the policies, the summary and the report.
Everything is written into a temporary folder next to ``out``, renamed to ``out``
only when every check held: a failed check leaves no pack behind, never a pack
that silently lacks records.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from iot_remote_access.core.evidence_fold import CHANGE_FIELDS, PURPOSE_FIELDS, SESSION_FIELDS, Fold
from iot_remote_access.core.evidence_model import (
    ASSET_FIELDS,
    Asset,
    PackInputError,
    PackVerificationError,
    Period,
    PolicyDocument,
    SecurityFinding,
    z,
)
from iot_remote_access.core.evidence_sections import Section, write_json
from iot_remote_access.core.ledger import Anchor, Record
from iot_remote_access.core.ledger_verify import Verification, verify

FINDING_FIELDS = ("observedAt", "severity", "detection", "thing", "summary", "source", "incident")
INCIDENT_FIELDS = (
    "incident",
    "detection",
    "thing",
    "detectedAt",
    "significant",
    "acknowledgedAt",
    "acknowledgedBy",
    "earlyWarningDue",
    "earlyWarningSent",
    "earlyWarningState",
    "notificationDue",
    "notificationSent",
    "notificationState",
    "finalReportDue",
    "finalReportSent",
    "finalReportState",
    "overdue",
    "summary",
)
POLICY_FIELDS = ("kind", "name", "arn", "devicePolicy", "ruleId", "severity", "message")
#: Weeks of certificate expiries drawn in the report (from the period's start).
EXPIRY_WEEKS = 52


@dataclass(frozen=True)
class ChainSource:
    """The ledger segment that covers the period (in order) and the anchors around it."""

    lines: Iterable[bytes | None]
    anchors: Sequence[Anchor]
    where: str
    copy_to_pack: bool = True


@dataclass
class PackInputs:
    period: Period
    now: datetime
    cloud: str
    assets: Iterable[Asset]
    chain: ChainSource
    findings: Iterable[SecurityFinding]
    policies: Sequence[PolicyDocument]
    #: Sessions the cloud itself lists for the period (id -> opened): each must be in the ledger.
    cloud_sessions: Mapping[str, datetime] = field(default_factory=dict)
    anchor_interval_minutes: int = 60
    notes: list[str] = field(default_factory=list)


@dataclass
class PackResult:
    out: Path
    counts: dict[str, int]
    verification: Verification
    overdue: int
    summary: dict[str, Any]


def build_pack(inputs: PackInputs, out: Path) -> PackResult:
    """Write the pack to ``out`` (which must not exist). Raises PackInputError (bad input)
    or PackVerificationError (the evidence does not hold); then nothing is left behind."""
    if out.exists():
        raise PackInputError("--out", f"{str(out)[-60:]!r} exists; allowed: a new folder")
    temp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        (temp / "ledger").mkdir(parents=True)
        (temp / "policies").mkdir()
    except OSError as error:
        raise PackInputError(
            "--out", f"cannot create {str(out)[-60:]!r} ({error.strerror})"
        ) from None
    try:
        result = _build(inputs, temp)
        temp.rename(out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    result.out = out
    return result


def _build(inputs: PackInputs, folder: Path) -> PackResult:
    # Imported here: the report module is only needed once the evidence held.
    from iot_remote_access.core.evidence_report import render_report
    from iot_remote_access.core.evidence_summary import summarise

    expiries, inventory_rotations, enrolled, assets = _inventory(inputs, folder)
    fold, verification = _ledger(inputs, folder, enrolled)
    _cross_check(inputs, fold, inventory_rotations)
    findings = _findings(inputs, fold, folder)
    incidents, overdue = _incidents(inputs, fold, folder)
    _policies(inputs, folder)
    counts = {
        "assets": assets,
        "inventoryChanges": fold.changes + len(enrolled),
        "sessions": fold.sessions,
        "commands": fold.commands,
        "findings": findings,
        "incidents": incidents,
        "overdueClocks": overdue,
        "operators": len(fold.operators),
        "ledgerRecordsInPeriod": fold.records_in_period,
        "policies": len(inputs.policies),
    }
    summary = summarise(inputs, counts, verification, fold, expiries, folder)
    render_report(folder, summary, fold, expiries)
    return PackResult(folder, counts, verification, overdue, summary)


# -- inventory -------------------------------------------------------------------------------


def _inventory(
    inputs: PackInputs, folder: Path
) -> tuple[Counter[str], dict[str, datetime], list[dict[str, Any]], int]:
    """Write the inventory; return expiries per week, the period's rotations (to find in the
    ledger) and enrolments (changes the ledger does not record), and the asset count."""
    period = inputs.period
    expiries: Counter[str] = Counter()
    enrolled: list[dict[str, Any]] = []
    first_week = period.start - timedelta(days=period.start.weekday())
    rotations: dict[str, datetime] = {}
    with Section(folder, "inventory", ASSET_FIELDS) as section:
        for asset in inputs.assets:
            section.write(asset.row())
            current = asset.current()
            if current is not None and current.not_after is not None:
                week = (current.not_after - first_week).days // 7
                if 0 <= week < EXPIRY_WEEKS:
                    expiries[(first_week + timedelta(weeks=week)).strftime("%Y-%m-%d")] += 1
            if asset.last_rotation_at is not None and period.holds(asset.last_rotation_at):
                rotations[asset.thing] = asset.last_rotation_at
            if asset.enrolled_at is not None and period.holds(asset.enrolled_at):
                enrolled.append(_enrolment(asset))
        count = section.count
    return expiries, rotations, enrolled, count


def _enrolment(asset: Asset) -> dict[str, Any]:
    current = asset.current()
    return {
        "time": z(asset.enrolled_at),
        "event": "enrolled (inventory)",
        "thing": asset.thing,
        "certificateId": current.id if current else "",
        "serial": current.serial if current else "",
        "detail": f"source={asset.source}",
        "seq": "",
    }


# -- ledger ----------------------------------------------------------------------------------


def _ledger(
    inputs: PackInputs, folder: Path, enrolled: list[dict[str, Any]]
) -> tuple[Fold, Verification]:
    chain = inputs.chain
    _check_anchors(inputs)
    with (
        Section(folder, "sessions", SESSION_FIELDS) as sessions,
        Section(folder, "inventory-changes", CHANGE_FIELDS) as changes,
        Section(folder, "purpose", PURPOSE_FIELDS) as purposes,
        (folder / "ledger" / "chain.jsonl").open("wb") as copy,
    ):
        fold = Fold(
            inputs.period,
            sessions.write,
            changes.write,
            purposes.write,
            watched_tunnels=frozenset(inputs.cloud_sessions),
        )
        for row in enrolled:
            changes.write(row)

        def on_record(record: Record, line: bytes) -> None:
            if chain.copy_to_pack:
                copy.write(line + b"\n")
            try:
                fold.add(record.seq, record.time, record.data)
            except ValueError as error:
                raise PackVerificationError(str(error)) from None

        verification = verify(chain.lines, chain.anchors, on_record=on_record)
        if verification.broken is not None:
            broken = verification.broken
            raise PackVerificationError(
                f"ledger ({chain.where}) broken at record {broken.seq}: {broken.reason}"
            )
        _no_data(inputs, fold)
        fold.finish_open()
    (folder / "ledger" / "anchors.jsonl").write_bytes(
        b"".join(a.line() + b"\n" for a in chain.anchors)
    )
    return fold, verification


def _check_anchors(inputs: PackInputs) -> None:
    """Anchors must be there: none at all, or a gap longer than two intervals (the anchor
    function stopped), means records of that stretch are vouched for by nothing."""
    anchors = sorted(inputs.chain.anchors, key=lambda a: a.time)
    if not anchors:
        raise PackVerificationError(
            f"ledger ({inputs.chain.where}): no anchor found; records cannot be checked "
            "against write-once storage (is the anchor function running?)"
        )
    allowed = timedelta(minutes=2 * inputs.anchor_interval_minutes)
    until = inputs.period.as_of(inputs.now)
    times = [datetime.fromisoformat(a.time) for a in anchors]
    for before, after in itertools.pairwise(times):
        if after - before > allowed and before < until and after > inputs.period.start:
            raise PackVerificationError(
                f"anchor missing: none between {z(before)} and {z(after)} (expected every "
                f"{inputs.anchor_interval_minutes} min); the records of that stretch were "
                "not anchored"
            )
    if until - times[-1] > allowed and until > times[-1]:
        raise PackVerificationError(
            f"anchor missing: the last anchor is of {z(times[-1])} but the period runs to "
            f"{z(until)} (expected every {inputs.anchor_interval_minutes} min)"
        )


def _no_data(inputs: PackInputs, fold: Fold) -> None:
    """A period that ends before the ledger's first record and first anchor: nothing to show,
    and nothing proves it (anchors before the period's end would: "nothing happened")."""
    first_anchor = min(datetime.fromisoformat(a.time) for a in inputs.chain.anchors)
    if fold.records_before_end == 0 and first_anchor >= inputs.period.end:
        raise PackInputError(
            "--to",
            f"no data: the ledger has no record and no anchor before {z(inputs.period.end)} "
            f"(its first anchor is of {z(first_anchor)}); allowed: a period after the "
            "ledger was deployed",
        )


def _cross_check(
    inputs: PackInputs, fold: Fold, inventory_rotations: Mapping[str, datetime]
) -> None:
    """What the cloud or the inventory knows happened must be in the ledger."""
    missing = sorted(set(inputs.cloud_sessions) - fold.tunnel_ids)
    if missing:
        raise PackVerificationError(
            f"record missing from the ledger: session {missing[0]!r} (opened "
            f"{z(inputs.cloud_sessions[missing[0]])}) is listed by {inputs.cloud} but has no "
            f"ledger record ({len(missing)} such session(s))"
        )
    unrecorded = sorted(set(inventory_rotations) - fold.rotated_things)
    if unrecorded:
        raise PackVerificationError(
            f"record missing from the ledger: thing {unrecorded[0]!r} was rotated at "
            f"{z(inventory_rotations[unrecorded[0]])} (inventory) but the ledger has no "
            f"cert.rotate record for it ({len(unrecorded)} such device(s))"
        )


# -- findings, incidents, policies -----------------------------------------------------------


def _findings(inputs: PackInputs, fold: Fold, folder: Path) -> int:
    by_key = {
        (i.detection, i.thing or "", i.detected_at.replace(microsecond=0)): i.id
        for i in fold.incidents.values()
    }
    with Section(folder, "findings", FINDING_FIELDS) as section:
        for finding in inputs.findings:
            if not inputs.period.holds(finding.observed_at):
                continue
            key = (
                finding.detection,
                finding.thing or "",
                finding.observed_at.replace(microsecond=0),
            )
            incident = by_key.get(key, "")
            if not incident and finding.severity == "high":
                incident = "none opened"
            section.write(
                {
                    "observedAt": z(finding.observed_at),
                    "severity": finding.severity,
                    "detection": finding.detection,
                    "thing": finding.thing or "",
                    "summary": finding.summary,
                    "source": finding.source,
                    "incident": incident,
                }
            )
        return section.count


def _incidents(inputs: PackInputs, fold: Fold, folder: Path) -> tuple[int, int]:
    as_of = inputs.period.as_of(inputs.now)
    overdue_total = 0
    with Section(folder, "incidents", INCIDENT_FIELDS) as section:
        for incident in sorted(fold.incidents.values(), key=lambda i: i.detected_at):
            if not inputs.period.holds(incident.detected_at) and not incident.sent:
                continue
            early, notification, final = incident.clocks()
            overdue = [c.kind for c in incident.overdue(as_of)]
            overdue_total += len(overdue)
            section.write(
                {
                    "incident": incident.id,
                    "detection": incident.detection,
                    "thing": incident.thing or "",
                    "detectedAt": z(incident.detected_at),
                    "significant": incident.significant,
                    "acknowledgedAt": z(incident.acknowledged_at),
                    "acknowledgedBy": incident.acknowledged_by or "",
                    **_clock("earlyWarning", early, as_of, incident.significant),
                    **_clock("notification", notification, as_of, incident.significant),
                    **_clock("finalReport", final, as_of, incident.significant),
                    "overdue": ",".join(overdue),
                    "summary": incident.summary,
                }
            )
        return section.count, overdue_total


def _clock(prefix: str, clock: Any, as_of: datetime, significant: bool) -> dict[str, str]:
    state = clock.state(as_of) if significant else "not required (not significant)"
    return {f"{prefix}Due": z(clock.due), f"{prefix}Sent": z(clock.sent), f"{prefix}State": state}


def _policies(inputs: PackInputs, folder: Path) -> None:
    with Section(folder, "policies", POLICY_FIELDS) as section:
        for index, policy in enumerate(inputs.policies):
            base = {
                "kind": policy.kind,
                "name": policy.name,
                "arn": policy.arn,
                "devicePolicy": policy.device_policy,
            }
            write_json(
                folder / "policies" / f"{index:04d}-{_safe(policy.name)}.json",
                dict(policy.document),
            )
            if policy.kind == "operator":
                for statement in policy.denies():
                    section.write(
                        {**base, "ruleId": "deny", "severity": "", "message": _deny(statement)}
                    )
            for rule, severity, message in policy.findings:
                section.write({**base, "ruleId": rule, "severity": severity, "message": message})
            if not policy.findings and policy.kind == "iot":
                section.write({**base, "ruleId": "", "severity": "", "message": "no finding"})


def _deny(statement: Mapping[str, Any]) -> str:
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else list(actions)
    return f"{statement.get('Sid', '')}: denies {', '.join(map(str, actions))[:200]}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
