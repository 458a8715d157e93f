"""`certs plan --cloud azure`, `inventory export --cloud azure` and `azure rotate`: the
installed console script in a subprocess, against the IoT Hub service STAND-IN.

The real DefaultAzureCredential gets its token from the ARM stand-in's managed-identity
endpoint; the hub address comes from IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT, as in production
with a private endpoint. The settings file is the Azure example plus a certificates section.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.arm.twin_inventory import stamp
from iot_remote_access.core.ledger import parse_record
from tests.azure.test_azure_cli_standin import COMMAND, EXAMPLE, azure_env
from tests.support.azure_arm_standin import ArmStandIn
from tests.support.azure_rotation import DeviceStandIn, certificate_tags, make_group_ca
from tests.support.azure_storage_standin import BlobStandIn
from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.pki import TestCa

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[IotHubServiceStandIn, dict[str, str]]]:
    with (
        ArmStandIn(tmp_path) as arm,
        IotHubServiceStandIn(TestCa(tmp_path / "tls")) as hub,
    ):
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(arm.ca_bundle.read_bytes() + Path(hub.ca_file).read_bytes())
        variables = azure_env(arm, tmp_path / "home")
        variables.update(
            REQUESTS_CA_BUNDLE=str(bundle), IOT_REMOTE_ACCESS_IOTHUB_ENDPOINT=hub.endpoint
        )
        yield hub, variables


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["azure"]["caCertificate"]["file"] = str(EXAMPLE.parent / "azure-fleet-ca.pem")
    document["certificates"] = {"hourlyRotationBudget": 2, "leadTimeDays": 60}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own console script
        [COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_plan_reads_the_due_twins_and_plans_within_the_settings_budget(
    env: tuple[IotHubServiceStandIn, dict[str, str]], settings: Path
) -> None:
    hub, variables = env
    for i in range(7):
        hub.register(f"sensor-{i}", certificate_tags(NOW + timedelta(days=10 + 10 * i)))
    result = run(
        "certs", "plan", "--cloud", "azure", "--settings", str(settings),
        "--now", NOW.isoformat(), "--format", "json", env=variables,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    # 60-day lead: the six certificates expiring within 60 days, two an hour.
    assert [s["thing"] for s in plan["slots"]] == [f"sensor-{i}" for i in range(6)]
    assert list(plan["perHour"].values()) == [2, 2, 2]
    assert plan["settings"]["hourlyBudget"] == 2 and plan["settings"]["leadDays"] == 60
    [query] = hub.requests
    assert (query.method, query.path, query.query) == (
        "POST",
        "/devices/query",
        {"api-version": "2021-04-12"},
    )
    assert query.body == {
        "query": "SELECT * FROM devices WHERE tags.certificate.notAfter <= "
        f"'{stamp(NOW + timedelta(days=60))}'"
    }
    assert query.headers["Authorization"].startswith("Bearer ")


def test_export_writes_every_device_with_certificate_tags(
    env: tuple[IotHubServiceStandIn, dict[str, str]], settings: Path
) -> None:
    hub, variables = env
    hub.register("sensor-b", certificate_tags(NOW, serial="0b", state="ISSUED", attempts=1))
    hub.register("sensor-a", certificate_tags(NOW + timedelta(days=400), serial="0a"))
    hub.register("no-tags")
    result = run(
        "inventory", "export", "--cloud", "azure", "--settings", str(settings), env=variables
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["thing"], r["serial"], r["rotationState"], r["attempts"]) for r in rows] == [
        ("sensor-a", "0a", "IDLE", "0"),
        ("sensor-b", "0b", "ISSUED", "1"),
    ]
    assert rows[1]["notAfter"] == NOW.isoformat()
    assert hub.requests[0].body == {
        "query": "SELECT * FROM devices WHERE is_defined(tags.certificate)"
    }


def test_a_twin_with_a_bad_date_or_no_azure_section_is_one_line_exit_2(
    env: tuple[IotHubServiceStandIn, dict[str, str]], settings: Path, tmp_path: Path
) -> None:
    hub, variables = env
    # Sorts before any due date, so the query selects it; then it does not parse.
    bad = "01/03/2027 09:00, next tuesday" * 5
    hub.register("sensor-1", {"certificate": {"notAfter": bad}})
    result = run("certs", "plan", "--cloud", "azure", "--settings", str(settings), env=variables)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: inventory: device 'sensor-1': tags.certificate.notAfter: "
        f"{bad[:40]!r}; allowed: %Y-%m-%dT%H:%M:%SZ"
    ]
    no_azure = tmp_path / "aws-only.yaml"
    no_azure.write_text(yaml.safe_dump({"certificates": {}}))
    result = run(
        "inventory", "export", "--cloud", "azure", "--settings", str(no_azure), env=variables
    )
    assert result.returncode == 2
    assert "has no azure section" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def blobs() -> Iterator[BlobStandIn]:
    with BlobStandIn() as standin:
        yield standin


def test_azure_rotate_runs_a_pass_and_the_next_pass_confirms(
    env: tuple[IotHubServiceStandIn, dict[str, str]], tmp_path: Path, blobs: BlobStandIn
) -> None:
    hub, variables = env
    ca = make_group_ca(tmp_path / "group")
    document = yaml.safe_load(EXAMPLE.read_text())
    document["azure"]["caCertificate"]["file"] = str(ca.cert_file)
    document["certificates"] = {"hourlyRotationBudget": 2}
    document["ledger"] = {"azure": {"storageAccount": "fleetanchors"}}
    settings = tmp_path / "rotate.yaml"
    settings.write_text(yaml.safe_dump(document))
    now = datetime.now(UTC)
    hub.register("sensor-1", certificate_tags(now + timedelta(days=20), serial="aa"))
    device = DeviceStandIn(hub, "sensor-1", ca.certificate)
    container = blobs.container_url("fleetanchors", "ledger-anchors")
    command = ("azure", "rotate", "--settings", str(settings), "--ca-key-file", str(ca.key_file),
               "--ledger-container-url", container)  # fmt: skip

    first = run(*command, env=variables)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["issued"] == ["sensor-1"]
    [leaf] = device.installed  # checked by the device module's check_issued
    assert leaf.not_valid_after_utc - now > timedelta(days=364)  # 365 + its stagger offset

    second = run(*command, env=variables)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["confirmed"] == ["sensor-1"]
    assert hub.twins["sensor-1"]["tags"]["certificate"]["serial"] == f"{leaf.serial_number:x}"

    # Each decision is in the access ledger, anchored after each pass; the chain holds.
    export = run("evidence", "export-objects", "--azure-container-url", container,
                 "--out", str(tmp_path / "x"), env=variables)  # fmt: skip
    assert export.returncode == 0, export.stderr
    chain = (tmp_path / "x" / "chain.jsonl").read_bytes().splitlines()
    assert [parse_record(line).data["event"] for line in chain] == [
        "cert.issue",
        "cert.rotate",
        "cert.revoke",
    ]
    verified = run("evidence", "verify", str(tmp_path / "x" / "chain.jsonl"), "--anchors",
                   str(tmp_path / "x" / "anchors.jsonl"), env=variables)  # fmt: skip
    assert verified.stdout.strip() == "holds: 3 record(s), seq 0..2, 2 anchor(s) checked"


def test_azure_rotate_refuses_missing_input_in_one_line(
    env: tuple[IotHubServiceStandIn, dict[str, str]], settings: Path
) -> None:
    _, variables = env
    no_key = run("azure", "rotate", "--settings", str(settings), env=variables)
    assert no_key.returncode == 2
    assert no_key.stderr.strip() == (
        "error: --ca-key-file or --ca-key-secret: give exactly one; allowed: either"
    )
    document = yaml.safe_load(settings.read_text())
    del document["certificates"]
    settings.write_text(yaml.safe_dump(document))
    result = run(
        "azure", "rotate", "--settings", str(settings), "--ca-key-file", "x", env=variables
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "has no certificates" in result.stderr


def test_the_aws_table_option_is_refused_with_azure(
    env: tuple[IotHubServiceStandIn, dict[str, str]], settings: Path
) -> None:
    hub, variables = env
    for command in (("certs", "plan"), ("inventory", "export")):
        result = run(
            *command, "--cloud", "azure", "--settings", str(settings), "--table", "t", env=variables
        )
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "error: --table: the AWS inventory table; allowed with --cloud azure: none"
        )
    assert hub.requests == []
