"""Fingerprints of findings, and the baseline file of findings a team accepts for now.

A fingerprint names a finding by what it is, not by where a line number put it:
the rule, the resource (its CDK construct path when the template came from a CDK
app, which includes the stack; otherwise the file, relative to the working
folder, and the resource or policy name), a digest of the offending statement's
content and the action and resource found. It survives a re-synth, a line shift
and a statement moving within its policy; it changes when the statement does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_remote_access import __version__
from iot_remote_access.core.bounded_input import BoundedInputError, excerpt, parse_json, read_text
from iot_remote_access.core.policy_check import Finding
from iot_remote_access.guard.sources import PolicyDocumentSource

BASELINE_VERSION = 1
MAX_BASELINE_BYTES = 16 * 1024 * 1024
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message is one line naming the field."""


def location_key(source: PolicyDocumentSource) -> str:
    """The resource, stable across re-synths: construct path, stack/logical id or file#name."""
    if source.construct_path:
        return source.construct_path
    if source.stack:
        return f"{source.stack}/{source.name}"
    return f"{relative_file(source.file)}#{source.name}"


def relative_file(file: str) -> str:
    """``file`` relative to the working folder (POSIX separators) when inside it."""
    path = os.path.abspath(file)
    inside = os.path.join(os.path.abspath(os.getcwd()), "")
    return Path(path[len(inside) :] if path.startswith(inside) else file).as_posix()


def statement_digest(document: Any, index: int) -> str:
    """SHA-256 of the statement's canonical JSON (sorted keys, no spaces)."""
    if isinstance(document, str):
        document = json.loads(document)
    statements = document.get("Statement") if isinstance(document, Mapping) else None
    statement = statements[index] if isinstance(statements, list) else statements
    canonical = json.dumps(statement, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(source: PolicyDocumentSource, finding: Finding) -> str:
    parts = [
        finding.rule_id,
        location_key(source),
        statement_digest(source.document, finding.statement),
        finding.action,
        finding.resource,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass(frozen=True)
class BaselineEntry:
    fingerprint: str
    rule_id: str
    location: str
    action: str
    resource: str

    def to_json(self) -> dict[str, str]:
        return {
            "fingerprint": self.fingerprint,
            "ruleId": self.rule_id,
            "location": self.location,
            "action": self.action,
            "resource": self.resource,
        }


def write_baseline(path: Path, entries: list[BaselineEntry]) -> None:
    """Write the baseline, sorted so that its diff shows what changed."""
    document = {
        "version": BASELINE_VERSION,
        "generatedBy": f"iot-remote-access {__version__}",
        "findings": [
            e.to_json()
            for e in sorted(
                set(entries), key=lambda e: (e.location, e.rule_id, e.action, e.resource)
            )
        ],
    }
    try:
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise BaselineError(f"{path}: cannot write ({error.strerror or error})") from None


def read_baseline(path: Path) -> frozenset[str]:
    """The fingerprints in a baseline file; BaselineError naming the field otherwise."""
    try:
        data = parse_json(read_text(path, max_bytes=MAX_BASELINE_BYTES), str(path))
    except BoundedInputError as error:
        raise BaselineError(str(error)) from None
    if not isinstance(data, Mapping):
        raise BaselineError(f"{path}: not a JSON object; allowed: a file written by lint")
    if data.get("version") != BASELINE_VERSION:
        raise BaselineError(
            f"{path}: version: {excerpt(data.get('version'))}; allowed: {BASELINE_VERSION}"
        )
    findings = data.get("findings")
    if not isinstance(findings, list):
        raise BaselineError(f"{path}: findings: {excerpt(findings)}; allowed: a list")
    prints = set()
    for index, entry in enumerate(findings):
        value = entry.get("fingerprint") if isinstance(entry, Mapping) else entry
        if not isinstance(value, str) or not _FINGERPRINT.fullmatch(value):
            raise BaselineError(
                f"{path}: findings[{index}].fingerprint: {excerpt(value)}; "
                "allowed: 64 lowercase hexadecimal digits (as written by --write-baseline)"
            )
        prints.add(value)
    return frozenset(prints)
