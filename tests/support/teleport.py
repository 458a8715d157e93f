"""Shared helpers for the Teleport (gcp.accessProxy) tests: settings and the chart's reference data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from tests.support.hivemq import example_raw
from tests.support.paths import SHARED

#: The teleport-cluster chart's schema (15.3.1) and values.yaml: reference data in
#: shared/, read in place, never copied into the project (see its SOURCE.md).
TELEPORT_SCHEMAS = SHARED / "schemas" / "teleport"
DIGEST = "sha256:" + "ab" * 32

ACCESS_PROXY: dict[str, Any] = {
    "clusterName": "teleport.example.com",
    "image": f"public.ecr.aws/gravitational/teleport-distroless:15.3.1@{DIGEST}",
    "serviceAccount": "teleport-auth@my-fleet-project.iam.gserviceaccount.com",
    "recordingsBucket": "my-fleet-teleport-recordings",
    "requesters": ["alice@example.com"],
    "approvers": ["bob@example.com"],
    "deviceSelector": {"thingGroups": ["field-gateways"], "labels": {"site": ["berlin"]}},
    "notificationChannels": ["projects/my-fleet-project/notificationChannels/123"],
}


def access_raw(**changes: Any) -> dict[str, Any]:
    """The example GCP settings with a ``gcp.accessProxy`` section (``changes`` merged in)."""
    raw = example_raw()
    access = copy.deepcopy(ACCESS_PROXY)
    access.update(changes)
    raw["gcp"]["accessProxy"] = access
    return raw


def chart_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((TELEPORT_SCHEMAS / "values.schema.json").read_text())
    return schema


def chart_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((TELEPORT_SCHEMAS / "values.yaml").read_text())
    return defaults


def merged(defaults: Any, ours: Any) -> Any:
    """Helm's merge of user values over the chart's values.yaml (maps merge, the rest replaces)."""
    if isinstance(defaults, dict) and isinstance(ours, dict):
        out = dict(defaults)
        for key, value in ours.items():
            out[key] = merged(defaults.get(key), value) if key in defaults else value
        return out
    return ours


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))
