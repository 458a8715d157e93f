"""The house's import graph: arrows point down only, and no loose modules at the root.

Read from the source with ``ast`` (every import, including those inside functions),
so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "iot_remote_access"

# What each room may import besides itself. Lower layers first; ``cli`` may use any.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": {"core"},
    "lambdas": {"core"},
    "device": {"core"},  # the reference device modules (remote commands): rules from core only
    "arm": {"core"},  # the Azure engine: clients, diff, and the resource protocol it drives
    "guard": {"core"},
    "bridge": {"core", "settings"},
    "constructs": {"core", "settings", "arm"},
    # The Pub/Sub engine drives the constructs' state; its rotation service appends to the
    # access ledger's object chain (lambdas/anchor_sinks, shared with the anchor writers).
    "pubsub": {"core", "constructs", "lambdas"},
    # Cloud Logging/Monitoring engine: Teleport's alarms, desired state from the settings.
    "gcp_monitoring": {"core", "settings"},
    # Certificate Authority Service engine: the pool and CA, and the issuer; it reuses the
    # Pub/Sub engine's IAM requests and the monitoring engine's loopback rule.
    "gcp_ca": {"core", "settings", "pubsub", "gcp_monitoring"},
    "stacks": {"core", "settings", "arm", "constructs", "guard"},
}
ROOMS = {*ALLOWED, "cli"}


def _imports(path: Path) -> set[str]:
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "iot_remote_access" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def test_no_loose_module_at_the_package_root() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert rooms == ROOMS


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_point_down_only(room: str) -> None:
    upward = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) - ALLOWED[room] - {room})
        for path in (PACKAGE / room).rglob("*.py")
    }
    assert {path: rooms for path, rooms in upward.items() if rooms} == {}


def test_no_function_over_80_lines() -> None:
    """Constructors read like a table of contents: long ones are split into sections."""
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > 80
    ]
    assert long == []
