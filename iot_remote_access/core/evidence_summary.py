"""The pack's ``summary.json``/``summary.csv``: what was checked, how much of each, and
which requirement each section serves (standard library only)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iot_remote_access.core.evidence_mapping import MAPPING_FIELDS, MAPPINGS
from iot_remote_access.core.evidence_model import z
from iot_remote_access.core.evidence_sections import Section, write_json
from iot_remote_access.core.ledger_verify import Verification

if TYPE_CHECKING:
    from iot_remote_access.core.evidence_fold import Fold
    from iot_remote_access.core.evidence_pack import PackInputs

#: Version of the pack's layout and fields; bumped on a breaking change.
PACK_SCHEMA = "1"
OPERATOR_FIELDS = (
    "operator",
    "sessions",
    "refused",
    "devicesReached",
    "services",
    "purposes",
    "otherPurposes",
)


def summarise(
    inputs: PackInputs,
    counts: dict[str, int],
    verification: Verification,
    fold: Fold,
    expiries: Counter[str],
    folder: Path,
) -> dict[str, Any]:
    operators = [use.summary(name) for name, use in sorted(fold.operators.items())]
    if fold.orphan_incident_records:
        inputs.notes.append(
            f"{fold.orphan_incident_records} incident record(s) belong to incidents opened "
            "before the period's first anchor; pack an earlier --from to see their clocks"
        )
    with Section(folder, "purpose-operators", OPERATOR_FIELDS) as section:
        for row in operators:
            section.write({k: row[k] for k in OPERATOR_FIELDS})
    last_anchor = max(
        (
            a.seq
            for a in inputs.chain.anchors
            if verification.last_seq is not None and a.seq <= verification.last_seq
        ),
        default=None,
    )
    summary: dict[str, Any] = {
        "schema": PACK_SCHEMA,
        "cloud": inputs.cloud,
        "period": {"from": z(inputs.period.start), "to": z(inputs.period.end)},
        "generatedAt": z(inputs.now),
        "clocksJudgedAt": z(inputs.period.as_of(inputs.now)),
        "ledger": {
            "where": inputs.chain.where,
            "holds": verification.holds,
            "recordsChecked": verification.records,
            "firstSeq": verification.first_seq,
            "lastSeq": verification.last_seq,
            "headDigest": verification.last_hash,
            "anchorsChecked": verification.anchors_checked,
            "lastAnchoredSeq": last_anchor,
            "recordsInPeriod": fold.records_in_period,
            "events": dict(sorted(fold.events.items())),
            "reverify": "iot-remote-access evidence verify ledger/chain.jsonl "
            "--anchors ledger/anchors.jsonl",
        },
        "counts": counts,
        "sessionsPerDay": dict(sorted(fold.sessions_per_day.items())),
        "certificateExpiriesPerWeek": dict(sorted(expiries.items())),
        "operators": [
            {k: v for k, v in row.items() if k != "devices"}
            | {"devicesListed": len(row["devices"])}
            for row in operators
        ],
        "orphanIncidentRecords": fold.orphan_incident_records,
        "requirements": [m.row() for m in MAPPINGS],
        "notes": list(inputs.notes),
    }
    write_json(folder / "purpose-operators-devices.json", operators)
    with Section(folder, "requirements", MAPPING_FIELDS) as section:
        for mapping in MAPPINGS:
            section.write(mapping.row())
    write_json(folder / "summary.json", summary)
    return summary
