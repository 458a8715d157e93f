"""A paced stream of numbered QoS 1 telemetry from many real MQTT devices, and what the
bridge fault tests check against it (what was sent, what the broker acknowledged)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from tests.support.gcp_clients import Device, PulledMessage, wait_for
from tests.support.pki import TestCa


class Stream:
    """``devices`` devices publish ``per_device`` numbered QoS 1 messages each (payload
    ``dev-NN:SEQ``), paced to ``rate`` messages per second overall."""

    def __init__(
        self, ca: TestCa, port: int, *, devices: int, per_device: int, rate: float
    ) -> None:
        self.per_device = per_device
        self.rate = rate
        self.devices = {
            f"dev-{i:02d}": Device(
                ca.client(f"dev-{i:02d}"),
                port,
                client_id=f"dev-{i:02d}",
                clean_start=False,
                session_expiry=600,
            )
            for i in range(devices)
        }
        self.sent = 0
        self._lock = threading.Lock()
        self.mids: dict[str, list[int]] = {thing: [] for thing in self.devices}
        self._threads = [
            threading.Thread(target=self._run, args=(thing, device), daemon=True)
            for thing, device in self.devices.items()
        ]

    @property
    def expected(self) -> set[str]:
        return {f"{thing}:{seq}" for thing in self.devices for seq in range(self.per_device)}

    def start(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, thing: str, device: Device) -> None:
        interval = len(self.devices) / self.rate
        started = time.monotonic()
        seen = device.connects
        for seq in range(self.per_device):
            delay = started + seq * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not device.connected.is_set() or device.connects != seen:
                # paho re-sends unacknowledged messages after a reconnect, but a publish
                # from another thread can overtake them: wait, so the broker gets this
                # device's messages in order (the order the bridge must keep).
                device.connected.wait(60)
                wait_for(
                    lambda: all(device.pubacks.get(m) == "Success" for m in self.mids[thing]),
                    60,
                    f"{thing}'s earlier messages acknowledged",
                )
                seen = device.connects
            mid = device.publish(f"dt/{thing}/telemetry", f"{thing}:{seq}".encode(), wait=False)
            self.mids[thing].append(mid)
            with self._lock:
                self.sent += 1

    def wait_sent(self, count: int, timeout: float = 120) -> None:
        wait_for(lambda: self.sent >= count, timeout, f"{count} sent")

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def unacknowledged(self) -> int:
        return sum(
            1
            for thing, device in self.devices.items()
            for mid in self.mids[thing]
            if device.pubacks.get(mid) != "Success"
        )

    def acknowledged(self) -> set[str]:
        """The payloads the broker has PUBACKed: from then on they are the bridge's to keep."""
        return {
            f"{thing}:{seq}"
            for thing, device in self.devices.items()
            for seq, mid in enumerate(list(self.mids[thing]))
            if device.pubacks.get(mid) == "Success"
        }

    def close(self) -> None:
        for device in self.devices.values():
            device.close()


def ready(port: int) -> bool:
    """The bridge's /readyz says it is subscribed (whatever the rest of its status)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(json.loads(response.read())["mqttSubscribed"])
    except urllib.error.HTTPError as error:
        return bool(json.loads(error.read())["mqttSubscribed"])
    except (OSError, ValueError):
        return False


def readyz(port: int) -> tuple[int, dict[str, object]]:
    """The status code and body of the bridge's /readyz (0 and {} when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (OSError, ValueError):
        return 0, {}


def loss_report(expected: set[str], got: list[PulledMessage]) -> tuple[int, int, str]:
    """(lost, duplicates, a one-line summary) of ``got`` against ``expected`` payloads."""
    counts = Counter(m.data.decode() for m in got)
    lost = len(expected - set(counts))
    duplicates = sum(n - 1 for n in counts.values())
    summary = f"sent={len(expected)} received={len(got)} lost={lost} duplicates={duplicates}"
    return lost, duplicates, summary


def first_copies_in_order(got: list[PulledMessage]) -> dict[str, list[int]]:
    """Per device, the sequence numbers around the first one whose first copy came too early."""
    first_seen: dict[str, list[int]] = {}
    for payload in dict.fromkeys(m.data.decode() for m in got):
        thing, seq = payload.split(":")
        first_seen.setdefault(thing, []).append(int(seq))
    return {
        thing: seqs[max(0, i - 3) : i + 4]
        for thing, seqs in first_seen.items()
        for i in [next((j for j in range(1, len(seqs)) if seqs[j] < seqs[j - 1]), 0)]
        if i
    }
