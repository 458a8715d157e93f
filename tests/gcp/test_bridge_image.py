"""What the bridge's container image is built from (no Docker daemon is needed to check it).

The image installs only the ``gcp`` extra and pydantic (from pyproject.toml, via
scripts/bridge_requirements.py) and the package with --no-deps, so the bridge
must import without the CDK side.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "iot_remote_access" / "bridge" / "Dockerfile"


def test_image_requirements_are_the_gcp_extra_and_pydantic_pinned() -> None:
    output = subprocess.run(
        [sys.executable, "scripts/bridge_requirements.py", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [d for d in project["dependencies"] if d.startswith("pydantic")] + project[
        "optional-dependencies"
    ]["gcp"]
    names = [re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in declared]  # type: ignore[union-attr]
    assert [line.split("==")[0] for line in output] == names
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line) for line in output)
    # Each pin is the version CI installs (constraints.txt), within the declared range.
    lock = {
        line.lower().replace("_", "-") for line in (REPO / "constraints.txt").read_text().split()
    }
    assert set(output) <= lock, set(output) - lock


def test_bridge_imports_without_the_cdk() -> None:
    code = (
        "import sys, iot_remote_access.bridge.service, iot_remote_access.bridge.__main__;"
        "print(sorted(m for m in ('aws_cdk', 'constructs', 'jsii', 'boto3', 'cdk_nag', 'yaml')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_dockerfile_is_multi_stage_slim_pinned_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None and re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base.group(1))
    final = stages[-1]
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in final  # nothing is built or installed in the final image
    assert "COPY --from=build /opt/bridge /opt/bridge" in final
    assert 'ENTRYPOINT ["python", "-m", "iot_remote_access.bridge"]' in final
    assert "pip uninstall --yes pip" in stages[0]
