"""Which requirement each section of the evidence pack serves, and what it leaves to you.

The references are to the texts as published: Directive (EU) 2022/2555 (NIS2),
Commission Implementing Regulation (EU) 2024/2690 (its Annex: technical and
methodological requirements), Regulation (EU) 2016/679 (GDPR) and India's Digital
Personal Data Protection Rules, 2025 (DPDP Rules). The pack is evidence for these
points; it does not by itself satisfy them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    section: str
    files: str
    shows: str
    nis2: str
    annex: str
    gdpr: str
    dpdp: str
    operator_job: str

    def row(self) -> dict[str, str]:
        return {
            "section": self.section,
            "files": self.files,
            "shows": self.shows,
            "nis2": self.nis2,
            "implementingRegulation2024_2690": self.annex,
            "gdpr": self.gdpr,
            "dpdpRules2025": self.dpdp,
            "operatorsJob": self.operator_job,
        }


MAPPING_FIELDS = tuple(Requirement("", "", "", "", "", "", "", "").row())

MAPPINGS: tuple[Requirement, ...] = (
    Requirement(
        "asset inventory",
        "inventory.json/.csv, inventory-changes.json/.csv",
        "every device, its certificate(s) and expiry, last seen, owner labels; the "
        "certificate changes of the period from the ledger",
        "Art. 21(2)(i) asset management",
        "§12.4 inventory of assets (complete, accurate, changes traceable); §12.1",
        "Art. 30 (the devices that process personal data, for your records)",
        "rule 6 (reasonable security safeguards)",
        "review the inventory at planned intervals and sign the review; assets outside "
        "this library (gateways, apps) are not in it",
    ),
    Requirement(
        "policy evidence",
        "policies.json/.csv, policies/*.json",
        "the guard's findings over every deployed IoT policy, the device policy as "
        "deployed, the operators' deny statements",
        "Art. 21(2)(i) access control policies",
        "§11.1 access control policy; §11.2 management of access rights; §11.3 privileged access",
        "Art. 25(2) access limited by default",
        "rule 6(1)(c) access control",
        "approve the policies, review access rights periodically, remove leavers' rights",
    ),
    Requirement(
        "remote sessions",
        "sessions.json/.csv, ledger/chain.jsonl, ledger/anchors.jsonl",
        "every remote session and refused request (who, why, which device, when, how "
        "long, how it ended), each checked against the hash chain and its write-once anchors",
        "Art. 21(2)(b) incident handling (the records to investigate with)",
        "§3.2 monitoring and logging (records of remote access, protected from change, "
        "kept for a predetermined period)",
        "Art. 30(1) records of processing; Art. 32(1)(d) testing the measures",
        "rule 6(1)(d)-(e) logs of access, kept one year",
        "read the logs (§3.2.2 asks for monitoring, not only keeping); sessions opened "
        "around the library (console, other tools) are flagged only if the cloud lists them",
    ),
    Requirement(
        "findings and incidents",
        "findings.json/.csv, incidents.json/.csv",
        "every security finding of the period; for each incident the NIS2 clocks: "
        "detected at, early warning due/sent (24 h), notification due/sent (72 h), final "
        "report due/sent (1 month); overdue ones marked",
        "Art. 23(1), (3), (4)(a), (b), (d) reporting obligations",
        "§3.3 event reporting; §3.4 event assessment and classification; §3.5 incident response",
        "Art. 33 (72 h to the supervisory authority if personal data is breached); Art. 34",
        "rule 7 (intimation of a breach, detailed report within 72 h)",
        "decide whether an incident is significant (NIS2 Art. 23(3)); send the reports to "
        "the CSIRT/authority and record them with `evidence incident report`",
    ),
    Requirement(
        "purpose limitation",
        "purpose.json/.csv, purpose-operators.json/.csv, purpose-operators-devices.json",
        "per operator: which devices, services and remote commands they reached and the "
        "purposes they stated (one row per session or command, and a summary per operator)",
        "Art. 21(2)(i) human resources security and access control",
        "§11.2 access rights granted on need to know; §11.3",
        "Art. 5(1)(b) purpose limitation; Art. 25(1)-(2) data protection by design and by "
        "default; Art. 30",
        "rule 6 (access limited to what is needed)",
        "judge whether each stated purpose justified the access; the library records the "
        "purpose, it cannot check it",
    ),
)
