"""Run a rendered pod's container on this machine, and probe it as a kubelet would.

What a cluster would provide is provided here, and nothing else is changed:

- the image's own ``ENTRYPOINT``/``CMD``/``ENV`` (read from its Dockerfile) under the
  pod's ``command``/``args``/``env``, with Kubernetes' rules for which wins;
- each volume mount is a local directory: a Secret volume gets the files the test
  supplies (with the volume's ``defaultMode``), an ``emptyDir`` is empty;
- ``valueFrom.fieldRef`` values come from the pod's own metadata (downward API);
- the pod's own network namespace: the container port and the Services it names are
  mapped to local ports (cluster DNS and kube-proxy map them in a cluster).

Not reproduced: ``runAsUser`` and the read-only root filesystem (the interpreter of
the test's virtual environment may not be readable by another user); the rendered
security context is checked in tests/gke instead.

Anything else the container needs (a volume type or field reference not handled here)
fails the test, so nothing is silently approximated.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Image:
    """What a container image contributes: entry point, default arguments, environment."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]

    @classmethod
    def from_dockerfile(cls, path: Path, *, prefix_map: dict[str, str]) -> Image:
        """The final stage's ENTRYPOINT, CMD and ENV; ``prefix_map`` relocates paths in ENV
        (``/opt/bridge`` -> the local virtual environment)."""
        text = path.read_text().replace("\\\n", " ")
        final = text.split("\nFROM ")[-1]
        entrypoint: tuple[str, ...] = ()
        cmd: tuple[str, ...] = ()
        env: dict[str, str] = {}
        for line in final.splitlines():
            instruction, _, rest = line.strip().partition(" ")
            if instruction == "ENTRYPOINT":
                entrypoint = tuple(yaml.safe_load(rest))
            elif instruction == "CMD":
                cmd = tuple(yaml.safe_load(rest))
            elif instruction == "ENV":
                for pair in shlex.split(rest):
                    name, _, value = pair.partition("=")
                    env[name] = _expand(value, env, prefix_map)
        return cls(entrypoint, cmd, env)


def _expand(value: str, env: dict[str, str], prefix_map: dict[str, str]) -> str:
    for old, new in prefix_map.items():
        value = value.replace(old, new)
    for name in ("PATH",):
        value = value.replace(f"${name}", env.get(name, os.environ.get(name, "")))
    return value


@dataclass
class LocalPod:
    """One replica of a rendered workload, as a local process.

    :param workload: the rendered StatefulSet (or Deployment).
    :param container_name: which container of the pod to run.
    :param secrets: Secret name -> {key: file content}.
    :param services: "host:port" a container env names -> the local "host:port" behind it.
    """

    workload: dict[str, Any]
    container_name: str
    image: Image
    directory: Path
    secrets: dict[str, dict[str, bytes]]
    services: dict[tuple[str, int], tuple[str, int]]
    pod_name: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        spec = self.workload["spec"]["template"]["spec"]
        self.pod_spec: dict[str, Any] = spec
        self.container: dict[str, Any] = next(
            c for c in spec["containers"] if c["name"] == self.container_name
        )
        if not self.pod_name:
            # A StatefulSet names its pods <name>-<ordinal>; other workloads add a hash.
            suffix = "-0" if self.workload["kind"] == "StatefulSet" else "-5d8f7c9b4-x2x7q"
            self.pod_name = self.workload["metadata"]["name"] + suffix
        self.log_file = self.directory / "container.log"

    # -- what the kubelet sets up --------------------------------------------------------

    def mounts(self) -> dict[str, Path]:
        """Mount path -> the local directory standing for it."""
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes", [])}
        mapped = {}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            local = self.directory / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                files = self.secrets[volume["secret"]["secretName"]]
                mode = volume["secret"].get("defaultMode", 0o644)
                for key, content in files.items():
                    (local / key).write_bytes(content)
                    (local / key).chmod(mode)
            elif "emptyDir" not in volume:
                raise AssertionError(f"volume type not handled by LocalPod: {volume}")
            mapped[mount["mountPath"]] = local
        return mapped

    def local_port(self, name_or_number: str | int) -> int:
        """The local port of a container port (by name, as probes name it, or number)."""
        for port in self.container.get("ports", []):
            if name_or_number in (port.get("name"), port["containerPort"]):
                return self.ports[port["containerPort"]]
        raise AssertionError(f"no container port {name_or_number!r}")

    def environment(self) -> dict[str, str]:
        """The container's environment: the image's, then the pod's, mapped as described."""
        from tests.support.processes import free_port

        mounts = self.mounts()
        for port in self.container.get("ports", []):
            self.ports.setdefault(port["containerPort"], free_port())
        env = dict(self.image.env)
        for item in self.container.get("env", []):
            if "value" in item:
                env[item["name"]] = self._map_path(item["value"], mounts)
            else:
                env[item["name"]] = self._field(item["valueFrom"])
        return self._map_network(env)

    def _map_path(self, value: str, mounts: dict[str, Path]) -> str:
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path) :]
        return value

    def _field(self, source: dict[str, Any]) -> str:
        path = source.get("fieldRef", {}).get("fieldPath")
        metadata = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.workload["metadata"]["namespace"],
        }
        if path not in metadata:
            raise AssertionError(f"env source not handled by LocalPod: {source}")
        return metadata[path]

    def _map_network(self, env: dict[str, str]) -> dict[str, str]:
        """A Service named by a HOST/PORT pair of variables -> the local address behind it;
        a variable holding a container port -> that port's local number."""
        mapped = dict(env)
        for name, value in env.items():
            if not name.endswith("_HOST"):
                continue
            port_name = name.removesuffix("_HOST") + "_PORT"
            key = (value, int(env.get(port_name, "0")))
            if key in self.services:
                mapped[name], local_port = self.services[key]
                mapped[port_name] = str(local_port)
        for name, value in env.items():
            if name.endswith("_PORT") and value.isdigit() and int(value) in self.ports:
                mapped[name] = str(self.ports[int(value)])
        return mapped

    # -- run -------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        """Kubernetes' rule: ``command`` replaces ENTRYPOINT (and drops CMD), ``args``
        replaces CMD."""
        command = self.container.get("command")
        args = self.container.get("args")
        entry = list(command) if command is not None else list(self.image.entrypoint)
        rest = args if args is not None else ([] if command is not None else list(self.image.cmd))
        return entry + list(rest)

    def start(self, extra_env: dict[str, str]) -> None:
        env = {**self.environment(), **extra_env}
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                env=env,
                cwd="/",
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, *, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` (the termination grace period)."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(10)
            return None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@dataclass
class ProbeRecord:
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    worst_streak: int = 0
    last: str = ""


class Kubelet:
    """Probes one container the way the kubelet does: the startup probe until it succeeds
    (or fails ``failureThreshold`` times in a row), then liveness and readiness on their
    own periods; HTTP 200-399 within ``timeoutSeconds`` is a success."""

    def __init__(self, pod: LocalPod) -> None:
        self.pod = pod
        self.records = {kind: ProbeRecord() for kind in ("liveness", "readiness")}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready = threading.Event()

    def probe(self, kind: str) -> tuple[bool, str]:
        spec = self.pod.container[f"{kind}Probe"]
        action = spec["httpGet"]
        url = f"http://127.0.0.1:{self.pod.local_port(action['port'])}{action['path']}"
        try:
            with urllib.request.urlopen(url, timeout=spec.get("timeoutSeconds", 1)) as response:
                return 200 <= response.status < 400, f"{response.status}"
        except urllib.error.HTTPError as error:
            return 200 <= error.code < 400, f"{error.code} {error.read()[:200]!r}"
        except OSError as error:
            return False, f"{type(error).__name__}: {error}"

    def wait_started(self) -> float:
        """Run the startup probe; return the seconds it took; fail as the kubelet would."""
        spec = self.pod.container["startupProbe"]
        period, threshold = spec.get("periodSeconds", 10), spec.get("failureThreshold", 3)
        started = time.monotonic()
        time.sleep(spec.get("initialDelaySeconds", 0))
        failures, last = 0, ""
        while failures < threshold:
            ok, last = self.probe("startup")
            if ok:
                return time.monotonic() - started
            failures += 1
            assert self.pod.process is not None
            if self.pod.process.poll() is not None:
                raise AssertionError(
                    f"the container exited with {self.pod.process.returncode} before its startup "
                    f"probe succeeded; its log:\n{self.pod.log()[-3000:]}"
                )
            time.sleep(period)
        raise AssertionError(
            f"startup probe failed {threshold} times ({last}): the kubelet would restart it; "
            f"log:\n{self.pod.log()[-3000:]}"
        )

    def start(self) -> None:
        for kind in self.records:
            thread = threading.Thread(target=self._loop, args=(kind,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, kind: str) -> None:
        spec = self.pod.container[f"{kind}Probe"]
        record = self.records[kind]
        while not self._stop.is_set():
            ok, record.last = self.probe(kind)
            if ok:
                record.successes += 1
                record.consecutive_failures = 0
                if kind == "readiness":
                    self.ready.set()
            else:
                record.failures += 1
                record.consecutive_failures += 1
                record.worst_streak = max(record.worst_streak, record.consecutive_failures)
                if kind == "readiness" and record.consecutive_failures >= spec.get(
                    "failureThreshold", 3
                ):
                    self.ready.clear()
            self._stop.wait(spec.get("periodSeconds", 10))

    def would_restart(self) -> bool:
        threshold = self.pod.container["livenessProbe"].get("failureThreshold", 3)
        return self.records["liveness"].worst_streak >= threshold

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
