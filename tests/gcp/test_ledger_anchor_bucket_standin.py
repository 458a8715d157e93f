"""The ledger's anchors on Google Cloud: the locked-retention bucket and the anchor writer.

Real parts: google-cloud-storage (the pinned client) and `evidence verify` through the
console entry point. STAND-IN: ``tests.support.gcs_standin.GcsStandIn`` answers the
Cloud Storage JSON API on loopback (no Cloud Storage emulator ships with gcloud); the
requests the client sends are asserted exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from iot_remote_access.core.ledger import parse_anchor
from iot_remote_access.lambdas.anchor_sinks.sinks import (
    AnchorExists,
    GcsAnchors,
    TailBroken,
    anchor_bodies,
    anchor_chain,
    write_anchor,
)
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, BucketAction, deploy, plan
from tests.support.cli_runner import run_cli
from tests.support.gcs_standin import GcsStandIn
from tests.support.ledger_chain import START, build_chain, export

PROJECT = "fleet-evidence"
SPEC = AnchorBucket(name="fleet-ledger-anchors", location="EU", labels={"team": "iot"})


@pytest.fixture
def gcs() -> Iterator[tuple[GcsStandIn, Any]]:
    with GcsStandIn() as standin:
        client = storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": standin.endpoint},
        )
        yield standin, client


def test_deploy_creates_the_bucket_and_locks_its_retention_then_plans_unchanged(
    gcs: tuple[GcsStandIn, Any],
) -> None:
    standin, client = gcs
    assert plan(client, SPEC).action is BucketAction.CREATE
    assert deploy(client, SPEC, project=PROJECT).action is BucketAction.CREATE

    create, lock = standin.writes()
    assert (create.method, create.path, create.query["project"]) == (
        "POST",
        "/storage/v1/b",
        PROJECT,
    )
    assert create.body == {
        "name": "fleet-ledger-anchors",
        "location": "EU",
        "retentionPolicy": {"retentionPeriod": str(400 * 86_400)},
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": True},
            "publicAccessPrevention": "enforced",
        },
        "versioning": {"enabled": False},
        "labels": {"team": "iot", "managed-by": "iot-remote-access"},
    }
    assert (lock.method, lock.path) == (
        "POST",
        "/storage/v1/b/fleet-ledger-anchors/lockRetentionPolicy",
    )
    assert lock.query["ifMetagenerationMatch"] == "1"  # exactly the policy just created
    assert standin.buckets["fleet-ledger-anchors"]["retentionPolicy"]["isLocked"] is True

    before = len(standin.writes())
    again = deploy(client, SPEC, project=PROJECT)
    assert again.action is BucketAction.UNCHANGED and len(standin.writes()) == before


def test_a_locked_policy_is_lengthened_but_never_shortened(gcs: tuple[GcsStandIn, Any]) -> None:
    standin, client = gcs
    deploy(client, SPEC, project=PROJECT)
    writes = len(standin.writes())

    shorter = AnchorBucket(name=SPEC.name, location="EU", retention_days=366, labels=SPEC.labels)
    blocked = deploy(client, shorter, project=PROJECT)
    assert blocked.action is BucketAction.BLOCKED
    assert "never shortened to 366" in blocked.summary()
    assert len(standin.writes()) == writes  # nothing was sent

    longer = AnchorBucket(name=SPEC.name, location="EU", retention_days=730, labels=SPEC.labels)
    assert deploy(client, longer, project=PROJECT).action is BucketAction.UPDATE
    (patch,) = standin.writes()[writes:]  # already locked: no second lock call
    assert patch.method == "PATCH"
    # The client sends the policy as read (isLocked, effectiveTime are output-only).
    assert patch.body["retentionPolicy"]["retentionPeriod"] == str(730 * 86_400)
    assert plan(client, longer).action is BucketAction.UNCHANGED


def test_retention_below_the_legal_minimum_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^retention_days: 90 is not allowed; allowed: .*366"):
        AnchorBucket(name="b-anchors", location="EU", retention_days=90)


def test_the_anchor_job_writes_once_and_evidence_verify_reads_the_downloaded_folder(
    gcs: tuple[GcsStandIn, Any], tmp_path: Path
) -> None:
    standin, client = gcs
    deploy(client, SPEC, project=PROJECT)
    sink = GcsAnchors(client.bucket(SPEC.name))
    records = build_chain(30)
    lines = [r.line() for r in records]

    def lines_from(seq: int) -> list[bytes]:
        return [line for r, line in zip(records, lines, strict=True) if r.seq >= seq]

    first = anchor_chain(
        lambda s: lines_from(s)[:20], sink, "access", now=START + timedelta(hours=1)
    )
    second = anchor_chain(lines_from, sink, "access", now=START + timedelta(hours=2))
    assert (first["anchored"], second["anchored"], second["checked"]) == (19, 29, 11)
    upload = next(r for r in standin.writes() if r.path.startswith("/upload/"))
    assert upload.query == {"uploadType": "multipart", "ifGenerationMatch": "0"}

    # Written once: the same name again is refused by the service, never replaced.
    anchor = parse_anchor(next(iter(anchor_bodies(sink, "access"))).rstrip())
    with pytest.raises(AnchorExists, match="never overwritten"):
        write_anchor(sink, "access", anchor)

    # An auditor downloads the anchor objects (gcloud storage cp -r) and verifies.
    folder = tmp_path / "anchors"
    for (_, name), (_, data) in standin.objects.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    chain = tmp_path / "chain.jsonl"
    chain.write_bytes(export(records))
    verified = run_cli("evidence", "verify", str(chain), "--anchors", str(folder))
    assert verified.code == 0, verified.stderr
    assert verified.stdout.startswith("holds: 30 record(s), seq 0..29, 2 anchor(s) checked")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(export(records[:25]))
    truncated = run_cli("evidence", "verify", str(cut), "--anchors", str(folder))
    assert truncated.code == 1
    assert "the chain ends at record 24 but the anchor of" in truncated.stderr


def test_a_broken_tail_is_not_anchored(gcs: tuple[GcsStandIn, Any]) -> None:
    _, client = gcs
    deploy(client, SPEC, project=PROJECT)
    sink = GcsAnchors(client.bucket(SPEC.name))
    lines = [r.line() for r in build_chain(5)]
    lines[3] = lines[3].replace(b"sensor-3", b"sensor-9")
    with pytest.raises(TailBroken, match="record 3: digest does not match"):
        anchor_chain(lambda _: lines, sink, "access", now=START)
    assert list(anchor_bodies(sink, "access")) == []


def test_an_empty_folder_of_anchors_is_bad_input(tmp_path: Path) -> None:
    chain = tmp_path / "chain.jsonl"
    chain.write_bytes(export(build_chain(2)))
    (tmp_path / "none").mkdir()
    result = run_cli("evidence", "verify", str(chain), "--anchors", str(tmp_path / "none"))
    assert result.code == 2
    assert (
        result.stderr.startswith("error: --anchors: folder") and "holds no *.json" in result.stderr
    )
