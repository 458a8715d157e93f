"""The bridge's settings (BRIDGE_* environment variables) and the ``gcp`` settings section:
every bad value is named with its variable or field, the value and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iot_remote_access.bridge.ack_sequencer import AckSequencer
from iot_remote_access.bridge.settings import BridgeSettings, BridgeSettingsError
from iot_remote_access.cli import main
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.pki import TestCa

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def valid_env(ca: TestCa, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    creds = ca.client("bridge.iot-remote-access")
    env = {
        "BRIDGE_PROJECT": "my-project",
        "BRIDGE_MQTT_HOST": "hivemq.iot.svc",
        "BRIDGE_MQTT_CA_FILE": str(creds.ca_file),
        "BRIDGE_MQTT_CERT_FILE": str(creds.cert_file),
        "BRIDGE_MQTT_KEY_FILE": str(creds.key_file),
    }
    for key in [k for k in os.environ if k.startswith("BRIDGE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_defaults_match_the_topology_and_topic_model(valid_env: dict[str, str]) -> None:
    settings = BridgeSettings.from_environment()
    assert settings.subscription == "$share/pubsub-bridge/dt/+/telemetry"
    assert settings.topic_path(settings.pubsub_telemetry_topic) == (
        "projects/my-project/topics/iot-telemetry"
    )
    assert settings.commands_subscription_path == (
        "projects/my-project/subscriptions/iot-commands-bridge"
    )
    assert settings.pubsub_commands_dead_letter_topic == "iot-commands-dead-letter"
    assert (settings.mqtt_port, settings.max_inflight, settings.http_port) == (8883, 1000, 8080)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "BRIDGE_MQTT_PORT",
            "70000",
            "BRIDGE_MQTT_PORT: '70000': Input should be less than or equal to 65535",
        ),
        (
            "BRIDGE_PROJECT",
            "My Project",
            "BRIDGE_PROJECT: 'My Project' is not a Google Cloud project id; "
            "allowed: 6-30 of a-z, 0-9 and '-', starting with a letter, not ending with '-'",
        ),
        (
            "BRIDGE_SHARE_GROUP",
            "a/b",
            r"BRIDGE_SHARE_GROUP: 'a/b' is not a share group name; allowed: [a-zA-Z0-9_-]{1,64}",
        ),
        (
            "BRIDGE_TELEMETRY_TOPIC",
            "dt/#",
            "BRIDGE_TELEMETRY_TOPIC: 'dt/#' contains '#'; allowed: literal topic levels",
        ),
        (
            "BRIDGE_MQTT_KEY_FILE",
            "/nonexistent/key.pem",
            "BRIDGE_MQTT_KEY_FILE: '/nonexistent/key.pem' is not a file; "
            "allowed: a readable PEM file",
        ),
        (
            "BRIDGE_MAX_INFLIGHT",
            "0",
            "BRIDGE_MAX_INFLIGHT: '0': Input should be greater than or equal to 1",
        ),
        (
            "BRIDGE_PUBSUB_COMMANDS_SUBSCRIPTION",
            "goog-x",
            "BRIDGE_PUBSUB_COMMANDS_SUBSCRIPTION: 'goog-x' is not a Pub/Sub id",
        ),
        (
            "BRIDGE_RECONNECT_MIN_SECONDS",
            "50",
            "BRIDGE_RECONNECT_MIN_SECONDS 50 is above BRIDGE_RECONNECT_MAX_SECONDS 30; "
            "allowed: min <= max",
        ),
        ("BRIDGE_LOG_LEVEL", "LOUD", "BRIDGE_LOG_LEVEL: 'LOUD': Input should be 'DEBUG'"),
        (
            "BRIDGE_MQTT_SESSION_EXPIRY_SECONDS",
            "0",
            "BRIDGE_MQTT_SESSION_EXPIRY_SECONDS: '0': Input should be greater than or equal to 60",
        ),
    ],
)
def test_each_bad_variable_is_named_with_value_and_allowed(
    valid_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(BridgeSettingsError) as error:
        BridgeSettings.from_environment()
    assert message in str(error.value)


def test_missing_variables_are_each_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("BRIDGE_")]:
        monkeypatch.delenv(key)
    with pytest.raises(BridgeSettingsError) as error:
        BridgeSettings.from_environment()
    assert str(error.value).splitlines() == [
        "BRIDGE_PROJECT: not set; required",
        "BRIDGE_MQTT_HOST: not set; required",
        "BRIDGE_MQTT_CA_FILE: not set; required",
        "BRIDGE_MQTT_CERT_FILE: not set; required",
        "BRIDGE_MQTT_KEY_FILE: not set; required",
    ]


def test_bridge_exits_2_before_connecting_when_settings_are_bad(
    valid_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_MQTT_PORT", "x")
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", "run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: invalid bridge settings: BRIDGE_MQTT_PORT: 'x': Input should be a "
        "valid integer, unable to parse string as an integer\n"
    )
    # The container entry point, as its own process.
    result = subprocess.run(
        [sys.executable, "-m", "iot_remote_access.bridge"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BRIDGE_MQTT_PORT": "x"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid bridge settings: BRIDGE_MQTT_PORT: 'x'")
    key = Path(valid_env["BRIDGE_MQTT_KEY_FILE"]).read_text()
    assert key.splitlines()[1] not in result.stderr + err  # the key file's content never shows


def test_an_unknown_bridge_variable_is_refused_naming_it_and_the_closest_known_one(
    valid_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt variable never falls back silently to a default (issue 13: the rendered
    BRIDGE_SHARED_GROUP was ignored and the bridge subscribed a group HiveMQ refuses)."""
    monkeypatch.setenv("BRIDGE_SHARED_GROUP", "bridge")
    monkeypatch.setenv("BRIDGE_PUBSUB_PROJECT", "my-project")
    monkeypatch.setenv("BRIDGEWAY", "not ours")  # no underscore after BRIDGE: not ours
    with pytest.raises(BridgeSettingsError) as error:
        BridgeSettings.from_environment()
    assert str(error.value) == (
        "unknown variables BRIDGE_PUBSUB_PROJECT (did you mean BRIDGE_PROJECT?), "
        "BRIDGE_SHARED_GROUP (did you mean BRIDGE_SHARE_GROUP?); allowed: the BRIDGE_* "
        "variables the bridge reads (docs/bridge-deploy.md)"
    )


def test_the_container_exits_2_with_one_line_on_an_unknown_variable(
    valid_env: dict[str, str],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "iot_remote_access.bridge"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **valid_env, "BRIDGE_SHARED_GROUP": "bridge"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid bridge settings: unknown variable BRIDGE_SHARED_GROUP (did you mean "
        "BRIDGE_SHARE_GROUP?); allowed: the BRIDGE_* variables the bridge reads "
        "(docs/bridge-deploy.md)\n"
    )
    assert result.stdout == ""


def test_acks_go_out_in_arrival_order_and_never_across_connections() -> None:
    sent: list[tuple[int, int]] = []
    sequencer = AckSequencer(lambda mid, qos: sent.append((mid, qos)))
    sequencer.new_connection()
    a, b, c = (sequencer.track(mid, 1) for mid in (1, 2, 3))
    qos0 = sequencer.track(4, 0)
    assert sequencer.done(c) == 0 and sequencer.done(b) == 0  # 1 is still open
    assert sequencer.done(qos0) == 0  # QoS 0 is never acknowledged
    assert sequencer.done(a) == 3
    assert sent == [(1, 1), (2, 1), (3, 1)]
    old = sequencer.track(5, 1)
    sequencer.new_connection()  # packet ids of the old connection mean nothing now
    assert sequencer.done(old) == 0
    assert sent == [(1, 1), (2, 1), (3, 1)]


# -- the gcp section of the settings file ----------------------------------------------

BASE = {
    "projectNumber": "123456789012",
    "bridge": {"serviceAccount": "iot-bridge@my-proj.iam.gserviceaccount.com"},
}


@pytest.mark.parametrize(
    ("gcp", "message"),
    [
        ({"bridge": BASE["bridge"]}, "f.yaml.gcp.projectNumber: missing; required"),
        (
            {**BASE, "bridge": {"serviceAccount": "me@gmail.com"}},
            "f.yaml.gcp.bridge.serviceAccount: 'me@gmail.com' is not a Google service account; "
            "allowed: NAME@PROJECT.iam.gserviceaccount.com (NAME and PROJECT: 6-30 of",
        ),
        (
            {**BASE, "bridge": {**BASE["bridge"], "identity": "gateway-1"}},
            "f.yaml.gcp.bridge.identity: 'gateway-1' is also a valid thing name",
        ),
        (
            {**BASE, "pubsub": {"analyticsMembers": ["allUsers"]}},
            "f.yaml.gcp.pubsub.analyticsMembers: 'allUsers' is not an IAM member; allowed: "
            "'serviceAccount:EMAIL'",
        ),
        (
            {**BASE, "pubsub": {"retryMinBackoffSeconds": 60, "retryMaxBackoffSeconds": 30}},
            "f.yaml.gcp.pubsub: retryMinBackoffSeconds 60 is above retryMaxBackoffSeconds 30; "
            "allowed: min <= max",
        ),
        (
            {**BASE, "pubsub": {"telemetryTopic": "t!"}},
            "f.yaml.gcp.pubsub.telemetryTopic: 't!' is not a Pub/Sub id; allowed:",
        ),
        (
            {**BASE, "pubsub": {"messageRetentionDays": 8}},
            "f.yaml.gcp.pubsub.messageRetentionDays: 8: Input should be less than or equal to 7",
        ),
        (
            {**BASE, "labels": {"env": "Prod"}},
            "f.yaml.gcp.labels: label env='Prod' has a value that is not allowed; "
            "allowed: [a-z0-9_-]{0,63}",
        ),
        (
            {**BASE, "projectId": "My_Project"},
            "f.yaml.gcp.projectId: 'My_Project' is not a Google Cloud project id; allowed:",
        ),
        (
            {**BASE, "bridge": {**BASE["bridge"], "identity": "bridge/x"}},
            "f.yaml.gcp.bridge.identity: 'bridge/x' is not an identity; allowed:",
        ),
        (
            {**BASE, "pubsub": {"topic": "x"}},
            "f.yaml.gcp.pubsub.topic: unknown setting; allowed: telemetryTopic, commandsTopic",
        ),
    ],
)
def test_gcp_section_messages_name_field_value_and_allowed(
    gcp: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        FleetSettings.parse({"gcp": gcp}, source="f.yaml")
    assert message in str(error.value)


def test_example_settings_file_is_valid() -> None:
    settings = FleetSettings.from_file(REPO / "examples" / "gcp-settings.yaml")
    assert settings.gcp is not None and settings.hivemq is not None
    assert settings.gcp.project_id == "my-fleet-project"
    assert settings.gcp.pubsub_service_agent == (
        "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
