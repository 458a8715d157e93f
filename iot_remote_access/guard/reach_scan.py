"""Run the reachability analysis over files: policies, templates, cloud assemblies, ACLs.

AWS documents are read exactly as ``lint`` reads them (:mod:`guard.sources`), with
CloudFormation intrinsics turned into strings the same way; a mosquitto ``acl_file``
is recognised by its lines (``user``/``topic``/``pattern``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from iot_remote_access.core.bounded_input import BoundedInputError, read_text
from iot_remote_access.core.cfn_intrinsics import is_unresolved, list_items, string_alternatives
from iot_remote_access.core.reach import ReachReport
from iot_remote_access.core.reach_automata import ReachLimitError
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.reach_hivemq import RealmError, analyze_ese_files, analyze_realm
from iot_remote_access.core.reach_mosquitto import AclSyntaxError, analyze_acl
from iot_remote_access.guard.documents import read_document
from iot_remote_access.guard.sources import GuardInputError, read_policies

_ACL_KEYWORDS = ("user", "topic", "pattern")


def reach_paths(paths: list[Path], *, attacker: str) -> Iterator[ReachReport]:
    """One report per policy document (or ACL) found under ``paths``."""
    for path in paths:
        kind = _broker_document(path) if path.is_file() else None
        if kind == "acl":
            yield _acl_report(path, attacker)
            continue
        if kind == "realm":
            yield from _realm_reports(path, attacker)
            continue
        if kind == "ese":
            yield from _ese_reports(path, attacker)
            continue
        for source in read_policies([path]):
            label = f"{source.file}:{source.name}"
            document = plain_document(source.document)
            try:
                report = analyze_policy(document, source=label, attacker=attacker)
            except ReachLimitError as error:
                raise GuardInputError(label, f"too large to analyse: {error}") from None
            if has_unresolved(document):
                note = "a value known only at deployment (<unresolved:...>) matches only wildcards"
                report = replace(report, notes=(*report.notes, note))
            yield report


def _broker_document(path: Path) -> str | None:
    """ "acl" (first line user/topic/pattern), "realm" (an ESE file realm), "ese" (the ESE
    ConfigMap: config.xml and its realms), else None."""
    try:
        text = read_text(path, what="file")
    except BoundedInputError:
        return None
    head = text.lstrip()[:200]
    if "kind: ConfigMap" in text[:4096] and "config.xml" in text:
        return "ese"  # the HiveMQ ESE ConfigMap (gcp manifests, gcp device-realm)
    if head.startswith("<?xml") or head.startswith("<ese-file-realm"):
        return "realm" if "<ese-file-realm" in text[:4096] else None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return "acl" if stripped.split(" ", 1)[0] in _ACL_KEYWORDS else None
    return None


def _realm_reports(path: Path, attacker: str) -> list[ReachReport]:
    try:
        text = read_text(path, what="realm")
        return analyze_realm(text, source=str(path), attacker=attacker)
    except (BoundedInputError, RealmError, ReachLimitError) as error:
        raise GuardInputError(path, str(error)) from None


def _ese_reports(path: Path, attacker: str) -> list[ReachReport]:
    """Each listener pipeline's realm, analysed as that pipeline selects permissions."""
    try:
        _, config_map = read_document(path)
        files = config_map.get("data") if isinstance(config_map, Mapping) else None
        if not isinstance(files, Mapping):
            raise RealmError("a ConfigMap without data; allowed: the ESE ConfigMap")
        return analyze_ese_files(files, source=str(path), attacker=attacker)
    except (BoundedInputError, RealmError, ReachLimitError) as error:
        raise GuardInputError(path, str(error)) from None


def _acl_report(path: Path, attacker: str) -> ReachReport:
    try:
        return analyze_acl(read_text(path, what="ACL"), source=str(path), attacker=attacker)
    except (BoundedInputError, AclSyntaxError, ReachLimitError) as error:
        raise GuardInputError(path, str(error)) from None


def plain_document(document: Any) -> dict[str, Any]:
    """A policy whose Action/Resource values are plain strings (intrinsics resolved).

    ``Fn::If`` branches all count (each resource alternative is listed); a value that
    cannot be known before deployment stays visible as an ``<unresolved:...>`` marker,
    which matches only what a wildcard around it matches.
    """
    if not isinstance(document, Mapping):
        return {"Statement": []}
    statements = []
    for statement in list_items(document.get("Statement")):
        if not isinstance(statement, Mapping):
            continue
        plain = dict(statement)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in statement:
                plain[key] = [
                    text
                    for item in list_items(statement[key])
                    for text in string_alternatives(item)
                ]
        statements.append(plain)
    return {"Statement": statements}


def has_unresolved(document: Mapping[str, Any]) -> bool:
    return any(
        is_unresolved(text)
        for statement in document.get("Statement", [])
        for key in ("Resource", "NotResource")
        for text in statement.get(key, [])
    )
