"""A device process for the power-loss test: ``python -m tests.support.rotation_device_process
CONFIG.json``.

It runs the real device module against the broker. With ``stop_at`` it SIGKILLs
itself right after that step boundary (the step hook), as a power cut would stop it:
no cleanup, no flush beyond what the module already made durable. Without it, it
runs until no rotation is in flight and prints the final state as one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from iot_remote_access.device.certificate_check import load_expected_cas
from iot_remote_access.device.keystore import FileKeyStore
from iot_remote_access.device.rotation import Broker, RotationDevice
from iot_remote_access.device.rotation_state import CredentialStore, Phase


def main(config_file: str) -> int:
    config = json.loads(Path(config_file).read_text())
    stop_at = config.get("stop_at")

    def hook(step: str) -> None:
        print(f"step {step}", flush=True)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGKILL)

    directory = Path(config["store"])
    device = RotationDevice(
        thing=config["thing"],
        store=CredentialStore(directory, FileKeyStore(directory / "keys")),
        broker=Broker("127.0.0.1", config["port"], server_ca_file=Path(config["server_ca"])),
        expected_cas=load_expected_cas(Path(config["expected_ca"]).read_bytes()),
        switch_timeout=config.get("switch_timeout", 20.0),
        connect_timeout=5.0,
        step_hook=hook,
    )
    device.start()
    print("ready", flush=True)
    # Run until no rotation is in flight and the pair is no longer the factory's.
    deadline = time.monotonic() + config.get("timeout", 30.0)
    while time.monotonic() < deadline:
        progress = device.progress
        done = progress.phase is Phase.IDLE and progress.previous is None
        if done and progress.current != "factory":
            break
        time.sleep(0.1)
    device.stop()  # the worker finishes its step (its hook prints) before the summary
    progress = device.progress
    print(json.dumps({"phase": progress.phase.value, "current": progress.current}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
