"""Device Streams alert events reach the access ledger on Azure, the way they travel when deployed.

Path: the stream alert's action group POSTs each fired/resolved alert (common alert
schema, ``tests/support/azure_alert_events``) to its webhook -> ``iot-remote-access
evidence record azure-alerts`` (our console script, a subprocess serving HTTP, from a
settings file) -> the chain and its anchors in the anchor container ->
``evidence export-objects`` -> ``evidence verify``.
STAND-IN: ``tests.support.azure_storage_standin.BlobStandIn`` answers the Blob service
(azure-storage-blob is the real client; no Azure emulator is used), its container
locked as ``ImmutableAnchorContainer`` locks it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.core.ledger import parse_record
from tests.support.azure_alert_events import HUB, RULE, stream_alert
from tests.support.azure_storage_standin import BlobStandIn
from tests.support.no_node import CONSOLE_SCRIPT

ACCOUNT, CONTAINER = "fleetanchors", "ledger-anchors"
TOKEN = "s3cr3t-webhook-token-0123456789"


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def served(
    tmp_path: Path,
) -> Iterator[tuple[BlobStandIn, str, subprocess.Popen[str], dict[str, str]]]:
    with BlobStandIn() as blobs:
        blobs.locked.add((ACCOUNT, CONTAINER))
        settings = tmp_path / "settings.json"
        ledger = {"azure": {"storageAccount": ACCOUNT, "container": CONTAINER}}
        settings.write_text(json.dumps({"iot-remote-access": {"ledger": ledger}}))
        env = {**os.environ, "IOT_REMOTE_ACCESS_WEBHOOK_TOKEN": TOKEN}
        url = blobs.container_url(ACCOUNT, CONTAINER)
        process = subprocess.Popen(  # our own console script, as the container runs it
            [str(CONSOLE_SCRIPT), "evidence", "record", "azure-alerts", "--settings",
             str(settings), "--listen", "127.0.0.1:0", "--container-url", url],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            line = ""
            while not line.startswith("serving on "):
                line = process.stderr.readline()
                assert line, "the writer stopped before serving"
            yield blobs, f"http://{line.split()[-1]}/alerts", process, env
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def test_alert_events_are_chained_anchored_verified_and_a_deleted_record_is_caught(
    served: tuple[BlobStandIn, str, subprocess.Popen[str], dict[str, str]], tmp_path: Path
) -> None:
    blobs, url, process, env = served
    webhook = f"{url}?token={TOKEN}"
    fired = json.dumps(stream_alert("sensor-7", condition="Fired", streams=5)).encode()
    assert _post(webhook, fired) == (200, {"recorded": True, "seq": 0})
    assert _post(webhook, fired) == (200, {"recorded": True, "seq": 0, "duplicate": True})
    resolved = stream_alert("sensor-7", condition="Resolved", streams=5)
    assert _post(webhook, json.dumps(resolved).encode()) == (200, {"recorded": True, "seq": 1})
    other = stream_alert("sensor-9", condition="Fired", streams=12, alert="e5f6")
    assert _post(webhook, json.dumps(other).encode()) == (200, {"recorded": True, "seq": 2})

    # Requests that are not the action group's: refused, naming what is wrong, not recorded.
    assert _post(f"{url}?token=wrong", fired)[0] == 401
    assert _post(webhook, b'{"schemaId": "Microsoft.Insights/activityLogs"}') == (
        400,
        {"field": "schemaId", "message": "'Microsoft.Insights/activityLogs'; allowed: "
         "'azureMonitorCommonAlertSchema'"},
    )  # fmt: skip
    unknown = stream_alert("sensor-7", condition="Flapping", streams=5)
    status, answer = _post(webhook, json.dumps(unknown).encode())
    assert (status, answer["field"]) == (400, "data.essentials.monitorCondition")
    assert _post(webhook, b"[" * 70_000)[0] == 413

    process.send_signal(signal.SIGTERM)  # the container stops: one last anchor
    assert process.wait(timeout=60) == 0
    logs = process.stderr.read() if process.stderr else ""
    assert TOKEN not in logs

    container = blobs.container_url(ACCOUNT, CONTAINER)
    export = [str(CONSOLE_SCRIPT), "evidence", "export-objects", "--azure-container-url", container]
    done = subprocess.run([*export, "--out", str(tmp_path / "x1")], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "x1" / "chain.jsonl").read_bytes().splitlines()
    records = [dict(parse_record(line).data) for line in lines]
    assert [(r["decision"], r["device"], r["streams"]) for r in records] == [
        ("fired", "sensor-7", 5),
        ("resolved", "sensor-7", 5),
        ("fired", "sensor-9", 12),
    ]
    assert {(r["event"], r["hub"], r["alertRule"]) for r in records} == {
        ("azure.stream.alert", HUB, RULE)
    }
    verify = [str(CONSOLE_SCRIPT), "evidence", "verify"]
    held = subprocess.run([*verify, str(tmp_path / "x1" / "chain.jsonl"), "--anchors",
                           str(tmp_path / "x1" / "anchors.jsonl")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert (held.returncode, held.stdout.strip()) == (
        0,
        "holds: 3 record(s), seq 0..2, 1 anchor(s) checked",
    )

    # Someone with storage-level access removes the resolved alert.
    del blobs.blobs[(ACCOUNT, CONTAINER, "records/access/000000/000000000001.json")]
    subprocess.run([*export, "--out", str(tmp_path / "x2")], env=env, check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    broken = subprocess.run([*verify, str(tmp_path / "x2" / "chain.jsonl"), "--anchors",
                             str(tmp_path / "x2" / "anchors.jsonl")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: chain broken at record 1: record(s) 1 missing")


class _FailingOnce:
    """The Blob container (``AzureBlobAnchors`` over the stand-in) whose first write fails,
    as a throttled or unreachable storage account does."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.failures = sink, 1

    def put(self, key: str, body: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage unreachable")
        self.sink.put(key, body)

    def keys(self, prefix: str) -> Iterator[str]:
        return self.sink.keys(prefix)  # type: ignore[no-any-return]

    def get(self, key: str) -> bytes:
        return self.sink.get(key)  # type: ignore[no-any-return]


def test_an_alert_the_store_cannot_take_is_503_and_recorded_when_the_action_group_retries() -> None:
    from datetime import timedelta

    from azure.storage.blob import ContainerClient

    from iot_remote_access.lambdas.anchor_sinks.azure_alerts import AlertWriter
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
    from iot_remote_access.lambdas.anchor_sinks.sinks import AzureBlobAnchors

    with BlobStandIn() as blobs:
        container = ContainerClient.from_container_url(blobs.container_url(ACCOUNT, CONTAINER))
        chain = ObjectChain(_FailingOnce(AzureBlobAnchors(container)))
        writer = AlertWriter(chain, TOKEN, anchor_every=timedelta(hours=1))
        body = json.dumps(stream_alert("sensor-7", condition="Fired", streams=4)).encode()
        path = f"/alerts?token={TOKEN}"
        assert writer.handle(path, body) == (
            503,
            {"field": "ledger", "message": "could not be written; retry"},
        )
        assert writer.handle(path, body) == (200, {"recorded": True, "seq": 0})
        assert list(blobs.blobs) == [
            (ACCOUNT, CONTAINER, "records/access/000000/000000000000.json")
        ]


def test_an_alert_whose_texts_would_spell_a_record_over_16_kib_is_recorded_cut_short() -> None:
    from datetime import timedelta

    from azure.storage.blob import ContainerClient

    from iot_remote_access.lambdas.anchor_sinks.azure_alerts import AlertWriter
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
    from iot_remote_access.lambdas.anchor_sinks.sinks import AzureBlobAnchors

    noise = "\x01" * 600  # 6 bytes each in canonical JSON
    alert = stream_alert(noise, condition="Fired", streams=4, alert=noise)
    essentials = alert["data"]["essentials"]
    essentials.update(alertRule=noise, description=noise, severity=noise, firedDateTime=noise)
    essentials["alertTargetIDs"] = [noise]
    with BlobStandIn() as blobs:
        container = ContainerClient.from_container_url(blobs.container_url(ACCOUNT, CONTAINER))
        chain = ObjectChain(AzureBlobAnchors(container))
        writer = AlertWriter(chain, TOKEN, anchor_every=timedelta(hours=1))
        body = json.dumps(alert).encode()
        assert len(body) < 64 * 1024
        assert writer.handle(f"/alerts?token={TOKEN}", body) == (200, {"recorded": True, "seq": 0})
        (line,) = chain.lines()
        record = parse_record(line).data
        assert record["truncated"] is True and record["alertRule"] == "\x01" * 100
        assert (record["event"], record["decision"], record["streams"]) == (
            "azure.stream.alert",
            "fired",
            4,
        )
