"""The bridge's responses path (MQTT -> Pub/Sub): its settings, its topology, and the relay.

The relay is driven here with a recording publisher (our own code's unit test: it has
the ``publish(topic, data, **attributes) -> future`` shape of the Pub/Sub client); the
whole path on real parts is tests/gcp/test_commands_gcp_e2e.py.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from iot_remote_access.bridge.ack_sequencer import Ticket
from iot_remote_access.bridge.commands import CommandRelay
from iot_remote_access.bridge.metrics import BridgeMetrics
from iot_remote_access.bridge.responses import ResponseInbound, ResponseRelay
from iot_remote_access.bridge.settings import BridgeSettings, BridgeSettingsError
from iot_remote_access.core.commands import MAX_RESPONSE_BYTES, CommandRuleError, format_time
from iot_remote_access.core.topics import THING_NAME_RULE
from iot_remote_access.core.tree import Root
from iot_remote_access.settings import FleetSettings, SettingsError
from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
from tests.gcp.conftest import GCP_SETTINGS
from tests.support.pki import TestCa


class RecordingPublisher:
    """Answers each publish with a future the test resolves (or fails)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self._fail = fail_first
        self.lock = threading.Lock()

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        future: Future[str] = Future()
        with self.lock:
            self.published.append((topic, data, attributes))
            failing = self._fail > 0
            self._fail -= failing
        if failing:
            future.set_exception(RuntimeError("UNAVAILABLE"))
        else:
            future.set_result("message-id")
        return future


def relay(publisher: RecordingPublisher, settled: list[Ticket], **kwargs: Any) -> ResponseRelay:
    return ResponseRelay(
        publisher,
        topic_path="projects/p/topics/iot-command-responses",
        dead_letter_path="projects/p/topics/iot-command-responses-dead-letter",
        template="cmd/{thing}/responses",
        thing_name_pattern=kwargs.pop("pattern", THING_NAME_RULE),
        metrics=BridgeMetrics(),
        settle=settled.extend,
        is_current=lambda ticket: True,
        backoff=(0.01, 0.02),
        **kwargs,
    )


def inbound(
    topic: str, payload: bytes = b"{}", correlation: bytes | None = None
) -> ResponseInbound:
    return ResponseInbound(topic, payload, correlation, Ticket(1, 7, 1))


def test_a_response_goes_to_the_responses_topic_with_the_thing_from_the_topic() -> None:
    publisher, settled = RecordingPublisher(), []
    message = inbound("cmd/temp-1/responses", b'{"thing":"temp-2"}', b"8c1f-id")
    relay(publisher, settled).submit(message)
    ((topic, data, attributes),) = publisher.published
    assert topic == "projects/p/topics/iot-command-responses"
    assert data == b'{"thing":"temp-2"}'  # not parsed here: the service checks it
    assert attributes["thing"] == "temp-1"  # the topic's, never the payload's
    assert attributes["correlationData"] == b"8c1f-id".hex()
    assert attributes["mqttTopic"] == "cmd/temp-1/responses"
    assert settled == [message.ticket]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (inbound("cmd/a/b/responses"), "not-a-responses-topic"),
        (inbound("cmd/hvac-1/responses"), "thing-name-pattern"),
        (inbound("cmd/temp-1/responses", b"x" * (MAX_RESPONSE_BYTES + 1)), "too-large"),
    ],
)
def test_what_cannot_be_a_response_is_dead_lettered_then_acknowledged(
    message: ResponseInbound, reason: str
) -> None:
    publisher, settled = RecordingPublisher(), []
    relay(publisher, settled, pattern="temp-[0-9]+").submit(message)
    ((topic, data, attributes),) = publisher.published
    assert topic.endswith("-dead-letter") and attributes["deadLetterReason"] == reason
    assert len(data) <= MAX_RESPONSE_BYTES  # an oversized payload is dropped, its size kept
    assert settled == [message.ticket]


def test_oversized_correlation_data_is_not_passed_on() -> None:
    publisher, settled = RecordingPublisher(), []
    relay(publisher, settled).submit(inbound("cmd/temp-1/responses", correlation=b"x" * 65))
    assert "correlationData" not in publisher.published[0][2]


def test_a_failed_publish_is_retried_and_acknowledged_only_once_delivered() -> None:
    publisher, settled = RecordingPublisher(fail_first=2), []
    message = inbound("cmd/temp-1/responses")
    relay(publisher, settled).submit(message)
    for _ in range(200):
        if settled:
            break
        threading.Event().wait(0.01)
    assert len(publisher.published) == 3 and settled == [message.ticket]


# -- settings ------------------------------------------------------------------------


@pytest.fixture
def env(ca: TestCa, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = ca.client("bridge.iot-remote-access")
    for key in [k for k in os.environ if k.startswith("BRIDGE_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "BRIDGE_PROJECT": "my-project",
        "BRIDGE_MQTT_HOST": "hivemq.iot.svc",
        "BRIDGE_MQTT_CA_FILE": str(creds.ca_file),
        "BRIDGE_MQTT_CERT_FILE": str(creds.cert_file),
        "BRIDGE_MQTT_KEY_FILE": str(creds.key_file),
    }.items():
        monkeypatch.setenv(key, value)


def test_the_responses_path_is_off_by_default_and_on_with_its_topic(
    env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not BridgeSettings.from_environment().responses_on
    monkeypatch.setenv("BRIDGE_PUBSUB_RESPONSES_TOPIC", "iot-command-responses")
    settings = BridgeSettings.from_environment()
    assert settings.responses_on
    assert settings.responses_subscription == "$share/pubsub-bridge/cmd/+/responses"
    assert settings.responses_dead_letter_topic == "iot-command-responses-dead-letter"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BRIDGE_PUBSUB_RESPONSES_TOPIC", "goog-x", "BRIDGE_PUBSUB_RESPONSES_TOPIC: 'goog-x'"),
        ("BRIDGE_PUBSUB_RESPONSES_TOPIC", "a" * 250, "allowed: at most 243"),
        ("BRIDGE_RESPONSES_TOPIC", "cmd/+/responses", "BRIDGE_RESPONSES_TOPIC: "),
        (
            "BRIDGE_RESPONSES_TOPIC",
            "cmd/{thing}/commands",
            "BRIDGE_COMMANDS_TOPIC and BRIDGE_RESPONSES_TOPIC are both",
        ),
    ],
)
def test_bad_responses_variables_are_named(
    env: None, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(BridgeSettingsError) as caught:
        BridgeSettings.from_environment()
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


# -- topology -----------------------------------------------------------------------


def test_with_commands_on_the_topology_has_the_responses_topic_subscription_and_grants() -> None:
    fleet = FleetSettings.parse(
        {
            "gcp": {
                **GCP_SETTINGS,
                "pubsub": {
                    "commandServiceMembers": ["serviceAccount:svc@fleet-p.iam.gserviceaccount.com"]
                },
            }
        }
    )
    assert fleet.gcp is not None
    off = GcpPubsubStack(Root(), "S", project="fleet-p", settings=fleet.gcp).desired_state()
    on = GcpPubsubStack(
        Root(), "S", project="fleet-p", settings=fleet.gcp, commands=True
    ).desired_state()
    added = {t.name for t in on.topics} - {t.name for t in off.topics}
    assert added == {
        "projects/fleet-p/topics/iot-command-responses",
        "projects/fleet-p/topics/iot-command-responses-dead-letter",
    }
    (service,) = [s for s in on.subscriptions if s.name.endswith("/iot-command-responses-service")]
    assert service.topic == "projects/fleet-p/topics/iot-command-responses"
    assert service.dead_letter_policy.dead_letter_topic.endswith("-dead-letter")
    grants = {(g.resource, g.role, g.member) for g in on.grants} - {
        (g.resource, g.role, g.member) for g in off.grants
    }
    bridge = "serviceAccount:iot-bridge@test-project.iam.gserviceaccount.com"
    svc = "serviceAccount:svc@fleet-p.iam.gserviceaccount.com"
    assert (
        "projects/fleet-p/topics/iot-command-responses",
        "roles/pubsub.publisher",
        bridge,
    ) in grants
    assert ("projects/fleet-p/topics/iot-commands", "roles/pubsub.publisher", svc) in grants
    assert (service.name, "roles/pubsub.subscriber", svc) in grants


@pytest.mark.parametrize(
    ("pubsub", "message"),
    [
        ({"responsesTopic": "iot-commands"}, "responsesTopic 'iot-commands' collides"),
        ({"responsesSubscription": "iot-commands-bridge"}, "responsesSubscription"),
        ({"commandServiceMembers": ["allUsers"]}, "is not an IAM member"),
    ],
)
def test_bad_responses_settings_are_named(pubsub: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        FleetSettings.parse({"gcp": {**GCP_SETTINGS, "pubsub": pubsub}})
    assert message in str(caught.value)


# -- commands from the command service: MQTT 5 properties ------------------------------


def _relay() -> CommandRelay:
    return CommandRelay(
        None,
        None,
        None,  # type: ignore[arg-type]  # _properties uses none of them
        subscription_path="projects/p/subscriptions/s",
        dead_letter_path="projects/p/topics/d",
        template="cmd/{thing}/commands",
        thing_name_pattern=THING_NAME_RULE,
        metrics=BridgeMetrics(),
        max_inflight=1,
        responses_template="cmd/{thing}/responses",
    )


def test_a_remote_command_gets_correlation_data_response_topic_and_expiry() -> None:
    command_id = "8c1f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b"
    expires = format_time(datetime.now(UTC) + timedelta(seconds=30))
    properties = _relay()._properties({"commandId": command_id, "expiresAt": expires}, "temp-1")
    assert properties is not None
    assert properties.CorrelationData == command_id.encode()
    assert properties.ResponseTopic == "cmd/temp-1/responses"
    assert 25 <= properties.MessageExpiryInterval <= 30
    assert _relay()._properties({}, "temp-1") is None  # any other message: as before


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"commandId": "x", "expiresAt": "2026-12-02T03:00:20Z"}, "id"),
        ({"commandId": "8c1f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b", "expiresAt": "soon"}, "expiresAt"),
        (
            {
                "commandId": "8c1f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b",
                "expiresAt": "2020-01-01T00:00:00Z",
            },
            "expired",
        ),
    ],
)
def test_bad_or_expired_command_attributes_are_refused(
    attributes: dict[str, str], field: str
) -> None:
    with pytest.raises(CommandRuleError) as caught:
        _relay()._properties(attributes, "temp-1")
    assert caught.value.field == field
