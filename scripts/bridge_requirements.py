"""Print the pinned requirements of the bridge container, read from pyproject.toml.

The bridge needs the ``gcp`` extra and pydantic, not the CDK: the image installs
these, then the package itself with ``--no-deps``. Reading them from pyproject
keeps one list of pins. Usage: python scripts/bridge_requirements.py [pyproject.toml]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

#: Base dependencies the bridge imports (everything else in the base list is for the CDK side).
BASE_NEEDED = ("pydantic",)


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = [d for d in project["dependencies"] if d.split("==")[0].lower() in BASE_NEEDED]
    return [*base, *project["optional-dependencies"]["gcp"]]


if __name__ == "__main__":
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "pyproject.toml"
    )
    print("\n".join(requirements(path)))
