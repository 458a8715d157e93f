"""The rotation service started as ``gcp manifests`` renders it: the Deployment's own command
and environment (the bridge image's Dockerfile for what the image adds), probed as the
kubelet would, against the Pub/Sub and Firestore emulators and the CA Service STAND-IN;
then the plan CronJob's container, run to completion from its own command and environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import pubsub_v1

from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.settings import FleetSettings
from tests.gcp.test_bridge_as_deployed import DOCKERFILE, VENV, cli
from tests.support.ca_service_standin import CaServiceStandIn, ready_issuer
from tests.support.gcp_clients import wait_for
from tests.support.gcp_rotation import (
    Fleet,
    deploy_rotation_topology,
    fresh_project,
    make_csr,
    rotation_settings_file,
)
from tests.support.local_pod import Image, Kubelet, LocalPod
from tests.support.pki import TestCa
from tests.support.processes import FirestoreEmulator, PubsubEmulator

THING = "deployed-rot-1"


class Deployed:
    def __init__(self, directory: Path, standin: CaServiceStandIn, ca: TestCa) -> None:
        self.project = fresh_project("rot-deployed")
        settings_file = rotation_settings_file(directory, self.project)
        result = cli(
            "gcp", "manifests", "--settings", str(settings_file), "--out", str(directory / "out")
        )
        assert result.returncode == 0, result.stderr
        self.objects = {
            (doc["kind"], doc["metadata"]["name"]): doc
            for path in sorted((directory / "out" / "manifests").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        }
        settings = FleetSettings.from_file(settings_file)
        issuer = ready_issuer(standin, settings, self.project)
        self.fleet = Fleet(directory, ca, self.project, issuer=issuer)
        self.image = Image.from_dockerfile(DOCKERFILE, prefix_map={"/opt/bridge": str(VENV)})

    def pod(self, kind: str, name: str, directory: Path) -> LocalPod:
        workload = self.objects[(kind, name)]
        if kind == "CronJob":  # the pod a Job of the CronJob runs
            workload = {**workload, "spec": workload["spec"]["jobTemplate"]["spec"]}
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        return LocalPod(workload, container["name"], self.image, directory, secrets={}, services={})


@pytest.fixture
def deployed(
    tmp_path: Path,
    ca: TestCa,
    ca_service: CaServiceStandIn,
    emulator: PubsubEmulator,
    firestore_emulator: FirestoreEmulator,
) -> Deployed:
    made = Deployed(tmp_path / "rendered", ca_service, ca)
    deploy_rotation_topology(made.project)
    return made


@pytest.fixture
def emulators(
    tmp_path: Path,
    ca_service: CaServiceStandIn,
    emulator: PubsubEmulator,
    firestore_emulator: FirestoreEmulator,
) -> dict[str, str]:
    """What the cluster provides instead: the emulators' and the stand-in's addresses (and
    the checkout under test when it is not the installed one)."""
    checkout = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {
        **checkout,
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "ROTATION_CA_ENDPOINT": ca_service.host,
        "HOME": str(tmp_path),
    }


@pytest.fixture
def service(deployed: Deployed, emulators: dict[str, str], tmp_path: Path) -> Iterator[LocalPod]:
    pod = deployed.pod("Deployment", "rotation-service", tmp_path / "pod")
    kubelet = Kubelet(pod)
    pod.start(emulators)
    try:
        kubelet.wait_started()
        kubelet.start()
        assert kubelet.ready.wait(60), (kubelet.records, pod.log()[-3000:])
        yield pod
    finally:
        kubelet.stop()
        assert pod.stop(timeout=30) == 0, pod.log()[-3000:]  # SIGTERM: a clean exit


def _pull(subscription: str) -> Any:
    subscriber = pubsub_v1.SubscriberClient()
    for _ in range(30):
        answer = subscriber.pull(subscription=subscription, max_messages=1, timeout=10)
        if answer.received_messages:
            (received,) = answer.received_messages
            subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
            return received.message
    raise AssertionError(f"nothing on {subscription}")


def test_the_deployed_service_issues_answers_and_revokes(
    deployed: Deployed, service: LocalPod
) -> None:
    fleet, project = deployed.fleet, deployed.project
    old = fleet.enroll(THING, state=RotationState.REQUESTED)
    watch = f"projects/{project}/subscriptions/certificates-watch"
    pubsub_v1.SubscriberClient().create_subscription(
        name=watch, topic=f"projects/{project}/topics/iot-rotation-certificates"
    )
    publisher = pubsub_v1.PublisherClient()
    csr = json.dumps({"csr": make_csr(THING)}).encode()
    publisher.publish(f"projects/{project}/topics/iot-rotation-csr", csr, thing=THING).result(30)
    answer = _pull(watch)
    assert answer.attributes["thing"] == THING
    body = json.loads(answer.data)
    assert body["status"] == "issued", (body, service.log()[-2000:])
    assert "-----BEGIN CERTIFICATE-----" in body["certificatePem"]
    publisher.publish(f"projects/{project}/topics/iot-rotation-confirm", b"{}", thing=THING).result(
        30
    )
    wait_for(
        lambda: (fleet.inventory.get(THING) or {}).get("lastRevokedCertificateId") == old,
        30,
        f"the old certificate revoked: {service.log()[-2000:]}",
    )
    item = fleet.inventory.get(THING)
    assert item is not None and item["certificateId"] == body["certificateId"]
    assert "PRIVATE KEY" not in service.log()


def test_the_plan_cronjob_runs_to_completion_from_its_own_command(
    deployed: Deployed, emulators: dict[str, str], tmp_path: Path
) -> None:
    fleet = deployed.fleet
    fleet.enroll("due-1", days=20)  # inside the lead time: scheduled by the plan
    pod = deployed.pod("CronJob", "rotation-plan", tmp_path / "job")
    pod.start(emulators)
    assert pod.process is not None
    assert pod.process.wait(120) == 0, pod.log()[-3000:]
    report = json.loads(pod.log().strip().splitlines()[-1])
    assert report["run"] == "plan" and report["pending"] == 1 and report["failed"] == []
    assert report["critical"] == 1  # 20 days left: inside the 30-day alarm window
    item = fleet.inventory.get("due-1")
    assert item is not None and item["rotationState"] == "SCHEDULED"
    assert item["slotHour"] >= datetime.now(UTC).strftime("%Y-%m-%dT%H")
