"""``gcp plan|deploy`` render the access ledger's anchor bucket (settings ``ledger.gcp``).

Real parts: our console script in a subprocess, the example settings file with a ledger
section, the Pub/Sub emulator (the rest of ``gcp deploy``), google-cloud-storage aimed
by its own ``STORAGE_EMULATOR_HOST``. STAND-IN: ``tests.support.gcs_standin.GcsStandIn``
answers the Cloud Storage JSON API (no Cloud Storage emulator ships with gcloud); every
request it receives is asserted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.gcp.test_gcp_pubsub import EXAMPLE
from tests.support.gcs_standin import GcsStandIn, Request
from tests.support.no_node import CONSOLE_SCRIPT
from tests.support.processes import PubsubEmulator

BUCKET = "fleet-ledger-anchors"
DAY = 86_400


def _settings(tmp_path: Path, project: str, retention_days: int) -> Path:
    raw = yaml.safe_load(EXAMPLE.read_text())
    section = raw["iot-remote-access"]
    section["gcp"]["projectId"] = project
    section["ledger"] = {
        "retentionDays": retention_days,
        "gcp": {"bucket": BUCKET, "location": "EU"},
    }
    path = tmp_path / f"settings-{retention_days}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(command: str, settings: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own console script
        [str(CONSOLE_SCRIPT), "gcp", command, "--settings", str(settings)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _shown(requests: list[Request]) -> list[tuple[str, str, dict[str, str]]]:
    return [
        (r.method, r.path, {k: v for k, v in r.query.items() if k != "prettyPrint"})
        for r in requests
    ]


def test_gcp_plan_and_deploy_create_and_lock_the_anchor_bucket_once(
    emulator: PubsubEmulator, tmp_path: Path
) -> None:
    project = f"ledger-cli-{os.getpid()}-{os.urandom(3).hex()}"
    with GcsStandIn() as gcs:
        env = {
            **os.environ,
            "STORAGE_EMULATOR_HOST": gcs.endpoint,
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
            "NO_GCE_CHECK": "true",
        }
        settings = _settings(tmp_path, project, retention_days=500)

        planned = _run("plan", settings, env)
        assert planned.returncode == 0, planned.stderr[-3000:]
        lines = planned.stdout.splitlines()
        at = lines.index(f"+ create anchor bucket {BUCKET}")
        assert lines[at + 1 : at + 8] == [
            "    labels: None -> {'managed-by': 'iot-remote-access'}",
            "    location: None -> 'EU'",
            "    publicAccessPrevention: None -> 'enforced'",
            "    retentionLocked: None -> True",
            f"    retentionPeriod: None -> {500 * DAY}",
            "    uniformBucketLevelAccess: None -> True",
            "    versioning: None -> False",
        ]
        assert gcs.writes() == []  # plan only reads
        assert _shown(gcs.requests) == [("GET", f"/storage/v1/b/{BUCKET}", {"projection": "noAcl"})]

        deployed = _run("deploy", settings, env)
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert f"+ create anchor bucket {BUCKET}, retention 500 days locked" in deployed.stdout
        create, lock = gcs.writes()
        assert (create.method, create.path, create.query["project"]) == (
            "POST",
            "/storage/v1/b",
            project,
        )
        assert create.body == {
            "name": BUCKET,
            "location": "EU",
            "retentionPolicy": {"retentionPeriod": str(500 * DAY)},
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
            "versioning": {"enabled": False},
            "labels": {"managed-by": "iot-remote-access"},
        }
        assert (lock.method, lock.path, lock.query["ifMetagenerationMatch"]) == (
            "POST",
            f"/storage/v1/b/{BUCKET}/lockRetentionPolicy",
            "1",
        )

        again = _run("deploy", settings, env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"= unchanged anchor bucket {BUCKET}" in again.stdout
        assert len(gcs.writes()) == 2  # the second deploy sends nothing

        # A shorter retention cannot be applied to a locked policy: refused before any change.
        shorter = _settings(tmp_path, project, retention_days=400)
        blocked_plan = _run("plan", shorter, env)
        assert f"! blocked anchor bucket {BUCKET}" in blocked_plan.stdout
        assert f"    retentionPeriod: {500 * DAY} -> {400 * DAY}" in blocked_plan.stdout
        refused = _run("deploy", shorter, env)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: nothing deployed: anchor bucket {BUCKET}: its locked retention policy "
            "keeps objects 500 days; it can be lengthened, never shortened to 400"
        ]
        assert len(gcs.writes()) == 2
        assert "Traceback" not in planned.stderr + deployed.stderr + again.stderr


def test_with_the_teleport_audit_sink_on_pubsub_deploy_adds_the_session_writers_subscription(
    emulator: PubsubEmulator, tmp_path: Path
) -> None:
    """The subscription `evidence record gcp-sessions` reads: on the sink's topic, never
    expiring, 60 s per batch. Cloud Logging/Monitoring: their gRPC STAND-IN
    (tests/support/gcp_monitoring_standin.py), as in test_teleport_monitoring_deploy."""
    from google.cloud import pubsub_v1

    from tests.gcp.test_teleport_monitoring_deploy import TELEPORT_SA
    from tests.support.gcp_monitoring_standin import MonitoringStandIn
    from tests.support.teleport import access_raw

    project = f"ledger-sub-{os.getpid()}-{os.urandom(3).hex()}"
    topic = f"projects/{project}/topics/siem"
    pubsub_v1.PublisherClient().create_topic(name=topic)  # the sink's destination, yours
    raw = access_raw(auditSinkDestination=f"pubsub.googleapis.com/{topic}")
    raw["gcp"]["projectId"] = project
    raw["ledger"] = {"gcp": {"bucket": BUCKET}}
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    monitoring = MonitoringStandIn()
    monitoring.service_accounts.add(TELEPORT_SA)
    monitoring.start()
    try:
        with GcsStandIn() as gcs:
            env = {
                **os.environ,
                "STORAGE_EMULATOR_HOST": gcs.endpoint,
                "IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT": monitoring.host,
                "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
                "NO_GCE_CHECK": "true",
            }
            name = f"projects/{project}/subscriptions/iot-remote-access-ledger-sessions"
            planned = _run("plan", settings, env)
            assert planned.returncode == 0, planned.stderr[-3000:]
            lines = planned.stdout.splitlines()
            at = lines.index(f"+ create ledger subscription {name}")
            assert lines[at + 1] == f"    topic: None -> '{topic}'"

            deployed = _run("deploy", settings, env)
            assert deployed.returncode == 0, deployed.stderr[-3000:]
            assert f"+ create ledger subscription {name} (topic {topic})" in deployed.stdout
            live = pubsub_v1.SubscriberClient().get_subscription(request={"subscription": name})
            assert (live.topic, live.ack_deadline_seconds) == (topic, 60)
            assert "ttl" not in live.expiration_policy  # never expires

            again = _run("deploy", settings, env)
            assert again.returncode == 0, again.stderr[-3000:]
            assert f"= unchanged ledger subscription {name} (topic {topic})" in again.stdout

            # Someone shortened the ack deadline: plan shows it, deploy restores it.
            pubsub_v1.SubscriberClient().update_subscription(
                request={
                    "subscription": {"name": name, "ack_deadline_seconds": 10},
                    "update_mask": {"paths": ["ack_deadline_seconds"]},
                }
            )
            drifted = _run("plan", settings, env)
            assert f"~ update ledger subscription {name}" in drifted.stdout
            assert "    ackDeadlineSeconds: 10 -> 60" in drifted.stdout
            assert _run("deploy", settings, env).returncode == 0
            live = pubsub_v1.SubscriberClient().get_subscription(request={"subscription": name})
            assert live.ack_deadline_seconds == 60
    finally:
        monitoring.stop()
