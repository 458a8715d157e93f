"""Throughput and latency of the MQTT -> Pub/Sub bridge, next to the raw broker, in one run.

    python benchmarks/bridge_throughput.py [--short] [--messages 20000] [--rate 1000] [--seconds 10]

Everything is local and real: mosquitto (mutual TLS, the rendered ACL), the Pub/Sub
emulator, the bridge as its own process (``python -m iot_remote_access.bridge``).

1. raw broker: 4 devices, each a process of its own, publish QoS 1 as fast as they
   can (100 in flight each) to one MQTT subscriber on ``dt/+/telemetry``; rate = messages / time.
2. bridge: the same devices and messages, the bridge instead of the subscriber;
   rate = messages Pub/Sub confirmed (the bridge's ``published`` counter) / time.
   Both rates leave out the first 10 % (warm-up). The ratio is bridge / raw.
3. latency: the devices publish at a fixed total rate (default 1,000 msg/s); each
   payload carries its send time; p50/p99 are from device publish to a Pub/Sub
   subscriber's receipt.
4. raw broker again, so a change of the machine's load during the run shows; the
   ratio uses the mean of both raw rates.

It also prints the bridge's CPU time per message (user + system of its process, from
/proc, over the throughput phase and over the latency phase) and the load average,
since the machine may be shared. ``--short`` runs a smaller version (about a minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Publishers run in spawned processes that import this module: keep its top light
# (the CDK's constructs start a Node.js runtime; they are imported in deploy_topology).
from iot_remote_access.core.mosquitto_acl import MosquittoAcl  # noqa: E402
from tests.support.gcp_clients import Device, wait_for  # noqa: E402
from tests.support.pki import ClientCredentials, TestCa  # noqa: E402
from tests.support.processes import (  # noqa: E402
    BridgeProcess,
    MosquittoBroker,
    PubsubEmulator,
    free_port,
)

PROJECT = "bench-project"
PUBLISHERS = 4
BRIDGE = "bridge.iot-remote-access"
_events: list[Any] = []


def deploy_topology() -> None:
    from google.cloud import pubsub_v1

    from iot_remote_access.core.tree import Root
    from iot_remote_access.pubsub.deploy import deploy
    from iot_remote_access.pubsub.plan import plan
    from iot_remote_access.settings import FleetSettings
    from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack

    fleet = FleetSettings.parse(
        {
            "gcp": {
                "projectNumber": "123456789012",
                "bridge": {"serviceAccount": "iot-bridge@bench-project.iam.gserviceaccount.com"},
            }
        }
    )
    assert fleet.gcp is not None
    desired = GcpPubsubStack(Root(), "S", project=PROJECT, settings=fleet.gcp).desired_state()
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    deploy(plan(desired, publisher, subscriber), desired, publisher, subscriber)


def publish_worker(
    credentials: ClientCredentials, port: int, thing: str, count: int, tag: str, go: Any
) -> None:
    """One device in a process of its own: publish ``count`` QoS 1 messages, wait for PUBACKs."""
    device = Device(credentials, port, client_id=f"{thing}-{tag}")
    go.wait()
    mids = [
        device.client.publish(f"dt/{thing}/telemetry", f"{tag}:{seq}".encode(), qos=1).mid
        for seq in range(count)
    ]
    wait_for(lambda: all(mid in device.pubacks for mid in mids), 600, "PUBACKs")
    device.close()


def blast(ca: TestCa, port: int, total: int, tag: str) -> list[Any]:
    """Start PUBLISHERS processes that publish ``total`` messages between them, at full speed."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    workers = [
        context.Process(
            target=publish_worker,
            args=(ca.client(f"bench-{i}"), port, f"bench-{i}", total // PUBLISHERS, tag, go),
        )
        for i in range(PUBLISHERS)
    ]
    for worker in workers:
        worker.start()
    time.sleep(3)  # let them connect (spawned interpreters import paho first)
    go.set()
    _events.append(go)  # children unpickle it after start(): keep it alive
    return workers


def timed(count: Callable[[], float], total: int, timeout: float = 600) -> float:
    """Seconds from 10 % to 100 % of ``total`` according to ``count()``."""
    warm = total // 10
    wait_for(lambda: count() >= warm, timeout, "warm-up")
    start = time.monotonic()
    wait_for(lambda: count() >= total, timeout, f"{total} messages")
    return time.monotonic() - start


class RawReader:
    """Reads a subscription with plain Pull/Acknowledge calls of raw protobuf messages.

    The streaming-pull client costs a few hundred microseconds per message in Python;
    on a busy machine the benchmark's own reader then falls behind at 1,000 msg/s and
    measures itself. This one costs a few microseconds per message (upb parses whole
    responses), so the latency is the bridge's and the emulator's.
    """

    def __init__(self, subscription: str) -> None:
        from google.cloud import pubsub_v1
        from google.pubsub_v1.types import AcknowledgeRequest, PullRequest, PullResponse

        channel = pubsub_v1.SubscriberClient()._transport.grpc_channel
        self._pull_request = PullRequest.pb()
        self._ack_request = AcknowledgeRequest.pb()
        self._pull = channel.unary_unary(
            "/google.pubsub.v1.Subscriber/Pull",
            request_serializer=self._pull_request.SerializeToString,
            response_deserializer=PullResponse.pb().FromString,
        )
        self._ack = channel.unary_unary(
            "/google.pubsub.v1.Subscriber/Acknowledge",
            request_serializer=self._ack_request.SerializeToString,
            response_deserializer=lambda data: data,
        )
        self.subscription = subscription
        #: (receipt time in ns, data, receivedAt attribute)
        self.items: list[tuple[int, bytes, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request = self._pull_request(subscription=self.subscription, max_messages=1000)
        while not self._stop.is_set():
            try:
                response = self._pull(request, timeout=2)
            except Exception:  # DEADLINE_EXCEEDED when nothing came: pull again
                continue
            now = time.time_ns()
            received = response.received_messages
            self.items.extend(
                (now, r.message.data, r.message.attributes["receivedAt"]) for r in received
            )
            if received:
                ack_ids = [r.ack_id for r in received]
                self._ack(self._ack_request(subscription=self.subscription, ack_ids=ack_ids))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_rate(ca: TestCa, port: int, total: int, tag: str, workers: list[Any]) -> float:
    """Messages per second one plain MQTT subscriber receives from the publishers."""
    subscriber = Device(ca.client(BRIDGE), port, client_id=f"raw-subscriber-{tag}")
    subscriber.subscribe("dt/+/telemetry")
    workers += blast(ca, port, total, tag)
    seconds = timed(lambda: len(subscriber.received), total)
    subscriber.close()
    return 0.9 * total / seconds


def histogram(port: int) -> dict[float, float]:
    """The bridge's latency histogram: upper bound (s) -> cumulative count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = r'^bridge_telemetry_latency_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$'
    return {float(le): float(n) for le, n in re.findall(pattern, text, re.MULTILINE)}


def quantiles(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """Upper bounds of the buckets holding p50 and p99 of what was observed in between."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] or 1.0
    p50 = next(le for le, n in counts if n >= 0.5 * total)
    p99 = next(le for le, n in counts if n >= 0.99 * total)
    return p50, p99


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="8,000 messages, 3 s of latency")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.short:
        args.messages, args.seconds = 8000, 3.0
    total = args.messages - args.messages % PUBLISHERS
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    ca = TestCa(work / "pki")
    broker = MosquittoBroker(work / "broker", ca, MosquittoAcl().render())
    emulator = PubsubEmulator(work / "emulator")
    bridge: BridgeProcess | None = None
    devices: list[Device] = []
    workers: list[Any] = []
    load_before = os.getloadavg()
    try:
        broker.start()
        emulator.start()
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        deploy_topology()
        devices = [
            Device(ca.client(f"bench-{i}"), broker.port, client_id=f"bench-{i}")
            for i in range(PUBLISHERS)
        ]
        raw_first = raw_rate(ca, broker.port, total, "raw1", workers)
        bridge, http_port = start_bridge(work, ca, broker)
        assert bridge.process is not None
        pid = bridge.process.pid
        buckets = histogram(http_port)
        p50, p99, latency_cpu = latency(devices, args.rate, args.seconds, http_port, pid)
        inside = quantiles(buckets, histogram(http_port))
        # 2. throughput through the bridge
        before = metric(http_port, "bridge_telemetry_published_total")
        cpu = cpu_seconds(pid)
        workers += blast(ca, broker.port, total, "bridge")
        bridge_seconds = timed(
            lambda: metric(http_port, "bridge_telemetry_published_total") - before, total
        )
        wait_for(
            lambda: metric(http_port, "bridge_telemetry_published_total") - before >= total,
            60,
            "all published",
        )
        throughput_cpu = (cpu_seconds(pid) - cpu) / total
        bridge_rate = 0.9 * total / bridge_seconds
        raw_second = raw_rate(ca, broker.port, total, "raw2", workers)
    finally:
        for worker in workers:
            worker.join(60)
        for device in devices:
            device.close()
        if bridge is not None:
            bridge.stop()
        emulator.stop()
        broker.stop()
    report(
        args,
        total,
        (raw_first, raw_second, bridge_rate),
        (p50, p99, *inside),
        (throughput_cpu, latency_cpu),
        (load_before[0], os.getloadavg()[0]),
    )


def report(
    args: argparse.Namespace,
    total: int,
    rates: tuple[float, float, float],
    latencies: tuple[float, float, float, float],
    cpu: tuple[float, float],
    load: tuple[float, float],
) -> None:
    """Print the figures (latencies in ms, except the bridge's histogram bounds in s)."""
    raw_first, raw_second, bridge_rate = rates
    p50, p99, inside_p50, inside_p99 = latencies
    throughput_cpu, latency_cpu = cpu
    raw = (raw_first + raw_second) / 2
    print(
        f"raw broker   {raw:8.0f} msg/s (QoS 1, {total} messages, {PUBLISHERS} publishers; "
        f"{raw_first:.0f} before and {raw_second:.0f} after the bridge's runs)"
    )
    print(f"bridge       {bridge_rate:8.0f} msg/s (MQTT -> Pub/Sub emulator, confirmed)")
    print(f"ratio        {bridge_rate / raw:8.2f}")
    print(
        f"latency      p50 {p50:.1f} ms, p99 {p99:.1f} ms at {args.rate:.0f} msg/s for "
        f"{args.seconds:.0f} s (device publish -> Pub/Sub subscriber)"
    )
    print(
        f"  of which   p50 <= {inside_p50 * 1e3:.0f} ms, p99 <= {inside_p99 * 1e3:.0f} ms in the "
        "bridge (MQTT receipt -> Pub/Sub confirmed; its histogram's bucket bounds)"
    )
    print(
        f"bridge CPU   {throughput_cpu * 1e6:.0f} us/message at full speed, "
        f"{latency_cpu * 1e6:.0f} us/message at {args.rate:.0f} msg/s "
        f"(= {latency_cpu * args.rate:.2f} of a core)"
    )
    print(
        f"load average {load[0]:.2f} before, {load[1]:.2f} after "
        f"({os.cpu_count()} CPUs; the machine may be shared)"
    )


def start_bridge(work: Path, ca: TestCa, broker: MosquittoBroker) -> tuple[BridgeProcess, int]:
    """The bridge, as its own process, connected and subscribed."""
    http_port = free_port()
    creds = ca.client(BRIDGE)
    bridge = BridgeProcess(
        work / "bridge",
        {
            "BRIDGE_PROJECT": PROJECT,
            "BRIDGE_MQTT_HOST": "127.0.0.1",
            "BRIDGE_MQTT_PORT": str(broker.port),
            "BRIDGE_MQTT_CA_FILE": str(creds.ca_file),
            "BRIDGE_MQTT_CERT_FILE": str(creds.cert_file),
            "BRIDGE_MQTT_KEY_FILE": str(creds.key_file),
            "BRIDGE_MQTT_CLIENT_ID": "bridge-0",
            "BRIDGE_HTTP_HOST": "127.0.0.1",
            "BRIDGE_HTTP_PORT": str(http_port),
            "BRIDGE_LOG_LEVEL": "WARNING",
        },
    )
    bridge.start()
    wait_for(lambda: '"mqttSubscribed": true' in _readyz(http_port), 120, "bridge subscribed")
    return bridge, http_port


def latency(
    devices: list[Device], rate: float, seconds: float, http_port: int, pid: int
) -> tuple[float, float, float]:
    """(p50, p99 in ms) from device publish to a Pub/Sub subscriber, at ``rate``, and the
    bridge's CPU seconds per message meanwhile (until it has published them all)."""
    before = metric(http_port, "bridge_telemetry_published_total")
    cpu = cpu_seconds(pid)
    reader = RawReader(f"projects/{PROJECT}/subscriptions/iot-telemetry-analytics")
    count = int(rate * seconds)
    start = time.monotonic()
    for seq in range(count):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        devices[seq % PUBLISHERS].client.publish(
            f"dt/bench-{seq % PUBLISHERS}/telemetry", f"lat:{time.time_ns()}".encode(), qos=1
        )
    wait_for(
        lambda: metric(http_port, "bridge_telemetry_published_total") - before >= count,
        120,
        "latency messages published",
    )
    cpu = (cpu_seconds(pid) - cpu) / count
    wait_for(lambda: sum(d.startswith(b"lat:") for _, d, _ in reader.items) >= count, 120, "all")
    reader.stop()
    timed = [(ns, int(data[4:]), at) for ns, data, at in reader.items if data.startswith(b"lat:")]
    latencies = sorted((received - sent) / 1e6 for received, sent, _ in timed)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    # Where the time went: device -> bridge (the receivedAt attribute), bridge -> reader.
    legs = []
    for received, sent, at in timed:
        at_bridge = dt.datetime.fromisoformat(at).timestamp() * 1e3
        legs.append((at_bridge - sent / 1e6, received / 1e6 - at_bridge))
    print(
        f"latency legs (medians): device -> bridge receipt "
        f"{statistics.median(a for a, _ in legs):.0f} ms, bridge receipt -> Pub/Sub subscriber "
        f"{statistics.median(b for _, b in legs):.0f} ms"
    )
    return statistics.median(latencies), p99, cpu


def _readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())
    except OSError:
        return ""


if __name__ == "__main__":
    main()
