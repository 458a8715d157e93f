"""Start and stop the real services the GCP tests use: mosquitto, the Pub/Sub and Firestore
emulators.

Each runs in a process group of its own, so stopping it also ends the children
that a wrapper starts (``gcloud`` runs the emulator in a child Java process);
processes are only ever ended by their own id.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.pki import TestCa

MOSQUITTO = "/usr/sbin/mosquitto"
GCLOUD = "gcloud"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    *,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    what: str = "service",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {process.returncode} before listening:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s:\n{tail}")


def stop_group(
    process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> None:
    """End ``process`` and its process group (started with start_new_session)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class MosquittoBroker:
    """mosquitto on a free loopback port: mutual TLS, the given ACL, persistence on.

    Persistence and a graceful stop (SIGTERM) let a restart keep the bridge's
    session and its queued messages, as a production broker with storage does.
    """

    def __init__(self, directory: Path, ca: TestCa, acl: str, *, port: int | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.ca = ca
        self.server = ca.server()
        self.acl_file = directory / "acl"
        self.acl_file.write_text(acl)
        self.log_file = directory / "mosquitto.log"
        self.config_file = directory / "mosquitto.conf"
        (directory / "data").mkdir(exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    # mosquitto drops to user 'mosquitto' when started as root; staying the
                    # current user keeps the test's files readable.
                    f"user {pwd.getpwuid(os.getuid()).pw_name}",
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {ca.ca_file}",
                    f"certfile {self.server.cert_file}",
                    f"keyfile {self.server.key_file}",
                    "tls_version tlsv1.2",
                    "require_certificate true",
                    "use_identity_as_username true",
                    f"acl_file {self.acl_file}",
                    "persistence true",
                    f"persistence_location {directory / 'data'}/",
                    "max_queued_messages 200000",
                    "max_inflight_messages 0",
                    f"log_dest file {self.log_file}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(
            self.port, timeout=10, process=self.process, log=self.log_file, what="mosquitto"
        )

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_group(self.process, sig=sig)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


class PubsubEmulator:
    """The Pub/Sub emulator of the Google Cloud CLI on a free loopback port.

    It keeps everything in memory: a restart starts empty.
    """

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.log_file = directory / "emulator.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if shutil.which(GCLOUD) is None:
            raise RuntimeError(
                "gcloud not found: the GCP tests need the Google Cloud CLI with its "
                "pubsub-emulator component and Java 11+ (no test is skipped without them)"
            )
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    GCLOUD,
                    "beta",
                    "emulators",
                    "pubsub",
                    "start",
                    f"--host-port={self.host}",
                    f"--data-dir={self.directory}",
                    "--quiet",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(
            self.port,
            timeout=timeout,
            process=self.process,
            log=self.log_file,
            what="the Pub/Sub emulator",
        )

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_group(self.process, sig=sig)
            self.process = None

    def restart(self) -> None:
        self.stop(sig=signal.SIGKILL)
        self.start()


class FirestoreEmulator(PubsubEmulator):
    """The Firestore emulator of the Google Cloud CLI (Java) on a free loopback port.

    In memory like the Pub/Sub emulator: a restart starts empty. Clients find it
    through ``FIRESTORE_EMULATOR_HOST``; each test uses a project of its own.
    """

    def start(self, *, timeout: float = 90) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if shutil.which(GCLOUD) is None:
            raise RuntimeError(
                "gcloud not found: the rotation tests need the Google Cloud CLI with its "
                "cloud-firestore-emulator component and Java (no test is skipped without them)"
            )
        command = [GCLOUD, "beta", "emulators", "firestore", "start"]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, f"--host-port={self.host}", "--quiet"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(
            self.port,
            timeout=timeout,
            process=self.process,
            log=self.log_file,
            what="the Firestore emulator",
        )


class BridgeProcess:
    """The bridge as its own process (``python -m iot_remote_access.bridge``), as in a container."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.log_file = directory / "bridge.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        import sys

        self.starts += 1
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "iot_remote_access.bridge"],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        stop_group(self.process, sig=sig, timeout=timeout)
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
