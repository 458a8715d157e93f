"""The ledger's chain in write-once object storage (Google Cloud and Azure): races, blocks,
a store that is down, and the writers' command-line contract.

Real parts: google-cloud-storage, the Pub/Sub emulator, our console entry point.
STAND-IN: ``tests.support.gcs_standin.GcsStandIn`` answers the Cloud Storage JSON API
(no Cloud Storage emulator ships with gcloud).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

from iot_remote_access.core.ledger import parse_record
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.anchor_sinks import object_chain
from iot_remote_access.lambdas.anchor_sinks.gcp_sessions import SessionWriter
from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
from iot_remote_access.lambdas.anchor_sinks.sinks import GcsAnchors
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, deploy
from tests.support import teleport_events as te
from tests.support.cli_runner import run_cli
from tests.support.gcs_standin import GcsStandIn
from tests.support.processes import PubsubEmulator

BUCKET = "fleet-ledger-anchors"
PROJECT = "fleet-evidence"


@pytest.fixture
def gcs() -> Iterator[tuple[GcsStandIn, Any]]:
    with GcsStandIn() as standin:
        client = storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": standin.endpoint},
        )
        yield standin, client


def _chain(client: Any) -> ObjectChain:
    return ObjectChain(GcsAnchors(client.bucket(BUCKET)), sleep=lambda _: None)


def _event(number: int) -> dict[str, Any]:
    return {"event": "gcp.proxy.session", "decision": "opened", "sessionId": f"s-{number}"}


def test_two_writers_never_fork_the_chain(gcs: tuple[GcsStandIn, Any]) -> None:
    standin, client = gcs
    deploy(client, AnchorBucket(name=BUCKET, location="EU"), project=PROJECT)
    first, second = _chain(client), _chain(client)
    assert first.append(_event(0)).seq == 0
    assert second.append(_event(1)).seq == 1  # reads the head the first one wrote
    refused_before = sum(r.method == "POST" and "/upload/" in r.path for r in standin.requests)
    # The first writer still believes record 0 is the head: its put of record 1 is refused
    # (create-only), it re-reads the head and re-links.
    assert first.append(_event(2)).seq == 2
    uploads = sum(r.method == "POST" and "/upload/" in r.path for r in standin.requests)
    assert uploads - refused_before == 2  # one lost race, one stored record
    lines = list(_chain(client).lines())
    assert verify(lines, []).broken is None
    assert [parse_record(line).data["sessionId"] for line in lines] == ["s-0", "s-1", "s-2"]


def test_the_head_and_the_lines_are_found_across_blocks(
    gcs: tuple[GcsStandIn, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    standin, client = gcs
    deploy(client, AnchorBucket(name=BUCKET, location="EU"), project=PROJECT)
    monkeypatch.setattr(object_chain, "BLOCK", 3)
    writer = _chain(client)
    for number in range(7):
        writer.append(_event(number))
    # An object that is not a record, under the records' prefix: never read as one.
    GcsAnchors(client.bucket(BUCKET)).put("records/access/000001/README.json", b"not a record")
    blocks = sorted({name.split("/")[2] for (_, name) in standin.objects})
    assert blocks == ["000000", "000001", "000002"]
    fresh = _chain(client)
    head = fresh.head()
    assert head is not None and head.seq == 6
    assert [parse_record(line).seq for line in fresh.lines(4)] == [4, 5, 6]


def test_a_store_that_cannot_be_written_is_ledger_unavailable(gcs: tuple[GcsStandIn, Any]) -> None:
    _, client = gcs  # no bucket: every call is refused (404)
    with pytest.raises(LedgerUnavailable, match=r"^could not read the ledger's head .*NotFound"):
        _chain(client).append(_event(0))


def test_sessions_not_recorded_while_the_store_is_down_are_recorded_once_it_is_back(
    emulator: PubsubEmulator, gcs: tuple[GcsStandIn, Any]
) -> None:
    standin, client = gcs
    project = f"ledger-down-{os.getpid()}-{os.urandom(2).hex()}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{project}/topics/audit").name
    subscription = f"projects/{project}/subscriptions/ledger"
    subscriber.create_subscription(request={"name": subscription, "topic": topic})
    start = te.session_start("sensor-1", "sid-000000000001", te.T0)
    end = te.session_end("sensor-1", "sid-000000000001", te.T0, te.T0 + timedelta(minutes=3))
    for number, payload in enumerate([start, end]):
        entry = {**te.entry(payload), "insertId": f"e-{number}"}
        publisher.publish(topic, json.dumps(entry).encode()).result(timeout=30)

    def run() -> Any:
        writer = SessionWriter(subscriber, subscription, _chain(client), anchor_every=timedelta(1))
        return writer.run(threading.Event(), until_idle=True)

    down = run()  # the bucket does not exist yet: nothing can be stored
    assert down.appended == 0 and standin.objects == {}
    assert down.failures == [
        "could not read the ledger's head (after record 0): NotFound",
        "could not anchor: NotFound",
    ]
    deploy(client, AnchorBucket(name=BUCKET, location="EU"), project=PROJECT)
    stats = run()  # handed back at once (deadline 0): redelivered now
    assert (stats.appended, stats.failures) == (2, [])
    lines = list(_chain(client).lines())
    assert [parse_record(line).data["decision"] for line in lines] == ["opened", "closed"]


def _settings(tmp_path: Path, ledger: dict[str, Any]) -> str:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"iot-remote-access": {"ledger": ledger}}))
    return str(path)


@pytest.mark.parametrize(
    ("args", "ledger", "expected"),
    [
        (["record", "gcp-sessions", "--subscription", "projects/p/subscriptions/s"], {},
         "ledger.gcp: missing; allowed: a ledger section with 'gcp'"),
        (["record", "gcp-sessions", "--subscription", "topics/x\x1b[31m"], {"gcp": {"bucket": "b-1"}},
         "--subscription: 'topics/x\\x1b[31m' is not allowed; allowed: projects/PROJECT/"),
        (["record", "azure-alerts"], {"azure": {"storageAccount": "fleetanchors"}},
         "IOT_REMOTE_ACCESS_WEBHOOK_TOKEN: missing or shorter than 16 characters"),
        (["record", "azure-alerts", "--listen", "nowhere"], {"azure": {"storageAccount": "abc"}},
         "--listen: 'nowhere' is not allowed; allowed: HOST:PORT"),
        (["record", "gcp-sessions", "--subscription", "projects/p/subscriptions/s"],
         {"retentionDays": 30, "gcp": {"bucket": "b-1"}}, "ledger.retentionDays: 30 is not allowed"),
    ],
)  # fmt: skip
def test_the_writers_refuse_bad_input_in_one_line_before_any_call(
    args: list[str],
    ledger: dict[str, Any],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IOT_REMOTE_ACCESS_WEBHOOK_TOKEN", raising=False)
    result = run_cli("evidence", *args[:2], "--settings", _settings(tmp_path, ledger), *args[2:])
    assert result.code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert expected in line


@pytest.mark.parametrize(
    "args", [[], ["--gcs-bucket", "b-1", "--azure-container-url", "http://127.0.0.1:9/a/c"]]
)
def test_export_objects_needs_exactly_one_store(args: list[str], tmp_path: Path) -> None:
    result = run_cli("evidence", "export-objects", *args, "--out", str(tmp_path / "x"))
    assert (result.code, result.stderr.strip()) == (
        2,
        "error: --gcs-bucket / --azure-container-url: allowed: exactly one of them",
    )


def test_hostile_audit_messages_are_refused_or_recorded_shortened_never_lost(
    emulator: PubsubEmulator, gcs: tuple[GcsStandIn, Any]
) -> None:
    """Too deep to parse: counted unusable, acknowledged. Texts of control characters that
    would spell a record over 16 KiB: the session is recorded anyway, its texts cut short."""
    _, client = gcs
    deploy(client, AnchorBucket(name=BUCKET, location="EU"), project=PROJECT)
    project = f"ledger-hostile-{os.getpid()}-{os.urandom(2).hex()}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{project}/topics/audit").name
    subscription = f"projects/{project}/subscriptions/ledger"
    subscriber.create_subscription(request={"name": subscription, "topic": topic})
    noise = "\x01" * 600
    request = te.access_request_create(te.T0, reason=noise, minutes=30)
    request.update(user=noise, id=noise)
    start = te.session_start(noise, "\x01" * 200, te.T0 + timedelta(minutes=1), user=noise)
    start["login"] = noise
    normal = te.session_start("sensor-2", "sid-000000000002", te.T0 + timedelta(minutes=2))
    bodies = [b"[" * 30_000 + b"]" * 30_000]
    bodies += [
        json.dumps({**te.entry(p), "insertId": noise + str(n)}).encode()
        for n, p in enumerate((request, start))
    ]
    bodies.append(json.dumps({**te.entry(normal), "insertId": "e-2"}).encode())
    for body in bodies:
        publisher.publish(topic, body).result(timeout=30)

    writer = SessionWriter(subscriber, subscription, _chain(client), anchor_every=timedelta(1))
    stats = writer.run(threading.Event(), until_idle=True)
    assert (stats.appended, stats.skipped, stats.unusable, stats.failures) == (2, 1, 1, [])
    shortened, recorded = [parse_record(line).data for line in _chain(client).lines()]
    assert shortened["truncated"] is True and len(shortened["principal"]) == 100
    assert "participants" not in shortened and recorded["device"] == "sensor-2"
