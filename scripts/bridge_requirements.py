"""Print the pinned requirements of the bridge container.

The bridge needs the ``gcp`` extra and pydantic, not the CDK: the image installs
these, then the package itself with ``--no-deps``. The names come from
pyproject.toml (which declares compatible ranges, as a library does) and the exact
versions from constraints.txt (the versions CI tests), so the image is reproducible.
Usage: python scripts/bridge_requirements.py [pyproject.toml [constraints.txt]]
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: Base dependencies the bridge imports (everything else in the base list is for the CDK side).
BASE_NEEDED = ("pydantic",)
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"{requirement!r} is not a requirement")
    return match.group(0).lower().replace("_", "-")


def locked_versions(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[_name(name)] = version.strip()
    return pins


def requirements(pyproject: Path, constraints: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = [d for d in project["dependencies"] if _name(d) in BASE_NEEDED]
    pins = locked_versions(constraints)
    wanted = [_name(d) for d in (*base, *project["optional-dependencies"]["gcp"])]
    missing = [name for name in wanted if name not in pins]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} not in {constraints}; regenerate it")
    return [f"{name}=={pins[name]}" for name in wanted]


if __name__ == "__main__":
    root = Path(__file__).parent.parent
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "pyproject.toml"
    lock = Path(sys.argv[2]) if len(sys.argv) > 2 else path.parent / "constraints.txt"
    print("\n".join(requirements(path, lock)))
