"""Read IoT policy documents from cdk.out folders, templates and policy files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_remote_access.core.bounded_input import BoundedInputError
from iot_remote_access.guard.acknowledgements import Acknowledgement, from_nag_metadata
from iot_remote_access.guard.assembly import SourceLine, StackInfo, read_assembly
from iot_remote_access.guard.documents import read_document

IOT_POLICY_TYPE = "AWS::IoT::Policy"


class GuardInputError(ValueError):
    """A path that cannot be read as a template, a cloud assembly or a policy."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class PolicyDocumentSource:
    """Where a policy document came from: a file, and a resource or policy name in it."""

    file: str
    name: str
    document: Any
    #: 1-based line of the resource in the file, where known (for SARIF).
    line: int | None = None
    #: The CDK construct path (``aws:cdk:path`` metadata), for a synthesized template.
    construct_path: str | None = None
    #: The stack (cloud assembly artifact) the template belongs to, when known.
    stack: str | None = None
    #: Acknowledgements that apply to this resource, closest to it first.
    acknowledgements: tuple[Acknowledgement, ...] = ()
    #: Where the app created the resource, when the assembly recorded it (``--debug``).
    source_line: SourceLine | None = None


def read_policies(
    paths: list[Path], *, skip_unrecognized: bool = False
) -> Iterator[PolicyDocumentSource]:
    """Every IoT policy in ``paths``.

    ``skip_unrecognized`` passes over readable JSON/YAML files that are neither a
    template nor a policy (a pre-commit hook sees every such file of a commit);
    a file that cannot be parsed still stops the run.
    """
    reader = _Reader(skip_unrecognized)
    for path in paths:
        if path.is_dir():
            yield from reader.cloud_assembly(path)
        elif path.is_file():
            yield from reader.file(path)
        else:
            raise GuardInputError(path, "no such file or directory")


class _Reader:
    """Reads files, and each cloud assembly's manifest once however many templates it has."""

    def __init__(self, skip_unrecognized: bool) -> None:
        self._skip_unrecognized = skip_unrecognized
        self._assemblies: dict[Path, dict[str, StackInfo]] = {}

    def cloud_assembly(self, folder: Path) -> Iterator[PolicyDocumentSource]:
        if not (folder / "manifest.json").is_file():
            raise GuardInputError(folder, "not a cloud assembly (cdk.out): no manifest.json")
        templates = sorted(folder.rglob("*.template.json"))
        for template in templates:
            yield from self.file(template)

    def file(self, path: Path) -> Iterator[PolicyDocumentSource]:
        try:
            text, data = read_document(path)
        except BoundedInputError as error:
            raise GuardInputError(path, error.problem) from None
        if isinstance(data, Mapping) and "Resources" in data:
            yield from _template(path, text, data, self._stack_info(path))
        elif isinstance(data, Mapping) and "Statement" in data:
            yield PolicyDocumentSource(str(path), path.stem, data, 1)
        elif not self._skip_unrecognized:
            raise GuardInputError(
                path,
                "neither a CloudFormation template (no 'Resources') nor a policy (no 'Statement')",
            )

    def _stack_info(self, path: Path) -> StackInfo | None:
        """The assembly's record of the template's stack, when it sits in a cdk.out folder
        (nested stages have a manifest of their own, next to their templates)."""
        folder = path.parent
        if folder not in self._assemblies:
            if not (folder / "manifest.json").is_file():
                return None
            try:
                self._assemblies[folder] = read_assembly(folder)
            except BoundedInputError as error:
                raise GuardInputError(error.source, error.problem) from None
        return self._assemblies[folder].get(path.name)


def _template(
    path: Path, text: str, template: Mapping[str, Any], stack: StackInfo | None
) -> Iterator[PolicyDocumentSource]:
    resources = template["Resources"]
    # cdk-nag's stack-wide suppressions sit in the template's own Metadata.
    stack_wide = from_nag_metadata(template.get("Metadata"), f"cdk_nag metadata of {path.name}")
    if not isinstance(resources, Mapping):
        raise GuardInputError(path, "'Resources' is not an object")
    lines: _KeyLines | None = None  # built on the first IoT policy, once per file
    for logical_id, resource in resources.items():
        if not isinstance(resource, Mapping) or resource.get("Type") != IOT_POLICY_TYPE:
            continue
        properties = resource.get("Properties")
        if not isinstance(properties, Mapping) or "PolicyDocument" not in properties:
            raise GuardInputError(path, f"{logical_id}: {IOT_POLICY_TYPE} without PolicyDocument")
        document = properties["PolicyDocument"]
        if isinstance(document, str):
            # CloudFormation accepts the document as a JSON string too.
            try:
                document = json.loads(document)
            except json.JSONDecodeError as error:
                raise GuardInputError(
                    path, f"{logical_id}: PolicyDocument is not valid JSON: {error.msg}"
                ) from None
        lines = lines or _KeyLines(text)
        metadata = resource.get("Metadata")
        cdk_path = metadata.get("aws:cdk:path") if isinstance(metadata, Mapping) else None
        construct_path = cdk_path if isinstance(cdk_path, str) else None
        # The assembly's record first: it names the construct the acknowledgement is on.
        acknowledgements = [
            *(stack.acknowledgements(construct_path, str(logical_id)) if stack else ()),
            *from_nag_metadata(metadata, f"cdk_nag metadata of {logical_id}"),
            *stack_wide,
        ]
        yield PolicyDocumentSource(
            str(path),
            str(logical_id),
            document,
            lines.line_of(str(logical_id)),
            construct_path=construct_path,
            stack=stack.stack if stack else None,
            acknowledgements=tuple(acknowledgements),
            source_line=stack.creation_line(construct_path) if stack else None,
        )


class _KeyLines:
    """First line on which each key starts, from one pass over the file.

    A line "starts with key" when, stripped, it begins with ``"key"``, ``'key'``
    or ``key:``. Scanning the whole text once per policy made a template of 800
    policies take 24 s; this index makes it linear in the file's lines.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._first: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            for key in _line_keys(stripped):
                self._first.setdefault(key, number)

    def line_of(self, key: str) -> int | None:
        if any(c in key for c in "\"':"):
            # A key with a quote or colon in it cannot be read off one token: scan.
            return _line_of(self._text, key)
        return self._first.get(key)


def _line_keys(stripped: str) -> tuple[str, ...]:
    """The keys a stripped line starts with, in the three spellings ``_line_of`` knows."""
    if stripped[:1] in ('"', "'"):
        end = stripped.find(stripped[0], 1)
        return (stripped[1:end],) if end > 0 else ()
    colon = stripped.find(":")
    return (stripped[:colon],) if colon >= 0 else ()


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith((f'"{key}"', f"{key}:", f"'{key}'")):
            return number
    return None
