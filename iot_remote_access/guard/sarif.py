"""The guard's findings as SARIF 2.1.0, shaped for GitHub code scanning.

Per rule: ``properties.security-severity`` (GitHub's CVSS-like number, as a
string) and ``helpUri``, the rule's page on the documentation site. Per result:
the construct path as a logical location; the physical location is the app's
source line when the cloud assembly recorded it (``cdk synth --debug``), else
the template (which is then also kept as a related location); a fingerprint
that survives re-synths; the baseline state; and acknowledgements as
``suppressions`` with their reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from iot_remote_access import __version__
from iot_remote_access.core.policy_check import RULES, Severity
from iot_remote_access.guard.review import Reviewed, Status

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: GitHub reads >= 7.0 as high and 4.0-6.9 as medium.
SECURITY_SEVERITY = {Severity.HIGH: "8.0", Severity.MEDIUM: "5.5"}
FINGERPRINT_KEY = "iotRemoteAccess/v1"
#: The package's Project-URL labels that name its documentation site, in order.
DOCS_LABELS = ("documentation", "docs", "homepage")


@cache
def docs_url() -> str | None:
    """The documentation site (from the installed package's project URLs), ending in "/"."""
    try:
        urls = metadata.metadata("iot-remote-access").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    labelled = dict(
        (label.strip().lower(), url.strip())
        for label, _, url in (entry.partition(",") for entry in urls)
    )
    found = next((labelled[k] for k in DOCS_LABELS if labelled.get(k)), None)
    return found.rstrip("/") + "/" if found else None


def rule_help_uri(rule_id: str, docs: str) -> str:
    """The rule's page on the MkDocs site (``docs/rules/<id>.md``, directory URLs)."""
    return f"{docs}rules/{rule_id}/"


def to_sarif(
    reviewed: list[Reviewed], *, baseline_used: bool = False, docs: str | None = None
) -> dict[str, Any]:
    docs = docs if docs is not None else docs_url()
    rule_ids = sorted(RULES)
    rule_index = {rule_id: index for index, rule_id in enumerate(rule_ids)}
    uri = uri_maker()
    results = []
    for item in reviewed:
        result = _result(item, uri)
        result["ruleIndex"] = rule_index[item.finding.rule_id]
        if baseline_used:
            result["baselineState"] = "new" if item.status is Status.OPEN else "unchanged"
        results.append(result)
    driver: dict[str, Any] = {
        "name": "iot-remote-access",
        "version": __version__,
        "rules": [_rule(rule_id, docs) for rule_id in rule_ids],
    }
    if docs:
        driver["informationUri"] = docs
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def _rule(rule_id: str, docs: str | None) -> dict[str, Any]:
    rule = RULES[rule_id]
    level = "error" if rule.severity is Severity.HIGH else "warning"
    entry: dict[str, Any] = {
        "id": rule_id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {
            "text": f"{rule.summary} Acknowledge an intended exception in the CDK app with "
            f"the id IotPolicyGuard::{rule_id}-{rule.name}.",
        },
        "defaultConfiguration": {"level": level},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "tags": ["security", "iot", "least-privilege"],
        },
    }
    if docs:
        entry["helpUri"] = rule_help_uri(rule_id, docs)
    return entry


def _result(item: Reviewed, uri: Callable[[str], str]) -> dict[str, Any]:
    source, finding = item.result.source, item.finding
    template: dict[str, Any] = {"artifactLocation": {"uri": uri(source.file)}}
    if source.line:
        template["region"] = {"startLine": source.line}
    logical: dict[str, Any] = {"name": source.name, "kind": "resource"}
    if source.construct_path:
        logical["fullyQualifiedName"] = source.construct_path
    location: dict[str, Any] = {"physicalLocation": template, "logicalLocations": [logical]}
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "level": "error" if finding.severity is Severity.HIGH else "warning",
        "message": {
            "text": f"{source.construct_path or source.name} Statement[{finding.statement}]: "
            f"{finding.message} (action {finding.action}, resource {finding.resource})"
        },
        "locations": [location],
        "partialFingerprints": {FINGERPRINT_KEY: item.fingerprint},
        "properties": {"status": str(item.status)},
    }
    if source.source_line is not None:
        # The line in the app that made the resource: where a reviewer fixes it.
        location["physicalLocation"] = {
            "artifactLocation": {"uri": uri(source.source_line.file)},
            "region": {"startLine": source.source_line.line},
        }
        result["relatedLocations"] = [
            {"id": 1, "physicalLocation": template, "message": {"text": "synthesized template"}}
        ]
    if item.acknowledgement is not None:
        result["suppressions"] = [
            {
                "kind": "inSource",
                "status": "accepted",
                "justification": item.acknowledgement.reason or "(no reason given)",
                "properties": {
                    "acknowledgedId": item.acknowledgement.rule,
                    "origin": item.acknowledgement.origin,
                },
            }
        ]
    return result


def uri_maker() -> Callable[[str], str]:
    """The SARIF uri of a file: relative to the working folder when inside it.

    Each file is resolved once and each folder once, with ``os.path`` on strings:
    resolving every finding's path with pathlib cost more than checking the policies.
    """
    inside = os.path.join(os.path.realpath(os.getcwd()), "")
    folders: dict[str, str] = {}
    known: dict[str, str] = {}

    def uri(file: str) -> str:
        if file not in known:
            if os.path.islink(file):
                resolved = os.path.realpath(file)  # the file itself leads elsewhere
            else:
                folder, name = os.path.split(file)
                if folder not in folders:
                    folders[folder] = os.path.realpath(folder or ".")
                resolved = os.path.join(folders[folder], name)
            if resolved.startswith(inside):
                known[file] = Path(resolved[len(inside) :]).as_posix()
            else:
                path = Path(file)
                known[file] = path.as_uri() if path.is_absolute() else path.as_posix()
        return known[file]

    return uri
