"""The bridge as it is deployed: rendered by ``gcp manifests``, started exactly so, used end to end.

From the one example settings file, with the real console script:
``iot-remote-access gcp manifests`` renders the workload and ``gcp deploy`` creates the
Pub/Sub topology on the emulator. The bridge container's command, arguments and
environment are taken from the rendered workload (over its image's ENTRYPOINT and ENV,
read from the Dockerfile) and run here (tests/support/local_pod.py says what is mapped:
mounted files, the downward API, Service and container ports); mosquitto runs with TLS
and the ACL rendered from the same settings. The test then probes the container as the
kubelet would (startup, then liveness and readiness on their periods), sends telemetry
and commands end to end, and ends the pod as Kubernetes does (SIGTERM, then SIGKILL after
the grace period).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import pubsub_v1

from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.settings import FleetSettings
from iot_remote_access.settings.gcp import GcpSettings
from tests.support.gcp_clients import Device, PubsubReader, wait_for
from tests.support.local_pod import Image, Kubelet, LocalPod
from tests.support.paths import REPO_ROOT
from tests.support.pki import TestCa
from tests.support.processes import MosquittoBroker, PubsubEmulator

SETTINGS_FILE = REPO_ROOT / "examples" / "gcp-settings.yaml"
DOCKERFILE = REPO_ROOT / "iot_remote_access" / "bridge" / "Dockerfile"
#: The console script installed with the package, beside this interpreter.
CLI = Path(sys.executable).parent / "iot-remote-access"
VENV = Path(sys.executable).parent.parent
PER_THING = 40


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    values: dict[str, Any]

    def bridge_workload(self) -> dict[str, Any]:
        """The workload whose pod runs the bridge container (whatever its kind)."""
        (workload,) = [
            obj
            for obj in self.objects
            if obj["kind"] in ("StatefulSet", "Deployment")
            and any(c["name"] == "bridge" for c in obj["spec"]["template"]["spec"]["containers"])
        ]
        return workload


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    out = tmp_path_factory.mktemp("rendered")
    result = cli("gcp", "manifests", "--settings", str(SETTINGS_FILE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    objects = [
        doc
        for path in sorted((out / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    return Rendered(objects, yaml.safe_load((out / "hivemq-values.yaml").read_text()))


@pytest.fixture
def settings() -> FleetSettings:
    return FleetSettings.from_file(SETTINGS_FILE)


@pytest.fixture
def gcp(settings: FleetSettings) -> GcpSettings:
    assert settings.gcp is not None
    return settings.gcp


@pytest.fixture
def deployed(emulator: PubsubEmulator) -> None:
    """The topology from the same file, by the real ``gcp deploy`` (its project included)."""
    result = cli(
        "gcp",
        "deploy",
        "--settings",
        str(SETTINGS_FILE),
        env={"PUBSUB_EMULATOR_HOST": emulator.host},
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def broker(tmp_path: Path, ca: TestCa, settings: FleetSettings) -> Iterator[MosquittoBroker]:
    """mosquitto, mutual TLS, with the ACL rendered from the same settings."""
    assert settings.gcp is not None and settings.hivemq is not None
    acl = MosquittoAcl(
        DeviceAccess(topics=settings.topic_model(), rotation=settings.hivemq.rotation_topics),
        bridge_identity=settings.gcp.bridge.identity,
        share_group=settings.gcp.bridge.share_group,
    )
    server = MosquittoBroker(tmp_path / "broker", ca, acl.render())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def things(ca: TestCa, broker: MosquittoBroker) -> Iterator[dict[str, Device]]:
    token = os.urandom(3).hex()  # the emulator lives for the session: keep this run's apart
    made = {}
    try:
        for n in range(3):
            thing = f"deployed-{token}-{n}"
            made[thing] = Device(ca.client(thing), broker.port, client_id=thing)
        yield made
    finally:
        for device in made.values():
            device.close()


def bridge_pod(
    rendered: Rendered,
    gcp: GcpSettings,
    ca: TestCa,
    broker: MosquittoBroker,
    directory: Path,
    ordinal: int,
) -> LocalPod:
    """Replica ``ordinal`` of the rendered bridge; its Secret holds a certificate for
    ``gcp.bridge.identity`` (as the platform team creates it), the broker Service it names
    leads to mosquitto."""
    workload = rendered.bridge_workload()
    pod_spec = workload["spec"]["template"]["spec"]
    (secret_name,) = [v["secret"]["secretName"] for v in pod_spec["volumes"] if "secret" in v]
    creds = ca.client(gcp.bridge.identity)
    secret = {
        "tls.crt": creds.cert_file.read_bytes(),
        "tls.key": creds.key_file.read_bytes(),
        "ca.crt": ca.ca_file.read_bytes(),
    }
    # The HiveMQ Services the chart creates from the rendered values: the bridge's goes
    # to the broker here.
    services = {
        (service["name"], service["port"]): ("127.0.0.1", broker.port)
        for service in rendered.values["services"]
        if service.get("serviceType") == "ClusterIP"
    }
    image = Image.from_dockerfile(DOCKERFILE, prefix_map={"/opt/bridge": str(VENV)})
    return LocalPod(
        workload,
        "bridge",
        image,
        directory,
        secrets={secret_name: secret},
        services=services,
        pod_name=""
        if workload["kind"] != "StatefulSet"
        else f"{workload['metadata']['name']}-{ordinal}",
    )


def scrape(pod: LocalPod, metric: str) -> float:
    """One counter from the pod's metrics endpoint, at the port its Service names."""
    import urllib.request

    port = pod.local_port("http")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = re.findall(rf"^{re.escape(metric)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(values[0]) if values else 0.0


def send_telemetry(
    things: dict[str, Device], template: str, reader: PubsubReader
) -> dict[str, list[int]]:
    mids = []
    for n in range(PER_THING):
        for thing, device in things.items():
            topic = template.replace("{thing}", thing)
            mids.append((device, device.publish(topic, b"%d" % n, wait=False)))
    for device, mid in mids:
        assert device.puback(mid) == "Success"
    total = PER_THING * len(things)

    def ours() -> list[Any]:
        return [m for m in reader.snapshot() if m.attributes.get("thing") in things]

    wait_for(lambda: len(ours()) >= total, 60, f"{total} telemetry messages on Pub/Sub")
    sequences: dict[str, list[int]] = defaultdict(list)
    for message in ours():
        assert message.ordering_key == message.attributes["thing"]
        sequences[message.attributes["thing"]].append(int(message.data))
    return dict(sequences)


def send_commands(things: dict[str, Device], topic_path: str, template: str) -> None:
    for thing, device in things.items():
        assert device.subscribe(template.replace("{thing}", thing)) == ["Granted QoS 1"]
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    futures = [
        publisher.publish(topic_path, f"{thing}:{n}".encode(), ordering_key=thing, thing=thing)
        for n in range(PER_THING)
        for thing in things
    ]
    for future in futures:
        future.result(timeout=30)
    for thing, device in things.items():
        wait_for(lambda d=device: len(d.messages()) >= PER_THING, 60, f"commands to {thing}")
        assert device.messages() == [
            (template.replace("{thing}", thing), f"{thing}:{n}".encode()) for n in range(PER_THING)
        ]


def test_the_bridge_runs_as_the_manifests_describe_it(
    rendered: Rendered,
    settings: FleetSettings,
    gcp: GcpSettings,
    deployed: None,
    emulator: PubsubEmulator,
    ca: TestCa,
    broker: MosquittoBroker,
    things: dict[str, Device],
    tmp_path: Path,
) -> None:
    workload = rendered.bridge_workload()
    pods = [
        bridge_pod(rendered, gcp, ca, broker, tmp_path / f"pod-{n}", n)
        for n in range(workload["spec"].get("replicas", 1))
    ]
    grace = pods[0].pod_spec.get("terminationGracePeriodSeconds", 30)
    kubelets = [Kubelet(pod) for pod in pods]
    exit_codes: list[int | None] = []
    try:
        for pod in pods:
            # Google's endpoint is the emulator; HOME is the container's, not this user's.
            pod.start({"PUBSUB_EMULATOR_HOST": emulator.host, "HOME": str(tmp_path)})
        for kubelet in kubelets:
            kubelet.wait_started()
            kubelet.start()
        for kubelet in kubelets:
            period = kubelet.pod.container["readinessProbe"]["periodSeconds"]
            assert kubelet.ready.wait(period * 6), kubelet.records
        exchange(settings, gcp, things)
        for kubelet in kubelets:
            assert kubelet.ready.is_set(), kubelet.records
            assert not kubelet.would_restart(), kubelet.records
            assert kubelet.records["liveness"].successes >= 1
        # Each replica took its share of the shared subscription.
        for pod in pods:
            assert scrape(pod, "bridge_telemetry_published_total") > 0, pod.pod_name
    finally:
        for kubelet in kubelets:
            kubelet.stop()
        # Ended as Kubernetes ends a pod: SIGTERM, SIGKILL after the grace period.
        exit_codes = [pod.stop(timeout=grace) for pod in pods]
    assert exit_codes == [0] * len(pods), [pod.log()[-3000:] for pod in pods]
    # The broker saw each pod's name as client id and the certificate's CN as identity.
    for pod in pods:
        assert re.search(
            rf" as {re.escape(pod.pod_name)} \(p5, .*u'{re.escape(gcp.bridge.identity)}'\)",
            broker.log(),
        ), broker.log()[-3000:]
    # One stable client id per replica: a StatefulSet of at least two.
    assert workload["kind"] == "StatefulSet"
    assert [pod.pod_name for pod in pods] == ["pubsub-bridge-0", "pubsub-bridge-1"]


def exchange(settings: FleetSettings, gcp: GcpSettings, things: dict[str, Device]) -> None:
    """Telemetry from every thing to Pub/Sub, in order per thing; commands back to each."""
    topics = settings.topic_model()
    reader = PubsubReader(
        f"projects/{gcp.project_id}/subscriptions/{gcp.pubsub.analytics_subscription}"
    ).start()
    try:
        sequences = send_telemetry(things, topics.telemetry, reader)
    finally:
        reader.stop()
    # Nothing lost or doubled. Order per thing holds only within one replica: the broker
    # hands a shared subscription's messages to the replicas one by one, not by thing
    # (see docs/bridge-deploy.md, "Ordering").
    assert {thing: sorted(seq) for thing, seq in sequences.items()} == {
        thing: list(range(PER_THING)) for thing in things
    }
    send_commands(
        things, f"projects/{gcp.project_id}/topics/{gcp.pubsub.commands_topic}", topics.commands
    )
