"""``inventory enroll --cloud gcp``: the installed console script in a subprocess, on the real
Firestore emulator; what it enrols is what ``certs plan --cloud gcp`` then plans."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from google.cloud import firestore

from iot_remote_access.pubsub.rotation_inventory import FirestoreInventory
from iot_remote_access.settings import FleetSettings
from tests.gcp.test_bridge_as_deployed import CLI
from tests.gcp.test_cli_certs_gcp import _settings
from tests.support.ca_service_standin import CaServiceStandIn, ready_issuer
from tests.support.factory_certificates import factory_certificate
from tests.support.gcp_rotation import Fleet, fresh_project, make_csr
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator


def run(
    *args: str, emulator: FirestoreEmulator, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.host},
    )


def enroll(
    settings: Path, *certificates: str, emulator: FirestoreEmulator, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return run(
        "inventory", "enroll", "--cloud", "gcp", "--settings", str(settings), *certificates,
        emulator=emulator, stdin=stdin,
    )  # fmt: skip


def write(directory: Path, name: str, pem: str) -> str:
    path = directory / name
    path.write_text(pem)
    return str(path)


def test_enrolled_devices_are_planned_and_enrolling_twice_changes_nothing(
    firestore_emulator: FirestoreEmulator, tmp_path: Path
) -> None:
    project = fresh_project("enroll")
    settings = _settings(tmp_path, project, budget=2)
    files = []
    certificates = {}
    for n, days in enumerate((35, 38)):
        pem, certificates[f"gw-{n}"] = factory_certificate(f"gw-{n}", days=days)
        files.append(write(tmp_path, f"gw-{n}.pem", pem))
    bundle = ""
    for thing in ("gw-2", "gw-3"):
        pem, certificates[thing] = factory_certificate(thing, days=50)
        bundle += f"subject=CN={thing}\n{pem}"  # openssl's text between blocks is ignored
    pem, certificates["gw-late"] = factory_certificate("gw-late", days=300)
    files.append(write(tmp_path, "gw-late.pem", pem))

    result = enroll(settings, *files, "-", emulator=firestore_emulator, stdin=bundle)
    assert result.returncode == 0, result.stderr
    assert sorted(line.split()[:2][1] for line in result.stdout.splitlines()) == sorted(
        certificates
    )
    assert result.stderr.strip() == "5 enrolled, 0 replaced, 0 unchanged"
    inventory = FirestoreInventory(firestore.Client(project=project))
    written = {thing: inventory.get(thing) for thing in certificates}
    for thing, certificate in certificates.items():
        item = written[thing]
        assert item is not None and item["rotationState"] == "IDLE"
        assert (
            item["certificateId"] == "x509-sha256:" + certificate.fingerprint(hashes.SHA256()).hex()
        )
        assert item["serial"] == format(certificate.serial_number, "x")  # as the issuer writes
        assert item["notAfter"] == certificate.not_valid_after_utc.isoformat()

    again = enroll(settings, *files, "-", emulator=firestore_emulator, stdin=bundle)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip() == "0 enrolled, 0 replaced, 5 unchanged"
    assert {thing: inventory.get(thing) for thing in certificates} == written

    plan = run(
        "certs", "plan", "--cloud", "gcp", "--settings", str(settings), "--format", "json",
        emulator=firestore_emulator,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    shown = json.loads(plan.stdout)
    # Inside the default 60-day lead: the four; gw-late (300 days) is not due yet.
    assert shown["pending"] == 4
    assert sorted(slot["thing"] for slot in shown["slots"]) == ["gw-0", "gw-1", "gw-2", "gw-3"]
    assert max(int(n) for n in shown["perHour"].values()) == 2


def test_another_certificate_needs_replace_and_never_mid_rotation(
    firestore_emulator: FirestoreEmulator, tmp_path: Path
) -> None:
    project = fresh_project("enroll")
    settings = _settings(tmp_path, project)
    inventory = FirestoreInventory(firestore.Client(project=project))
    first = write(tmp_path, "first.pem", factory_certificate("gw-a")[0])
    assert enroll(settings, first, emulator=firestore_emulator).returncode == 0
    enrolled = inventory.get("gw-a")
    inventory.transition("gw-a", None, {"previousCertificateId": "old", "revokePending": True})
    second_pem, second = factory_certificate("gw-a", days=90)
    second_file = write(tmp_path, "second.pem", second_pem)
    newcomer = write(tmp_path, "new.pem", factory_certificate("gw-new")[0])

    refused = enroll(settings, newcomer, second_file, emulator=firestore_emulator)
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (
        "second.pem: certificate 1: thing 'gw-a': enrolled with another certificate"
        in refused.stderr
    )
    assert "allowed: --replace" in refused.stderr and "nothing was enrolled" in refused.stderr
    assert inventory.get("gw-new") is None  # nothing half-done
    assert inventory.get("gw-a") == {
        **enrolled,
        "previousCertificateId": "old",
        "revokePending": True,
    }

    inventory.transition("gw-a", None, {"rotationState": "REQUESTED"})
    in_flight = enroll(settings, "--replace", second_file, emulator=firestore_emulator)
    assert in_flight.returncode == 2 and "a rotation is in flight" in in_flight.stderr

    inventory.transition("gw-a", None, {"rotationState": "FAILED"})
    replaced = enroll(settings, "--replace", second_file, emulator=firestore_emulator)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.startswith("replaced gw-a ")
    item = inventory.get("gw-a")
    assert item is not None
    assert item["certificateId"].endswith(second.fingerprint(hashes.SHA256()).hex())
    assert item["rotationState"] == "IDLE" and item["attempts"] == 0
    # The old certificate awaiting revocation is kept: the daily plan still revokes it.
    assert item["previousCertificateId"] == "old" and item["revokePending"] is True


def _hostile_cases(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(file, its content, what the one line must say)."""
    good = factory_certificate("gw-ok")[0]
    body = good.splitlines()
    corrupt = "\n".join([body[0], body[1][:10] + "!!!!" + body[1][14:], *body[2:]])
    return [
        ("empty.pem", "", "no PEM certificate; allowed: PEM 'CERTIFICATE' blocks"),
        ("corrupt.pem", corrupt, "certificate 1: not an X.509 certificate"),
        ("key.pem", factory_certificate("gw-k", key_pem=True)[0],
         "certificate 2: a 'PRIVATE KEY' block; allowed: 'CERTIFICATE' blocks only"),
        ("slash.pem", factory_certificate("gw/../x\x1b[31m")[0],
         "subject CN: 'gw/../x\\x1b[31m' is not a thing name; allowed: [a-zA-Z0-9:_-]{1,128}"),
        ("long.pem", factory_certificate("a" * 200)[0],
         "subject CN: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... (200 characters) is not"),
        ("two.pem", factory_certificate("gw-1", "gw-2")[0], "subject CN: 2 found"),
        ("expired.pem", factory_certificate("gw-old", days=-1)[0], "notAfter: "),
        ("ca.pem", factory_certificate("gw-ca", ca=True)[0], "basicConstraints: CA:TRUE"),
        ("open.pem", good.replace("-----END CERTIFICATE-----", ""), "without its END line"),
        ("binary.pem", "\x00" * 8, "binary file"),
    ]  # fmt: skip


def test_hostile_certificates_are_refused_in_one_line_and_nothing_is_written(
    firestore_emulator: FirestoreEmulator, tmp_path: Path
) -> None:
    project = fresh_project("enroll")
    settings = _settings(tmp_path, project)
    good = write(tmp_path, "good.pem", factory_certificate("gw-good")[0])
    for name, content, expected in _hostile_cases(tmp_path):
        path = write(tmp_path, name, content)
        result = enroll(settings, good, path, emulator=firestore_emulator)
        assert result.returncode == 2, (name, result.stderr)
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith(f"error: {path}"), line
        assert expected in line and "Traceback" not in line, (expected, line)
        assert "PRIVATE KEY-----" not in line and "\x1b" not in line
    duplicate = write(tmp_path, "dup.pem", factory_certificate("gw-good")[0])
    result = enroll(settings, good, duplicate, emulator=firestore_emulator)
    assert result.returncode == 2 and "also names another certificate" in result.stderr
    assert enroll(settings, "-", "-", emulator=firestore_emulator).returncode == 2
    missing = enroll(settings, str(tmp_path / "nope.pem"), emulator=firestore_emulator)
    assert missing.returncode == 2 and "cannot read certificate" in missing.stderr
    # Nothing reached Firestore: the valid certificate in every run was not enrolled.
    assert FirestoreInventory(firestore.Client(project=project)).get("gw-good") is None


@pytest.mark.parametrize("cloud", ["aws", "azure"])
def test_other_clouds_are_refused(
    cloud: str, firestore_emulator: FirestoreEmulator, tmp_path: Path
) -> None:
    result = run("inventory", "enroll", "--cloud", cloud, "x.pem", emulator=firestore_emulator)
    assert result.returncode == 2 and "--cloud" in result.stderr


def test_an_enrolled_device_rotates_and_its_factory_certificate_is_not_revoked_at_ca_service(
    firestore_emulator: FirestoreEmulator,
    ca_service: CaServiceStandIn,
    ca: TestCa,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Enrolled by the CLI, rotated by the real protocol and CaServiceIssuer (CA Service
    stand-in): the new certificate is CA Service's, and the factory one is recorded as
    not revoked without any RevokeCertificate call (nothing of the pool's to revoke)."""
    project = fresh_project("enroll")
    settings = FleetSettings.parse(
        {
            "gcp": {
                "projectId": project,
                "projectNumber": "123456789012",
                "bridge": {"serviceAccount": f"iot-bridge@{project}.iam.gserviceaccount.com"},
                "certificateAuthority": {"location": "europe-west1"},
            }
        }
    )
    path = write(tmp_path, "gw-f.pem", factory_certificate("gw-f")[0])
    assert enroll(_settings(tmp_path, project), path, emulator=firestore_emulator).returncode == 0
    fleet = Fleet(tmp_path, ca, project, issuer=ready_issuer(ca_service, settings, project))
    enrolled = fleet.inventory.get("gw-f")
    assert enrolled is not None and enrolled["certificateId"].startswith("x509-sha256:")
    fleet.inventory.transition("gw-f", None, {"rotationState": "REQUESTED"})
    protocol = fleet.protocol()
    csr = json.dumps({"csr": make_csr("gw-f")}).encode()
    assert protocol.on_csr(csr, {"thing": "gw-f"}).outcome == "issued"
    with caplog.at_level("INFO", logger="iot_remote_access.audit"):
        assert protocol.on_confirm(b"{}", {"thing": "gw-f"}).outcome == "confirmed"
    item = fleet.inventory.get("gw-f")
    assert item is not None and item["certificateId"].startswith(fleet.issuer.pool)
    assert item["lastRevokedCertificateId"] == enrolled["certificateId"]
    assert "revokePending" not in item and "previousCertificateId" not in item
    (revoke,) = [r.audit for r in caplog.records if r.audit["event"] == "rotation.revoke"]  # type: ignore[attr-defined]
    assert revoke["decision"].startswith("not-revoked: nothing to revoke at CA Service")
    assert "RevokeCertificate" not in ca_service.methods_called()
