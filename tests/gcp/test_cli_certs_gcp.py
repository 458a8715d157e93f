"""``certs plan --cloud gcp`` and ``inventory export --cloud gcp``: the installed console script
in a subprocess, on the real Firestore emulator, from one settings file."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from iot_remote_access.core.rotation_plan import RotationSettings, RotationState
from iot_remote_access.pubsub.rotation_planner import GcpRotationPlanner
from tests.gcp.test_bridge_as_deployed import SETTINGS_FILE, cli
from tests.support.gcp_rotation import Fleet
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator


@pytest.fixture
def fleet(firestore_emulator: FirestoreEmulator, tmp_path: Path, ca: TestCa) -> Fleet:
    fleet = Fleet(tmp_path, ca)
    for n in range(6):
        fleet.enroll(f"gw-{n}", days=35 + n)
    fleet.enroll("gw-new", days=300)
    fleet.enroll("gw-busy", days=36, state=RotationState.FAILED)
    return fleet


def _settings(tmp_path: Path, project: str, budget: int = 2) -> Path:
    """The example GCP settings file (the one `gcp deploy` and `gcp manifests` read), with
    this test's project and a certificates section."""
    document = yaml.safe_load(SETTINGS_FILE.read_text())
    section = document["iot-remote-access"]
    section["gcp"]["projectId"] = project
    section["certificates"] = {"hourlyRotationBudget": budget}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_certs_plan_for_gcp_shows_the_planner_s_slots(
    fleet: Fleet, tmp_path: Path, firestore_emulator: FirestoreEmulator
) -> None:
    settings = _settings(tmp_path, fleet.project)
    now = datetime.now(UTC).replace(microsecond=0)
    result = cli(
        "certs", "plan", "--cloud", "gcp", "--settings", str(settings),
        "--now", now.isoformat(), "--format", "json",
        env={"FIRESTORE_EMULATOR_HOST": firestore_emulator.host},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    # What the GCP planner itself computes from the same inventory and settings.
    planner = GcpRotationPlanner(
        inventory=fleet.inventory,
        protocol=fleet.protocol(),
        publisher=None,
        commands_topic="unused",
        settings=RotationSettings(hourly_budget=2),
    )
    expected = planner.compute(now)
    assert shown["pending"] == expected.pending == 7
    assert [(s["thing"], s["hour"]) for s in shown["slots"]] == [
        (s.thing, s.hour.isoformat()) for s in expected.slots
    ]
    assert max(int(n) for n in shown["perHour"].values()) == 2  # the settings' budget
    assert shown["settings"]["hourlyBudget"] == 2


def test_inventory_export_for_gcp_writes_every_device(
    fleet: Fleet, tmp_path: Path, firestore_emulator: FirestoreEmulator
) -> None:
    settings = _settings(tmp_path, fleet.project)
    result = cli(
        "inventory", "export", "--cloud", "gcp", "--settings", str(settings),
        env={"FIRESTORE_EMULATOR_HOST": firestore_emulator.host},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["thing"] for r in rows] == sorted(
        ["gw-busy", "gw-new", *(f"gw-{n}" for n in range(6))]
    )
    busy = next(r for r in rows if r["thing"] == "gw-busy")
    assert busy["rotationState"] == "FAILED" and busy["certificateId"].startswith("projects/")


def test_bad_gcp_input_exits_2_with_one_line(
    tmp_path: Path, firestore_emulator: FirestoreEmulator
) -> None:
    env = {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host}
    no_gcp = tmp_path / "none.yaml"
    no_gcp.write_text(yaml.safe_dump({"iot-remote-access": {"certificates": {}}}))
    settings = _settings(tmp_path, "rot-cli-bad")
    cases = [
        (["certs", "plan", "--cloud", "gcp"], "--settings: required with --cloud gcp"),
        (["certs", "plan", "--cloud", "gcp", "--settings", str(no_gcp)], "has no gcp.projectId"),
        (["inventory", "export", "--cloud", "gcp", "--settings", str(no_gcp)], "has no gcp.projectId"),
        (
            ["inventory", "export", "--cloud", "gcp", "--settings", str(settings), "--table", "t"],
            "--table: the AWS inventory table; allowed with --cloud gcp: none",
        ),
    ]  # fmt: skip
    for args, expected in cases:
        result = cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
