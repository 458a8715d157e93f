"""Shared helpers for the HiveMQ-on-GKE tests: settings, synthesis, the reference schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.hivemq_chart import MANIFESTS_DIR, VALUES_FILE, synthesize
from tests.support.paths import REPO_ROOT

EXAMPLE_SETTINGS = REPO_ROOT / "examples" / "gcp-settings.yaml"

#: HiveMQ's chart schema and CRD are reference data in shared/ beside the repository
#: (CI clones the repository with shared/ next to it); never copied into the project.
_SCHEMA_DIRS = (
    REPO_ROOT.parent / "shared" / "schemas" / "hivemq",
    Path("/work/shared/schemas/hivemq"),
)
VALUES_SCHEMA = "hivemq-platform.values.schema.json"


def hivemq_schema_dir() -> Path:
    for candidate in _SCHEMA_DIRS:
        if (candidate / VALUES_SCHEMA).is_file():
            return candidate
    raise AssertionError(
        f"HiveMQ reference schemas not found in {[str(d) for d in _SCHEMA_DIRS]}: "
        "clone the repository with shared/ beside it"
    )


def values_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (hivemq_schema_dir() / VALUES_SCHEMA).read_text(encoding="utf-8")
    )
    return schema


def example_raw() -> dict[str, Any]:
    """The example settings as a mutable dict (the part under the context key)."""
    raw = yaml.safe_load(EXAMPLE_SETTINGS.read_text(encoding="utf-8"))["iot-remote-access"]
    return copy.deepcopy(raw)


def extension_raw() -> dict[str, Any]:
    raw = example_raw()
    hivemq = raw["hivemq"]
    hivemq["integration"] = "extension"
    hivemq["extension"] = {
        "googleServiceAccount": "hivemq-broker@my-fleet-project.iam.gserviceaccount.com"
    }
    return raw


class Synthesized:
    """One synthesis: the manifests by (kind, name), the values, the files."""

    def __init__(
        self, settings: FleetSettings, out_dir: Path, *, things: tuple[str, ...] = ()
    ) -> None:
        self.settings = settings
        self.out_dir = out_dir
        self.files = synthesize(settings, out_dir, things=things)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted((out_dir / MANIFESTS_DIR).glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if document:
                    self.objects[(document["kind"], document["metadata"]["name"])] = document
        self.values: dict[str, Any] = yaml.safe_load(
            (out_dir / VALUES_FILE).read_text(encoding="utf-8")
        )

    def kinds(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: obj for (k, name), obj in self.objects.items() if k == kind}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]
