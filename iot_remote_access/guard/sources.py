"""Read IoT policy documents from cdk.out folders, templates and policy files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_remote_access.core.bounded_input import BoundedInputError
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


def read_policies(paths: list[Path]) -> Iterator[PolicyDocumentSource]:
    for path in paths:
        if path.is_dir():
            yield from _cloud_assembly(path)
        elif path.is_file():
            yield from _file(path)
        else:
            raise GuardInputError(path, "no such file or directory")


def _cloud_assembly(folder: Path) -> Iterator[PolicyDocumentSource]:
    if not (folder / "manifest.json").is_file():
        raise GuardInputError(folder, "not a cloud assembly (cdk.out): no manifest.json")
    templates = sorted(folder.rglob("*.template.json"))
    for template in templates:
        yield from _file(template)


def _file(path: Path) -> Iterator[PolicyDocumentSource]:
    try:
        text, data = read_document(path)
    except BoundedInputError as error:
        raise GuardInputError(path, error.problem) from None
    if isinstance(data, Mapping) and "Resources" in data:
        yield from _template(path, text, data)
    elif isinstance(data, Mapping) and "Statement" in data:
        yield PolicyDocumentSource(str(path), path.stem, data, 1)
    else:
        raise GuardInputError(
            path, "neither a CloudFormation template (no 'Resources') nor a policy (no 'Statement')"
        )


def _template(path: Path, text: str, template: Mapping[str, Any]) -> Iterator[PolicyDocumentSource]:
    resources = template["Resources"]
    if not isinstance(resources, Mapping):
        raise GuardInputError(path, "'Resources' is not an object")
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
        yield PolicyDocumentSource(str(path), str(logical_id), document, _line_of(text, logical_id))


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith((f'"{key}"', f"{key}:", f"'{key}'")):
            return number
    return None
