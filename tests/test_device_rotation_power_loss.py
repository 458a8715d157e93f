"""Power loss between every pair of steps of a rotation (issue 16, the device side).

A real device process (tests/support/rotation_device_process.py, the real module)
rotates against real mosquitto over mutual TLS with the signer STAND-IN; it SIGKILLs
itself right after step N. A second process on the same files must end with a
certificate that connects, never a half-installed one: the state file names one
pair, that pair's certificate and key are whole and match (the broker accepts them),
and nothing else is left on disk.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from iot_remote_access.device.rotation import STEPS
from iot_remote_access.device.rotation_state import Phase
from tests.support.mqtt_iot_data import mqtt5_client
from tests.support.paths import REPO_ROOT
from tests.support.pki import ClientCredentials
from tests.support.processes import MosquittoBroker
from tests.support.rotation_device import (
    SIGNER_IDENTITY,
    SignerStandIn,
    SigningCa,
    provisioned_store,
    rotation_acl,
)

THING = "sensor-7"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SigningCa, SignerStandIn]]:
    directory = tmp_path_factory.mktemp("rotation-power")
    ca = SigningCa(directory / "pki")
    broker = MosquittoBroker(directory / "mosquitto", ca, rotation_acl())
    broker.start()
    signer = SignerStandIn(broker.port, ca, ca.client(SIGNER_IDENTITY))
    try:
        yield ca, signer
    finally:
        signer.close()
        broker.stop()


def run_device(
    config: dict[str, object], path: Path, on_ready: object = None
) -> tuple[int, list[str]]:
    """Run the device process to its end; call ``on_ready`` once it is connected."""
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.rotation_device_process", str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.strip() == "ready" and callable(on_ready):
            threading.Thread(target=on_ready, daemon=True).start()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, lines


def connects(credentials: ClientCredentials, port: int) -> bool:
    """An independent client presenting the device's files: does the broker accept them?"""
    client = mqtt5_client("rotation-check", credentials)
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return False
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.loop_start()
    ok = connected.wait(10) and client.is_connected()
    client.loop_stop()
    client.disconnect()
    return ok


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_after_any_step_ends_with_a_working_certificate(
    step: str, world: tuple[SigningCa, SignerStandIn], tmp_path: Path
) -> None:
    ca, signer = world
    store = provisioned_store(tmp_path / "device", ca, THING)
    while not signer.confirms.empty():
        signer.confirms.get()
    config = {
        "thing": THING,
        "store": str(store.directory),
        "port": signer.port,
        "server_ca": str(ca.ca_file),
        "expected_ca": str(ca.ca_file),
        "stop_at": step,
        "timeout": 30.0,
    }
    code, lines = run_device(config, tmp_path / "run1.json", lambda: signer.request_rotation(THING))
    assert code == -signal.SIGKILL, lines
    assert lines[-1] == f"step {step}", lines  # killed right at that boundary

    code, lines = run_device({**config, "stop_at": None}, tmp_path / "run2.json")
    assert code == 0, lines
    final = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    assert final["phase"] == Phase.IDLE.value

    progress = store.load()
    assert progress.phase is Phase.IDLE and progress.pending is None and progress.previous is None
    assert progress.current == final["current"] != "factory", (step, lines)
    # Nothing half-made or left behind: one pair directory, one key, no temporary file.
    assert [p.name for p in (store.directory / "pairs").iterdir()] == [progress.current]
    assert [p.name for p in (store.directory / "keys").iterdir()] == [f"{progress.current}.key"]
    assert not [p for p in store.directory.rglob("*") if p.name.endswith(".partial")]
    key_file = store.directory / "keys" / f"{progress.current}.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600

    certificate_file = store.certificate_file(progress.current)
    leaf = x509.load_pem_x509_certificate(certificate_file.read_bytes())
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == THING
    assert connects(ClientCredentials(ca.ca_file, certificate_file, key_file), signer.port)
    # The cloud side was told, from the new certificate: it may retire the old one.
    assert signer.confirms.get(timeout=5) == THING
    assert signer.records[THING].state == "IDLE"
