"""Power loss on an Azure device mid-rotation: the real ``AzureRotationDevice`` in its own
process SIGKILLs itself right after a step, a second process resumes on the same files,
and the service's next passes finish the rotation.

Chosen steps: where the Azure transport differs from the generic module (before the CSR
answer, after it, after the certificate arrived, connected with the new pair through DPS
but not confirmed, confirmed but the old pair not yet deleted); every step of the shared
state machine is covered by tests/test_device_rotation_power_loss.py. Stand-ins as in
test_rotation_azure_device.py (IoT Hub service API and MQTT side, DPS).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iot_remote_access.arm.ca_issuer import EnrollmentGroupCaIssuer
from iot_remote_access.arm.direct_methods import DirectMethodClient
from iot_remote_access.arm.hub_service import TwinClient
from iot_remote_access.arm.proof_of_possession import load_ca_key
from iot_remote_access.arm.rotation_service import AzureRotationService
from iot_remote_access.arm.twin_inventory import TwinInventory
from iot_remote_access.core.rotation_plan import RotationSettings
from iot_remote_access.core.stagger import StaggerPolicy
from iot_remote_access.device.rotation_state import Phase
from tests.support.azure_device_side import DpsStandIn, HubMqttStandIn
from tests.support.azure_rotation import Credential, certificate_tags
from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.paths import REPO_ROOT
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker
from tests.support.rotation_device import SigningCa, provisioned_store

THING = "sensor-9"
SCOPE = "0ne0000BEEF"
ACL = f"user {THING}\ntopic readwrite $iothub/#\nuser iothub-standin\ntopic readwrite $iothub/#\n"


@dataclass
class World:
    ca: SigningCa
    hub: IotHubServiceStandIn
    dps: DpsStandIn
    port: int
    key_file: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("azure-power")
    ca = SigningCa(directory / "group-ca")
    key_file = directory / "group-ca.key"
    key_file.write_bytes(
        ca._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    broker = MosquittoBroker(directory / "mosquitto", ca, ACL)
    broker.start()
    with (
        IotHubServiceStandIn(TestCa(directory / "service-tls")) as hub,
        DpsStandIn(ca, id_scope=SCOPE, assigned_hub="localhost") as dps,
    ):
        # A dead device's direct method fails after 3 s instead of 30.
        bridge = HubMqttStandIn(hub, THING, broker.port, ca, timeout=3)
        try:
            yield World(ca, hub, dps, broker.port, key_file)
        finally:
            bridge.close()
            broker.stop()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _service(world: World, clock: Clock) -> AzureRotationService:
    certificate = x509.load_pem_x509_certificate(world.ca.ca_file.read_bytes())
    credential, verify = Credential(), str(world.hub.ca_file)
    return AzureRotationService(
        inventory=TwinInventory(
            TwinClient(world.hub.endpoint, credential, connection_verify=verify)
        ),
        methods=DirectMethodClient(world.hub.endpoint, credential, connection_verify=verify),
        issuer=EnrollmentGroupCaIssuer(
            certificate, load_ca_key(world.key_file, certificate=certificate)
        ),
        policy=StaggerPolicy(base_days=1, window_days=1),  # the test CA lives two days
        settings=RotationSettings(hourly_budget=5),
        clock=clock,
    )


def run_device(config: dict[str, object], path: Path, on_ready: Callable[[], None]) -> list[str]:
    """Run the device process to its end; ``on_ready`` (a service pass) once it is connected."""
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.rotation_azure_device_process", str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    pass_thread = threading.Thread(target=on_ready, daemon=True)
    for line in process.stdout:
        lines.append(line.strip())
        if line.strip() == "ready":
            pass_thread.start()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    pass_thread.join(timeout=30)
    lines.append(f"exit {process.returncode}")
    return lines


@pytest.mark.parametrize("step", ["csr", "sent", "received", "connected", "confirmed"])
def test_a_kill_after_the_step_ends_with_the_new_certificate_confirmed(
    step: str, world: World, tmp_path: Path
) -> None:
    store = provisioned_store(tmp_path / "device", world.ca, THING)
    factory = x509.load_pem_x509_certificate(store.certificate_file("factory").read_bytes())
    world.hub.twins.pop(THING, None)
    world.hub.register(THING, certificate_tags(factory.not_valid_after_utc, serial="f0"))
    world.dps.requests.clear()
    clock = Clock()
    service = _service(world, clock)
    config = {
        "thing": THING,
        "store": str(store.directory),
        "port": world.port,
        "ca": str(world.ca.ca_file),
        "scope": SCOPE,
        "dps_port": world.dps.port,
        "stop_at": step,
    }
    lines = run_device(config, tmp_path / "run1.json", service.run_once)
    assert lines[-2:] == [f"step {step}", f"exit {-signal.SIGKILL}"], lines

    # Killed before its CSR answer reached the service: that attempt failed and is
    # retried after the backoff (6 h); the device resumes with the same key and CSR.
    clock.now += timedelta(hours=7)
    lines = run_device({**config, "stop_at": None}, tmp_path / "run2.json", service.run_once)
    assert lines[-1] == "exit 0", lines
    final = json.loads(lines[-2])
    assert final["phase"] == Phase.IDLE.value and final["current"] != "factory", lines

    service.confirm(THING)  # if the second process's pass had not already
    new = x509.load_pem_x509_certificate(store.certificate_file(final["current"]).read_bytes())
    tags = world.hub.twins[THING]["tags"]["certificate"]
    assert (tags["serial"], tags["state"]) == (f"{new.serial_number:x}", "IDLE"), tags
    assert service.issuer.revoked == {"f0"}  # type: ignore[attr-defined]
    # On the device: one pair, the new one; DPS last saw the new certificate.
    progress = store.load()
    assert progress.phase is Phase.IDLE and progress.previous is None
    assert [p.name for p in (store.directory / "pairs").iterdir()] == [progress.current]
    assert world.dps.requests[-1].presented_serial == new.serial_number
