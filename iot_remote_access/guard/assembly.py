"""What a cloud assembly (cdk.out) knows about a template's resources.

The manifest (and, in newer assemblies, each stack's ``additionalMetadataFile``)
holds metadata per construct path: the resource's logical id, the
acknowledgements made with ``cdk.Validations.of(...).acknowledge`` and, when the
app was synthesized with ``--debug`` (``CDK_DEBUG=true``), the stack trace of
each construct's creation, whose frames name the app's own source lines.
``validation-report.json`` repeats the acknowledgements the plugins saw.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iot_remote_access.core.bounded_input import parse_json, read_text
from iot_remote_access.guard.acknowledgements import (
    PLUGIN_NAME,
    Acknowledgement,
    from_cdk_metadata,
)

ACKNOWLEDGED_RULES = "aws:cdk:acknowledged-rules"
CREATION_STACK = "aws:cdk:creationStack"
LOGICAL_ID = "aws:cdk:logicalId"
#: A manifest with inline metadata for a large app is large; 64 MiB bounds it.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: The longest frame line read (CDK's traces are short; a hostile manifest is not).
MAX_FRAME_CHARS = 2048
_LINE_COLUMN = re.compile(r"\A(?P<line>\d{1,9})(?::\d{1,9})?\Z")
#: Frames of installed packages and runtimes are not the app's source.
_NOT_APP = ("site-packages", "dist-packages", "node_modules", "<frozen", "node:")


@dataclass(frozen=True)
class SourceLine:
    """A line of the app's source code that CDK recorded."""

    file: str
    line: int


@dataclass(frozen=True)
class StackInfo:
    """One stack of the assembly, as the guard needs it."""

    stack: str
    #: Construct path (without the leading "/") -> metadata entries.
    metadata: Mapping[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    #: Logical id -> acknowledgements of guard findings in validation-report.json.
    reported: Mapping[str, list[Acknowledgement]] = field(default_factory=dict)

    def acknowledgements(
        self, construct_path: str | None, logical_id: str
    ) -> list[Acknowledgement]:
        """Acknowledgements on the construct and its ancestors, closest first."""
        found: list[Acknowledgement] = []
        parts = construct_path.split("/") if construct_path else []
        while parts:
            path = "/".join(parts)
            for entry in self.metadata.get(path, ()):
                if entry.get("type") == ACKNOWLEDGED_RULES:
                    origin = f"aws-cdk-lib acknowledgement on {path}"
                    found.extend(from_cdk_metadata(entry.get("data"), origin))
            parts.pop()
        return [*found, *self.reported.get(logical_id, ())]

    def creation_line(self, construct_path: str | None) -> SourceLine | None:
        """Where the app created the construct (or, for the ``Resource`` of an L2 whose
        own trace has no app frame, its closest ancestor below the stack), when CDK
        recorded it (``--debug``)."""
        parts = construct_path.split("/") if construct_path else []
        while len(parts) > 1:
            for entry in self.metadata.get("/".join(parts), ()):
                data = entry.get("data")
                if entry.get("type") == CREATION_STACK and isinstance(data, list):
                    found = app_frame(data)
                    if found:
                        return found
            parts.pop()
        return None


def app_frame(frames: list[Any]) -> SourceLine | None:
    """The innermost frame in the app's own code (not an installed package)."""
    for frame in frames:
        found = parse_frame(frame) if isinstance(frame, str) else None
        if found and not any(part in found.file for part in _NOT_APP):
            return found
    return None


def parse_frame(frame: str) -> SourceLine | None:
    """``name (file:line)``, ``at name (file:line:column)`` or ``file:line``, in linear time.

    Split by hand rather than by one regular expression: a pattern that allows an
    optional name before an optional parenthesis backtracks quadratically on long lines.
    """
    text = frame[:MAX_FRAME_CHARS].strip()
    if text.endswith(")") and "(" in text:
        text = text[text.rindex("(") + 1 : -1]
    else:
        text = text.rsplit(None, 1)[-1] if text else ""
    file, sep, rest = text.partition(":")
    while sep and not _LINE_COLUMN.match(rest):
        head, sep, rest = rest.partition(":")
        file = f"{file}:{head}"
    match = _LINE_COLUMN.match(rest) if sep else None
    if not file or match is None or "(" in file or ")" in file:
        return None
    return SourceLine(file, int(match["line"]))


def read_assembly(folder: Path) -> dict[str, StackInfo]:
    """Template file name -> its stack's information, for every stack artifact."""
    artifacts = _mapping(_mapping(_json(folder / "manifest.json")).get("artifacts"))
    reported = _reported(folder / "validation-report.json")
    stacks: dict[str, StackInfo] = {}
    for stack, artifact in artifacts.items():
        artifact = _mapping(artifact)
        template = _mapping(artifact.get("properties")).get("templateFile")
        if artifact.get("type") != "aws:cloudformation:stack" or not isinstance(template, str):
            continue
        metadata = dict(_mapping(artifact.get("metadata")))
        extra = artifact.get("additionalMetadataFile")
        if isinstance(extra, str) and (folder / extra).is_file():
            metadata.update(_mapping(_json(folder / extra)))
        stacks[template] = StackInfo(
            stack=str(stack),
            metadata={
                str(path).lstrip("/"): entries
                for path, entries in metadata.items()
                if isinstance(entries, list)
            },
            reported=reported.get(template, {}),
        )
    return stacks


def _reported(path: Path) -> dict[str, dict[str, list[Acknowledgement]]]:
    """The guard's acknowledged findings in validation-report.json: template -> logical id."""
    if not path.is_file():
        return {}
    found: dict[str, dict[str, list[Acknowledgement]]] = {}
    for plugin in _list(_mapping(_json(path)).get("pluginReports")):
        if _mapping(plugin).get("pluginName") != PLUGIN_NAME:
            continue
        for violation in map(_mapping, _list(_mapping(plugin).get("suppressedViolations"))):
            ack = Acknowledgement(
                rule=str(violation.get("acknowledgedId", "")),
                reason=str(violation.get("reason", "")),
                origin=f"validation report: acknowledged on {violation.get('acknowledgedAt', '?')}",
            )
            for construct in _list(violation.get("violatingConstructs")):
                resource = _mapping(_mapping(construct).get("cloudFormationResource"))
                template, logical_id = resource.get("templatePath"), resource.get("logicalId")
                if isinstance(template, str) and isinstance(logical_id, str):
                    found.setdefault(Path(template).name, {}).setdefault(logical_id, []).append(ack)
    return found


def _json(path: Path) -> Any:
    """The file's JSON; BoundedInputError (one line) when it cannot be read."""
    return parse_json(read_text(path, max_bytes=MAX_MANIFEST_BYTES), str(path))


def _mapping(value: object) -> Mapping[str, Any]:
    # Shapes are checked as read: a manifest of the wrong shape adds nothing.
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
