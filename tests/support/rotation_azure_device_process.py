"""An Azure device process for the power-loss test: ``python -m
tests.support.rotation_azure_device_process CONFIG.json``.

It runs the real ``AzureRotationDevice`` against mosquitto (standing in for IoT Hub's MQTT
side) and the DPS stand-in. With ``stop_at`` it SIGKILLs itself right after that step
boundary, as a power cut would stop it. Without it, it runs until no rotation is in flight
and the pair is no longer the factory's, then prints the final state as one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from iot_remote_access.device.certificate_check import load_expected_cas
from iot_remote_access.device.dps import Dps
from iot_remote_access.device.keystore import FileKeyStore
from iot_remote_access.device.rotation import Broker
from iot_remote_access.device.rotation_azure import AzureRotationDevice
from iot_remote_access.device.rotation_state import CredentialStore, Phase


def main(config_file: str) -> int:
    config = json.loads(Path(config_file).read_text())
    stop_at = config.get("stop_at")

    def hook(step: str) -> None:
        print(f"step {step}", flush=True)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGKILL)

    directory = Path(config["store"])
    ca = Path(config["ca"])
    device = AzureRotationDevice(
        thing=config["thing"],
        store=CredentialStore(directory, FileKeyStore(directory / "keys")),
        broker=Broker("set-by-dps", config["port"], server_ca_file=ca),
        expected_cas=load_expected_cas(ca.read_bytes()),
        dps=Dps(config["scope"], host="127.0.0.1", port=config["dps_port"], server_ca_file=ca),
        switch_timeout=20.0,
        connect_timeout=5.0,
        step_hook=hook,
    )
    device.start()
    print("ready", flush=True)
    deadline = time.monotonic() + config.get("timeout", 30.0)
    while time.monotonic() < deadline:
        progress = device.progress
        done = progress.phase is Phase.IDLE and progress.previous is None
        if done and progress.current != "factory":
            break
        time.sleep(0.1)
    device.stop()
    progress = device.progress
    print(json.dumps({"phase": progress.phase.value, "current": progress.current}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
