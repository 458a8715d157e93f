"""What ``gcp deploy`` adds for certificate rotation (``gcp.rotationService``): three
dead-lettered topics, the service's and the rotation bridge's subscriptions, and IAM on
exactly those resources."""

from __future__ import annotations

from google.cloud import pubsub_v1

from iot_remote_access.core.tree import Root
from iot_remote_access.pubsub.iam_requests import grants_by_resource
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
from tests.gcp.conftest import GCP_SETTINGS
from tests.support.gcp_rotation import deploy_rotation_topology, fresh_project
from tests.support.processes import PubsubEmulator

BRIDGE = "serviceAccount:iot-bridge@test-project.iam.gserviceaccount.com"
SERVICE = "serviceAccount:iot-rotation@prod-proj.iam.gserviceaccount.com"
AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
ROTATION = {
    **GCP_SETTINGS,
    "certificateAuthority": {"location": "europe-west1"},
    "rotationService": {
        "serviceAccount": SERVICE.removeprefix("serviceAccount:"),
        "image": "europe-west1-docker.pkg.dev/p/iot/pubsub-bridge:0.1.0",
    },
}


def test_rotation_grants_stay_on_the_rotation_resources() -> None:
    fleet = FleetSettings.parse({"gcp": ROTATION})
    assert fleet.gcp is not None
    desired = GcpPubsubStack(Root(), "S", project="prod-proj", settings=fleet.gcp).desired_state()
    wanted = grants_by_resource(desired.grants)
    t, s = "projects/prod-proj/topics/", "projects/prod-proj/subscriptions/"
    rotation = {name: roles for name, roles in wanted.items() if "rotation" in name}
    dead = {"roles/pubsub.publisher": {BRIDGE, AGENT}}
    assert rotation == {
        t + "iot-rotation-csr": {"roles/pubsub.publisher": {BRIDGE}},
        t + "iot-rotation-confirm": {"roles/pubsub.publisher": {BRIDGE}},
        t + "iot-rotation-certificates": {"roles/pubsub.publisher": {SERVICE}},
        t + "iot-rotation-csr-dead-letter": dead,
        t + "iot-rotation-confirm-dead-letter": dead,
        t + "iot-rotation-certificates-dead-letter": dead,
        s + "iot-rotation-csr-service": {"roles/pubsub.subscriber": {SERVICE, AGENT}},
        s + "iot-rotation-confirm-service": {"roles/pubsub.subscriber": {SERVICE, AGENT}},
        s + "iot-rotation-certificates-bridge": {"roles/pubsub.subscriber": {BRIDGE, AGENT}},
    }
    # The planner tells devices on the commands topic (the bridge relays it).
    assert SERVICE in wanted[t + "iot-commands"]["roles/pubsub.publisher"]
    # Without the section nothing of this exists.
    plain = FleetSettings.parse({"gcp": GCP_SETTINGS}).gcp
    assert plain is not None
    names = [
        t.name
        for t in GcpPubsubStack(Root(), "S", project="prod-proj", settings=plain)
        .desired_state()
        .topics
    ]
    assert not [n for n in names if "rotation" in n]


def test_deployed_on_the_emulator_with_patient_csr_subscriptions(emulator: PubsubEmulator) -> None:
    project = fresh_project("rot-topology")
    deploy_rotation_topology(project)
    subscriber = pubsub_v1.SubscriberClient()
    csr = subscriber.get_subscription(
        subscription=f"projects/{project}/subscriptions/iot-rotation-csr-service"
    )
    assert csr.topic == f"projects/{project}/topics/iot-rotation-csr"
    # A CSR held back while CA Service throttles comes back many times before it would
    # be dead-lettered.
    assert csr.dead_letter_policy.max_delivery_attempts == 100
    assert csr.dead_letter_policy.dead_letter_topic.endswith("iot-rotation-csr-dead-letter")
    bridge = subscriber.get_subscription(
        subscription=f"projects/{project}/subscriptions/iot-rotation-certificates-bridge"
    )
    assert bridge.enable_message_ordering
