"""Each function's asset ships the ``core`` modules its code imports, not all of ``core``
(issue 21: every synth hashed and copied all of it once per function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from iot_remote_access.constructs.aws.library_function import (
    PACKAGE_ROOT,
    core_closure,
    stage_handler_code,
)

CORE = "iot_remote_access.core"
# The shared packages each handler is deployed with (as its construct stages it).
SHARED = {
    name: ("certs",) for name in ("cert_signer", "cert_planner", "cert_worker", "cert_confirm")
}
SHARED["ledger_anchor"] = ("ledger",)
HANDLERS = sorted(p.parent.name for p in (PACKAGE_ROOT / "lambdas").glob("*/handler.py"))


def _imported_core_modules(tree: Path) -> set[str]:
    names = set()
    for source in tree.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for name in candidates:
                parts = name.split(".")
                if (
                    name.startswith(CORE + ".")
                    and (PACKAGE_ROOT / "core" / f"{parts[2]}.py").exists()
                ):
                    names.add(parts[2])
    return names


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_core_import_in_the_asset_resolves_inside_it(handler: str) -> None:
    staged = stage_handler_code(handler, SHARED.get(handler, ())) / "iot_remote_access"
    shipped = {p.stem for p in (staged / "core").glob("*.py")} - {"__init__"}
    assert _imported_core_modules(staged) <= shipped
    assert (staged / "core" / "__init__.py").is_file()


def test_an_asset_no_longer_holds_all_of_core() -> None:
    staged = stage_handler_code("tunnel_metrics") / "iot_remote_access" / "core"
    shipped = {p.name for p in staged.glob("*.py")}
    everything = {p.name for p in (PACKAGE_ROOT / "core").glob("*.py")}
    assert {"tunnel_metrics.py", "log_safety.py"} <= shipped < everything
    assert "hivemq_permissions.py" not in shipped  # GCP's, never a Lambda's


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from iot_remote_access.core.topics import render_topic\n", {"topics"}),
        ("from iot_remote_access.core import strict_json\n", {"strict_json"}),
        ("def f():\n    import iot_remote_access.core.stagger as s\n", {"stagger"}),
    ],
)
def test_imports_are_followed_through_core(tmp_path: Path, code: str, expected: set[str]) -> None:
    source = tmp_path / "handler.py"
    source.write_text(code)
    needed = core_closure([source])
    assert expected <= needed
    # ...and what those modules import in turn (topics -> its own core imports).
    for name in expected:
        assert _imported_core_modules_of(PACKAGE_ROOT / "core" / f"{name}.py") <= needed


def _imported_core_modules_of(module: Path) -> set[str]:
    folder = module.parent
    return {n for n in _imported_core_modules_in_file(module) if (folder / f"{n}.py").exists()}


def _imported_core_modules_in_file(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for name in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]:
                if name.startswith(CORE + "."):
                    names.add(name.split(".")[2])
    return names


@pytest.mark.parametrize(
    "code", ["import iot_remote_access.core\n", "from iot_remote_access import core\n"]
)
def test_importing_the_core_package_itself_ships_all_of_it(tmp_path: Path, code: str) -> None:
    source = tmp_path / "handler.py"
    source.write_text(code)
    everything = {p.stem for p in (PACKAGE_ROOT / "core").glob("*.py")} - {"__init__"}
    assert core_closure([source]) == everything
