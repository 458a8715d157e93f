"""Teleport sessions reach the access ledger on Google Cloud, the way they travel when deployed.

Path: Teleport's audit events as Cloud Logging entries (``tests/support/teleport_events``)
-> the Logging sink's Pub/Sub topic (the real Pub/Sub emulator; a sink publishes one
``LogEntry`` JSON per message) -> ``iot-remote-access evidence record gcp-sessions`` (our
console script in a subprocess, from a settings file) -> the chain and its anchors in
the anchor bucket -> ``evidence export-objects`` -> ``evidence verify``.
STAND-IN: ``tests.support.gcs_standin.GcsStandIn`` answers the Cloud Storage JSON API (no
Cloud Storage emulator ships with gcloud); the bucket is deployed on it with its locked
retention policy by ``pubsub.anchor_bucket``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

from iot_remote_access.core.ledger import parse_record
from iot_remote_access.core.teleport_sessions import SessionMapper, UnusableEntry
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, deploy
from tests.support import teleport_events as te
from tests.support.gcs_standin import GcsStandIn
from tests.support.no_node import CONSOLE_SCRIPT
from tests.support.processes import PubsubEmulator

BUCKET = "fleet-ledger-anchors"
DEVICE = "sensor-000042"
T0 = te.T0


def _session_entries() -> list[dict[str, Any]]:
    """One approved request, one session under it ended by the operator, a second session
    cut by the request's expiry, a rejected session, and an event that is not a session."""
    events = [
        te.access_request_create(T0, reason="INC-4711 sensor drift", minutes=60),
        te.access_request_update(T0 + timedelta(minutes=2)),
        te.session_start(DEVICE, "sid-000000000001", T0 + timedelta(minutes=5)),
        te.session_end(
            DEVICE, "sid-000000000001", T0 + timedelta(minutes=5), T0 + timedelta(minutes=17)
        ),
        te.session_start(DEVICE, "sid-000000000002", T0 + timedelta(minutes=30)),
        te.session_end(
            DEVICE, "sid-000000000002", T0 + timedelta(minutes=30), T0 + timedelta(minutes=60)
        ),
        te.session_rejected(T0 + timedelta(minutes=61)),
    ]
    entries = [te.entry(event) for event in events]
    for number, entry in enumerate(entries):
        entry["insertId"] = f"entry-{number:04d}"
    return entries


def test_the_mapper_says_who_why_which_device_when_how_long_and_how_it_ended() -> None:
    mapper = SessionMapper()
    records = [r for e in _session_entries() if (r := mapper.record_of(e)) is not None]
    assert [(r["decision"], r["sessionId"]) for r in records] == [
        ("opened", "sid-000000000001"),
        ("closed", "sid-000000000001"),
        ("opened", "sid-000000000002"),
        ("closed", "sid-000000000002"),
        ("refused", "68a83a99"),
    ]
    opened, closed, _, expired, refused = records
    assert opened == {
        "event": "gcp.proxy.session",
        "decision": "opened",
        "sessionId": "sid-000000000001",
        "principal": "alice@example.com",
        "device": DEVICE,
        "service": "ssh",
        "reason": "INC-4711 sensor drift",
        "minutes": 60,
        "requestId": "66b827b2-1b0b-512b-965d-6c789388d3c9",
        "login": "maintenance",
        "at": "2026-11-30T08:05:00.000000Z",
        "expiresAt": "2026-11-30T09:00:00.000000Z",
        "logEntry": "entry-0002",
    }
    assert (closed["openedAt"], closed["at"], closed["seconds"]) == (
        "2026-11-30T08:05:00.000000Z",
        "2026-11-30T08:17:00.000000Z",
        12 * 60,
    )
    assert (closed["closeReason"], closed["closedBy"]) == (
        "ended by the operator",
        "alice@example.com",
    )
    assert (expired["closeReason"], expired["closedBy"]) == (
        "access request expired (certificate disconnected)",
        "timeout",
    )
    assert refused["refusal"] == "rejected by Teleport" and refused["principal"] == "(unknown)"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("not an object", "entry"),
        ({"jsonPayload": [1]}, "jsonPayload"),
        ({"jsonPayload": {"event": "session.start", "time": "2026-11-30T08:00:00Z"}}, "sid"),
        ({"jsonPayload": {"event": "session.end", "sid": "s", "session_start": "yesterday"}},
         "session_start"),
    ],
)  # fmt: skip
def test_an_entry_that_is_not_a_teleport_event_is_named_precisely(
    entry: object, field: str
) -> None:
    with pytest.raises(UnusableEntry, match=field):
        SessionMapper().record_of(entry)


@pytest.fixture
def gcs() -> Iterator[GcsStandIn]:
    with GcsStandIn() as standin:
        client = storage.Client(
            project="fleet-evidence",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": standin.endpoint},
        )
        deploy(client, AnchorBucket(name=BUCKET, location="EU"), project="fleet-evidence")
        yield standin


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own console script, as the Deployment runs it
        [str(CONSOLE_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_sessions_from_the_audit_sink_are_chained_anchored_and_verified_and_tampering_is_caught(
    emulator: PubsubEmulator, gcs: GcsStandIn, tmp_path: Path
) -> None:
    project = f"ledger-sessions-{os.getpid()}-{os.urandom(2).hex()}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{project}/topics/teleport-audit").name
    subscription = f"projects/{project}/subscriptions/teleport-ledger"
    subscriber.create_subscription(request={"name": subscription, "topic": topic})
    entries = _session_entries()
    for entry in [*entries, entries[2]]:  # the sink delivered one entry twice
        publisher.publish(topic, json.dumps(entry).encode()).result(timeout=30)
    publisher.publish(topic, b"\xff not a log entry").result(timeout=30)

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"iot-remote-access": {"ledger": {"gcp": {"bucket": BUCKET}}}}))
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs.endpoint,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "NO_GCE_CHECK": "true",
    }
    writer = _cli(
        ["evidence", "record", "gcp-sessions", "--settings", str(settings),
         "--subscription", subscription, "--until-idle"], env,
    )  # fmt: skip
    assert writer.returncode == 0, writer.stderr[-3000:]
    assert writer.stdout.strip() == (
        "recorded 5 session event(s); 2 other event(s), 1 unusable, 1 duplicate(s); 1 anchor(s)"
    )
    anchor, *records = sorted(name for (_, name) in gcs.objects)
    assert records == [f"records/access/000000/{seq:012d}.json" for seq in range(5)]
    assert anchor.startswith("anchors/access/")
    uploads = [r for r in gcs.writes() if r.path.startswith("/upload/")]
    assert {r.query["ifGenerationMatch"] for r in uploads} == {"0"}  # every write create-only

    exported = _cli(["evidence", "export-objects", "--gcs-bucket", BUCKET, "--out",
                     str(tmp_path / "x1")], env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    chain = (tmp_path / "x1" / "chain.jsonl").read_bytes().splitlines()
    kinds = [(parse_record(line).data["decision"], parse_record(line).seq) for line in chain]
    assert kinds == [("opened", 0), ("closed", 1), ("opened", 2), ("closed", 3), ("refused", 4)]
    verify = [
        str(tmp_path / "x1" / "chain.jsonl"),
        "--anchors",
        str(tmp_path / "x1" / "anchors.jsonl"),
    ]
    held = _cli(["evidence", "verify", *verify], env)
    assert (held.returncode, held.stdout.strip()) == (
        0,
        "holds: 5 record(s), seq 0..4, 1 anchor(s) checked",
    )

    # Someone with storage-level access rewrites record 1 (a shorter session) in place.
    key = (BUCKET, "records/access/000000/000000000001.json")
    resource, body = gcs.objects[key]
    gcs.objects[key] = (resource, body.replace(b'"seconds":720', b'"seconds":120'))
    _cli(["evidence", "export-objects", "--gcs-bucket", BUCKET, "--out", str(tmp_path / "x2")], env)
    broken = _cli(["evidence", "verify", str(tmp_path / "x2" / "chain.jsonl"), "--anchors",
                   str(tmp_path / "x2" / "anchors.jsonl")], env)  # fmt: skip
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        "error: chain broken at record 1: digest does not match the record's content (edited)"
    )


def test_the_evidence_pack_reads_the_writers_records_as_session_rows() -> None:
    from iot_remote_access.core.evidence_fold import Fold
    from iot_remote_access.core.evidence_model import Period
    from iot_remote_access.core.ledger import next_record

    mapper, head, rows = SessionMapper(), None, []
    fold = Fold(Period(T0, T0 + timedelta(days=1)), rows.append, rows.append, lambda _: None)
    for number, entry in enumerate(_session_entries()):
        data = mapper.record_of(entry)
        if data is not None:
            head = next_record(head, data, T0 + timedelta(minutes=90, seconds=number))
            fold.add(head.seq, head.time, head.data)
    fold.finish_open()
    shown = [
        (r["operator"], r["purpose"], r["thing"], r["openedAt"], r["minutes"], r["outcome"],
         r["endedBy"])
        for r in rows
    ]  # fmt: skip
    assert shown == [
        ("alice@example.com", "INC-4711 sensor drift", DEVICE, "2026-11-30T08:05:00Z", 12,
         "closed: ended by the operator", "alice@example.com"),
        ("alice@example.com", "INC-4711 sensor drift", DEVICE, "2026-11-30T08:30:00Z", 30,
         "closed: access request expired (certificate disconnected)", "timeout"),
        ("(unknown)", "", "", "2026-11-30T09:01:00Z", 0, "refused", ""),  # no user: no request
    ]  # fmt: skip
