"""Acknowledgements made in a CDK app, and which guard findings they cover.

A team acknowledges a finding where it builds the resource, as with any CDK
validation plugin or cdk-nag rule:

- aws-cdk-lib: ``cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(
  id="IotPolicyGuard::IRA004-connect-not-bound-to-thing", reason=...))``. It is
  recorded as ``aws:cdk:acknowledged-rules`` metadata in the cloud assembly and
  covers the construct and everything under it.
- cdk-nag: ``rules_to_suppress`` in the resource's (or the template's) ``cdk_nag``
  Metadata, written by cdk-nag 2's ``NagSuppressions`` or cdk-nag 3's
  ``WriteNagSuppressionsToCloudFormationAspect``; ``applies_to`` narrows it to
  ``Action::<action>`` or ``Resource::<resource>`` of the finding.

Each rule may be named the way either tool spells it (see :func:`accepted_ids`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from iot_remote_access.core.policy_check import RULES, Finding

#: The validation plugin's name: aws-cdk-lib qualifies acknowledgement ids with it.
PLUGIN_NAME = "IotPolicyGuard"
#: The template Metadata key cdk-nag keeps its suppressions under.
NAG_METADATA_KEY = "cdk_nag"
#: Longest reason kept (a reason is shown in reports, not a document).
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class Acknowledgement:
    """One acknowledgement: the id as written, why, and where it was made."""

    rule: str
    reason: str
    #: Where it was made, for people: "aws-cdk-lib acknowledgement on Stack/Policy".
    origin: str
    #: cdk-nag's ``applies_to``: empty means the whole rule.
    applies_to: tuple[str, ...] = ()

    def covers(self, finding: Finding) -> bool:
        if self.rule not in accepted_ids(finding.rule_id):
            return False
        if not self.applies_to:
            return True
        wanted = {f"Action::{finding.action}", f"Resource::{finding.resource}"}
        return bool(wanted.intersection(self.applies_to))


def accepted_ids(rule_id: str) -> frozenset[str]:
    """Every spelling of ``rule_id`` an acknowledgement may use.

    ``IRA004``, ``IRA004-connect-not-bound-to-thing``, the same with the plugin's
    namespace (``IotPolicyGuard::...``, what aws-cdk-lib qualifies ids with) or
    with cdk-nag's pack prefix (``IotPolicyGuard-IRA004``).
    """
    named = f"{rule_id}-{RULES[rule_id].name}"
    bare = (rule_id, named)
    return frozenset(
        [*bare, *(f"{PLUGIN_NAME}::{i}" for i in bare), *(f"{PLUGIN_NAME}-{i}" for i in bare)]
    )


def first_covering(
    acknowledgements: Iterable[Acknowledgement], finding: Finding
) -> Acknowledgement | None:
    """The first acknowledgement (closest to the resource first) that covers ``finding``."""
    return next((a for a in acknowledgements if a.covers(finding)), None)


def from_nag_metadata(metadata: object, origin: str) -> list[Acknowledgement]:
    """The ``rules_to_suppress`` of a ``Metadata`` object; entries that are not
    well-formed suppressions are ignored (they acknowledge nothing)."""
    if not isinstance(metadata, Mapping):
        return []
    nag = metadata.get(NAG_METADATA_KEY)
    rules = nag.get("rules_to_suppress") if isinstance(nag, Mapping) else None
    if not isinstance(rules, list):
        return []
    found = []
    for rule in rules:
        if isinstance(rule, Mapping) and isinstance(rule.get("id"), str):
            found.append(
                Acknowledgement(
                    rule=rule["id"],
                    reason=_reason(rule.get("reason")),
                    origin=origin,
                    applies_to=_strings(rule.get("applies_to")),
                )
            )
    return found


def from_cdk_metadata(data: object, origin: str) -> list[Acknowledgement]:
    """aws-cdk-lib's ``aws:cdk:acknowledged-rules`` entry data: ``{id: reason}``."""
    if not isinstance(data, Mapping):
        return []
    return [
        Acknowledgement(rule=str(rule), reason=_reason(reason), origin=origin)
        for rule, reason in data.items()
    ]


def _reason(value: Any) -> str:
    return value[:MAX_REASON_CHARS] if isinstance(value, str) else ""


def _strings(value: Any) -> tuple[str, ...]:
    # cdk-nag also allows {regex: ...} entries; only exact strings are honoured here.
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
