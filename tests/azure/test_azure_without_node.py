"""`azure plan` on a machine without Node.js, against the local ARM stand-in (not Azure).

The Azure desired state is a plain-Python tree: the real console script runs
with a PATH that holds only Python, and neither it nor any Azure module loads
jsii (``constructs``, ``aws_cdk``), which would need Node.js.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import iot_remote_access.arm
import iot_remote_access.constructs.azure
from tests.azure.test_azure_cli_standin import EXAMPLE, azure_env, target
from tests.support.azure_arm_standin import ArmStandIn
from tests.support.azure_helpers import GROUP, SUBSCRIPTION, make_ca
from tests.support.no_node import (
    CONSOLE_SCRIPT,
    JSII_PACKAGES,
    env_without_node,
    imported_packages,
    packages_loaded_by,
)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[ArmStandIn]:
    with ArmStandIn(tmp_path, lro_polls=0, lro_retry_after=1) as server:
        server.add_resource_group(SUBSCRIPTION, GROUP)
        yield server


def test_azure_plan_runs_without_node_on_path_standin(standin: ArmStandIn, tmp_path: Path) -> None:
    env = env_without_node(azure_env(standin, tmp_path / "home"), tmp_path / "bin")
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # every module the run imports, on stderr
    result = subprocess.run(  # our own console script
        [str(CONSOLE_SCRIPT), "azure", "plan", *target(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "IoT hub example-fleet-hub: create" in lines
    assert lines[-1] == "Plan: 9 to create, 0 to change, 0 unchanged."
    assert "Traceback" not in result.stderr
    loaded = imported_packages(result.stderr)
    assert "iot_remote_access" in loaded and "azure" in loaded  # the log is complete
    assert loaded & JSII_PACKAGES == set()
    assert standin.writes() == []


def test_azure_deploy_runs_without_node_on_path_standin(
    standin: ArmStandIn, tmp_path: Path
) -> None:
    ca = make_ca(tmp_path / "ca")
    settings = yaml.safe_load(EXAMPLE.read_text())
    settings["azure"]["caCertificate"]["file"] = str(ca.certificate_file)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    env = env_without_node(azure_env(standin, tmp_path / "home"), tmp_path / "bin")
    result = subprocess.run(  # our own console script
        [
            str(CONSOLE_SCRIPT),
            "azure",
            "deploy",
            *target(settings_file),
            "--ca-key-file",
            str(ca.key_file),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "Deployed: 9 created, 0 changed, 0 unchanged."
    assert "Traceback" not in result.stderr


def _modules(package: ModuleType) -> list[str]:
    return [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def test_no_azure_module_imports_jsii(tmp_path: Path) -> None:
    modules = [
        *_modules(iot_remote_access.arm),
        *_modules(iot_remote_access.constructs.azure),
        "iot_remote_access.stacks.azure_stack",
        "iot_remote_access.cli.azure",
    ]
    assert "iot_remote_access.arm.generic" in modules
    loaded = packages_loaded_by(modules, env_without_node(os.environ, tmp_path / "bin"))
    assert "azure" in loaded
    assert loaded & JSII_PACKAGES == set()
