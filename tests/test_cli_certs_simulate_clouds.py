"""`certs simulate --settings`: the deployment's stagger policy, per cloud it rotates on."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.cli.certs_simulate import capped
from tests.support.cli_runner import run_cli
from tests.support.no_node import CONSOLE_SCRIPT, env_without_node
from tests.support.paths import REPO_ROOT

GCP: dict[str, Any] = {
    "projectId": "my-fleet-project",
    "projectNumber": "123456789012",
    "bridge": {"serviceAccount": "iot-bridge@my-fleet-project.iam.gserviceaccount.com"},
    "certificateAuthority": {"location": "europe-west1"},
}


def write_settings(folder: Path, **sections: Any) -> Path:
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": sections}))
    return path


def three_clouds(folder: Path) -> Path:
    """The example Azure deployment plus rotation on AWS and a CA pool on GCP, one file."""
    azure = yaml.safe_load((REPO_ROOT / "examples" / "azure-settings.yaml").read_text())
    shutil.copy(REPO_ROOT / "examples" / "azure-fleet-ca.pem", folder / "azure-fleet-ca.pem")
    return write_settings(
        folder,
        **azure,
        certificates={"baseValidityDays": 300, "staggerWindowDays": 60},
        gcp=GCP,
    )


def test_each_cloud_of_the_settings_gets_the_deployments_policy_within_the_bound(
    tmp_path: Path,
) -> None:
    settings = three_clouds(tmp_path)
    result = run_cli(
        "certs", "simulate", "--devices", "5000", "--settings", str(settings), "--format", "json"
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["baseDays"], report["windowDays"]) == (300, 60)
    bound = math.ceil(1.1 * 5000 / 60)
    assert report["peakBound"] <= bound + 1
    assert set(report["clouds"]) == {"aws", "gcp", "azure"}
    for cloud, view in report["clouds"].items():
        staggered = view["staggered"]
        assert staggered["withinBound"], cloud
        assert sum(staggered["perValidityDay"].values()) == 5000
        assert set(map(int, staggered["perValidityDay"])) == set(range(300, 360)), cloud
    # The pool's maximum is the longest staggered validity (the default): nothing is cut.
    assert report["clouds"]["gcp"]["maximumLifetimeDays"] == 359
    assert report["clouds"]["aws"]["maximumLifetimeDays"] is None


def test_the_console_script_plots_one_row_per_cloud_without_node(tmp_path: Path) -> None:
    settings = three_clouds(tmp_path)
    target = tmp_path / "expiry.png"
    completed = subprocess.run(
        [
            *(str(CONSOLE_SCRIPT), "certs", "simulate", "--devices", "2000"),
            *("--settings", str(settings), "--plot", str(target)),
        ],
        env=env_without_node(os.environ, tmp_path / "bin"),  # it needs no Node.js
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert "gcp: CA Service pool 'iot-devices', at most 359 days" in lines
    assert "azure: the DPS enrollment group's CA" in lines
    assert sum("staggered on" in line and " ok " in line for line in lines) == 3
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(png[20:24], "big")
    assert height == 4 * 3 * 100  # without staggering + aws, gcp, azure; 3 in. each at 100 dpi


def test_only_the_clouds_that_rotate_are_simulated(tmp_path: Path) -> None:
    settings = write_settings(tmp_path, gcp=GCP)
    result = run_cli(
        "certs", "simulate", "--devices", "100", "--settings", str(settings), "--format", "json"
    )
    assert result.code == 0, result.stderr
    assert list(json.loads(result.stdout)["clouds"]) == ["gcp"]


@pytest.mark.parametrize(
    ("extra", "sections", "message"),
    [
        (
            ["--base-days", "200"],
            {"certificates": {}},
            "error: --base-days: 200; allowed: not with --settings",
        ),
        ([], {"telemetryTopic": "dt/{thing}/t"}, "rotates certificates on no cloud"),
        (
            [],
            {"certificates": {"staggerWindowDays": 0}},
            "certificates.staggerWindowDays",
        ),
    ],
)
def test_bad_settings_are_one_line_exit_2(
    tmp_path: Path, extra: list[str], sections: dict[str, Any], message: str
) -> None:
    settings = write_settings(tmp_path, **sections)
    result = run_cli("certs", "simulate", "--devices", "10", "--settings", str(settings), *extra)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_cap_below_the_policy_piles_the_cut_certificates_on_one_day() -> None:
    assert capped({365: 3, 400: 4, 454: 5}, 400) == {365: 3, 400: 9}
    assert capped({365: 3}, None) == {365: 3}
