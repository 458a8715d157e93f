"""``gcp plan|deploy``: the Pub/Sub topology from settings, deployed on the real emulator.

The emulator has no IAM and does not apply subscription filters: IAM and filters
are checked on the requests the code builds (tests named "built_requests").
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.cloud import pubsub_v1
from google.iam.v1 import policy_pb2

from iot_remote_access.cli import main
from iot_remote_access.constructs.gcp import IamGrant
from iot_remote_access.core.tree import Root
from iot_remote_access.pubsub.iam_requests import grants_by_resource, set_policy_request
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
from tests.gcp.conftest import GCP_SETTINGS
from tests.support.no_node import (
    CONSOLE_SCRIPT,
    JSII_PACKAGES,
    env_without_node,
    imported_packages,
    packages_loaded_by,
)
from tests.support.processes import PubsubEmulator

BRIDGE_SA = "serviceAccount:iot-bridge@test-project.iam.gserviceaccount.com"
AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gcp-settings.yaml"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def write_settings(tmp_path: Path, gcp: dict[str, object]) -> Path:
    path = tmp_path / f"settings-{len(list(tmp_path.glob('settings-*')))}.json"
    path.write_text(json.dumps({"iot-remote-access": {"gcp": gcp}}))
    return path


@pytest.fixture
def fresh_project(emulator: PubsubEmulator) -> str:
    return f"deploy-test-{os.getpid()}-{os.urandom(3).hex()}"


def example_in(project: str, tmp_path: Path) -> Path:
    """The example settings file with its gcp.projectId set to ``project``."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["iot-remote-access"]["gcp"]["projectId"] = project
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_gcp_deploy_creates_the_topology_then_leaves_it_unchanged(
    fresh_project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The project comes from the file's gcp.projectId, as for `gcp manifests`.
    args = ["--settings", str(example_in(fresh_project, tmp_path))]
    code, out, _ = run_cli(["gcp", "plan", *args], capsys)
    assert code == 0
    assert out.count("+ create") == 8
    assert "8 to change" in out

    code, out, _ = run_cli(["gcp", "deploy", *args], capsys)
    assert code == 0
    assert out.strip().splitlines()[-1] == "8 created, 0 updated, 0 unchanged, 5 skipped"

    code, out, _ = run_cli(["gcp", "deploy", *args], capsys)
    assert code == 0
    assert out.strip().splitlines() == ["0 created, 0 updated, 8 unchanged, 5 skipped"]

    subscriber = pubsub_v1.SubscriberClient()
    bridge = subscriber.get_subscription(
        subscription=f"projects/{fresh_project}/subscriptions/iot-commands-bridge"
    )
    assert bridge.topic == f"projects/{fresh_project}/topics/iot-commands"
    assert bridge.enable_message_ordering
    assert bridge.ack_deadline_seconds == 30
    assert bridge.dead_letter_policy.dead_letter_topic == (
        f"projects/{fresh_project}/topics/iot-commands-dead-letter"
    )
    assert bridge.dead_letter_policy.max_delivery_attempts == 5
    assert bridge.retry_policy.minimum_backoff.total_seconds() == 10
    assert bridge.retry_policy.maximum_backoff.total_seconds() == 600
    assert bridge.message_retention_duration.total_seconds() == 7 * 86400
    assert "expiration_policy" in bridge and not bridge.expiration_policy.ttl  # never expires
    assert dict(bridge.labels) == {"fleet": "demo", "env": "staging"}
    topic = pubsub_v1.PublisherClient().get_topic(
        topic=f"projects/{fresh_project}/topics/iot-telemetry"
    )
    assert topic.message_retention_duration.total_seconds() == 7 * 86400


def test_plan_shows_field_changes_and_deploy_applies_only_them(
    fresh_project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_settings(tmp_path, GCP_SETTINGS)
    assert (
        run_cli(["gcp", "deploy", "--settings", str(first), "--project", fresh_project], capsys)[0]
        == 0
    )
    # Fields the emulator can update (it cannot update labels or the expiration policy).
    changed = write_settings(
        tmp_path,
        {
            **GCP_SETTINGS,
            "pubsub": {
                "ackDeadlineSeconds": 60,
                "maxDeliveryAttempts": 8,
                "retryMaxBackoffSeconds": 300,
            },
        },
    )
    args = ["--settings", str(changed), "--project", fresh_project]
    code, out, _ = run_cli(["gcp", "plan", *args], capsys)
    assert code == 0
    bridge = f"~ update subscription projects/{fresh_project}/subscriptions/iot-commands-bridge"
    assert bridge in out
    section = out[out.index(bridge) :].splitlines()[1:4]
    assert section == [
        "    ack_deadline_seconds: 30 -> 60",
        "    retry_policy: {'minimum_backoff': '10s', 'maximum_backoff': '600s'} -> "
        "{'minimum_backoff': '10s', 'maximum_backoff': '300s'}",
        "    dead_letter_policy: {'dead_letter_topic': "
        f"'projects/{fresh_project}/topics/iot-commands-dead-letter', 'max_delivery_attempts': 5}}"
        f" -> {{'dead_letter_topic': 'projects/{fresh_project}/topics/iot-commands-dead-letter', "
        "'max_delivery_attempts': 8}",
    ]
    assert out.count("~ update") == 2 and "2 to change" in out  # the hold subscriptions keep theirs
    code, out, err = run_cli(["gcp", "deploy", *args], capsys)
    assert (code, err) == (0, ""), err
    assert out.strip().splitlines()[-1] == "0 created, 2 updated, 6 unchanged, 5 skipped"
    code, out, _ = run_cli(["gcp", "deploy", *args], capsys)
    assert out.strip().splitlines() == ["0 created, 0 updated, 8 unchanged, 5 skipped"]


def test_deploy_failure_names_the_resource_and_a_rerun_converges(
    fresh_project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The emulator refuses label updates: a real refusal, shown as one line with the resource."""
    first = write_settings(tmp_path, GCP_SETTINGS)
    assert (
        run_cli(["gcp", "deploy", "--settings", str(first), "--project", fresh_project], capsys)[0]
        == 0
    )
    relabelled = write_settings(tmp_path, {**GCP_SETTINGS, "labels": {"suite": "other"}})
    code, out, err = run_cli(
        ["gcp", "deploy", "--settings", str(relabelled), "--project", fresh_project], capsys
    )
    assert code == 1
    assert err.startswith(
        f"error: Pub/Sub refused to update topic projects/{fresh_project}/topics/iot-telemetry: "
        "INVALID_ARGUMENT "
    )
    assert err.count("\n") == 1
    code, out, err = run_cli(
        ["gcp", "deploy", "--settings", str(first), "--project", fresh_project], capsys
    )
    assert (code, out.strip()) == (0, "0 created, 0 updated, 8 unchanged, 5 skipped"), err


def test_a_filter_change_is_blocked_and_deploy_changes_nothing(
    fresh_project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_settings(tmp_path, GCP_SETTINGS)
    assert (
        run_cli(["gcp", "deploy", "--settings", str(first), "--project", fresh_project], capsys)[0]
        == 0
    )
    changed = write_settings(
        tmp_path,
        {
            **GCP_SETTINGS,
            "labels": {"changed": "yes"},
            "pubsub": {"analyticsFilter": 'attributes.mqttQos = "1"'},
        },
    )
    args = ["--settings", str(changed), "--project", fresh_project]
    code, out, _ = run_cli(["gcp", "plan", *args], capsys)
    assert "! blocked subscription" in out and "filter cannot change" in out
    code, out, err = run_cli(["gcp", "deploy", *args], capsys)
    assert code == 2
    assert err.startswith("error: nothing deployed: subscription projects/")
    assert "filter cannot change on an existing subscription" in err
    topic = pubsub_v1.PublisherClient().get_topic(
        topic=f"projects/{fresh_project}/topics/iot-telemetry"
    )
    assert dict(topic.labels) == {"suite": "bridge-tests"}  # the label change was not applied


def desired_state(settings: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    fleet = FleetSettings.parse({"gcp": settings or GCP_SETTINGS})
    assert fleet.gcp is not None
    return GcpPubsubStack(Root(), "S", project="prod-proj", settings=fleet.gcp).desired_state()


def test_iam_built_requests_grant_only_resource_level_roles() -> None:
    """The emulator has no IAM: these are the SetIamPolicy requests deploy would send."""
    desired = desired_state(
        {**GCP_SETTINGS, "pubsub": {"analyticsMembers": ["group:analysts@example.com"]}}
    )
    wanted = grants_by_resource(desired.grants)
    t, s = "projects/prod-proj/topics/", "projects/prod-proj/subscriptions/"
    assert wanted == {
        t + "iot-telemetry": {"roles/pubsub.publisher": {BRIDGE_SA}},
        t + "iot-telemetry-dead-letter": {"roles/pubsub.publisher": {BRIDGE_SA, AGENT}},
        t + "iot-commands-dead-letter": {"roles/pubsub.publisher": {BRIDGE_SA, AGENT}},
        s + "iot-commands-bridge": {"roles/pubsub.subscriber": {BRIDGE_SA, AGENT}},
        s + "iot-telemetry-analytics": {
            "roles/pubsub.subscriber": {AGENT, "group:analysts@example.com"}
        },
    }
    live = policy_pb2.Policy(
        etag=b"v7",
        bindings=[
            policy_pb2.Binding(role="roles/pubsub.publisher", members=["user:ops@example.com"]),
            policy_pb2.Binding(role="roles/pubsub.viewer", members=["group:all@example.com"]),
        ],
    )
    request = set_policy_request(t + "iot-telemetry", live, wanted[t + "iot-telemetry"])
    assert request is not None
    assert request.resource == t + "iot-telemetry"
    assert request.policy.etag == b"v7"  # a concurrent change makes the write fail
    bindings = {b.role: sorted(b.members) for b in request.policy.bindings}
    assert bindings == {
        "roles/pubsub.publisher": sorted(["user:ops@example.com", BRIDGE_SA]),  # kept + added
        "roles/pubsub.viewer": ["group:all@example.com"],  # untouched
    }
    assert (
        set_policy_request(t + "iot-telemetry", request.policy, wanted[t + "iot-telemetry"]) is None
    )  # nothing missing: no write


@pytest.mark.parametrize(
    ("resource", "role", "member", "message"),
    [
        (
            "projects/p",
            "roles/pubsub.publisher",
            BRIDGE_SA,
            r"IAM grant on 'projects/p'; allowed: one topic or subscription",
        ),
        ("projects/p/topics/*", "roles/pubsub.publisher", BRIDGE_SA, r"never a project"),
        (
            "projects/p/topics/t",
            "roles/pubsub.admin",
            BRIDGE_SA,
            r"IAM role 'roles/pubsub.admin'; allowed: roles/pubsub.publisher, "
            r"roles/pubsub.subscriber",
        ),
        ("projects/p/topics/t", "roles/pubsub.publisher", "allUsers", r"IAM member 'allUsers'"),
    ],
)
def test_iam_grants_are_never_wider_than_one_resource(
    resource: str, role: str, member: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        IamGrant(resource, role, member)


def test_subscription_built_requests_carry_filter_ordering_and_dead_lettering() -> None:
    """The emulator ignores filters: this is the Subscription deploy sends."""
    desired = desired_state(
        {
            **GCP_SETTINGS,
            "pubsub": {"analyticsFilter": 'attributes.mqttQos = "1"', "maxDeliveryAttempts": 9},
        }
    )
    subs = {s.name.rsplit("/", 1)[1]: s for s in desired.subscriptions}
    analytics = subs["iot-telemetry-analytics"]
    assert analytics.filter == 'attributes.mqttQos = "1"'
    assert analytics.enable_message_ordering
    assert analytics.dead_letter_policy.max_delivery_attempts == 9
    assert subs["iot-commands-bridge"].filter == ""
    assert subs["iot-commands-bridge"].enable_message_ordering
    assert set(subs) == {
        "iot-telemetry-analytics",
        "iot-commands-bridge",
        "iot-telemetry-dead-letter-hold",
        "iot-commands-dead-letter-hold",
    }


def test_cli_bad_settings_exit_2_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_google(monkeypatch, tmp_path)  # any call would fail with exit 1: exit 2 proves none ran
    bad = write_settings(tmp_path, {**GCP_SETTINGS, "projectNumber": "12x", "labels": {"Env": "x"}})
    code, _, err = run_cli(
        ["gcp", "deploy", "--settings", str(bad), "--project", "my-proj"], capsys
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "gcp.projectNumber: '12x' is not a project number; allowed: digits" in err
    assert "gcp.labels: label key 'Env' is not allowed; allowed: [a-z][a-z0-9_-]{0,62}" in err
    for args, message in [
        (["--project", "My_Proj"], "error: --project: 'My_Proj' is not a Google Cloud project id"),
        (
            ["--project", "my-proj", "--settings", str(tmp_path / "nope.json")],
            "cannot read settings",
        ),
    ]:
        full = (
            ["gcp", "plan", "--settings", str(bad), *args]
            if "--settings" not in args
            else ["gcp", "plan", *args]
        )
        code, _, err = run_cli(full, capsys)
        assert code == 2 and message in err, err
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    code, _, err = run_cli(
        ["gcp", "plan", "--settings", str(empty), "--project", "my-proj"], capsys
    )
    assert code == 2
    assert "gcp: missing; allowed: a 'gcp' section" in err


def test_project_comes_from_the_file_or_the_option_and_never_two_different_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_google(monkeypatch, tmp_path)  # exit 2 proves nothing was called
    code, _, err = run_cli(
        ["gcp", "plan", "--settings", str(EXAMPLE), "--project", "other-project"], capsys
    )
    assert code == 2
    assert err == (
        "error: --project 'other-project' differs from gcp.projectId 'my-fleet-project' in "
        f"{EXAMPLE}; allowed: the same project, or only one of them\n"
    )
    without = write_settings(tmp_path, GCP_SETTINGS)
    code, _, err = run_cli(["gcp", "deploy", "--settings", str(without)], capsys)
    assert code == 2
    assert "gcp.projectId: missing and no --project; allowed: either one" in err


def test_cli_without_credentials_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_google(monkeypatch, tmp_path)
    code, _, err = run_cli(["gcp", "plan", "--settings", str(EXAMPLE)], capsys)
    assert code == 1
    assert err == (
        "error: no Google Cloud credentials: run 'gcloud auth application-default login', "
        "set GOOGLE_APPLICATION_CREDENTIALS, or PUBSUB_EMULATOR_HOST for the emulator\n"
    )


def no_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No emulator, no credentials, and no metadata server lookups (never leave loopback)."""
    for name in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud-config"))


class IamStandIn:
    """Real emulator clients for topics and subscriptions, with IAM calls answered from a
    dict: a stand-in, because the emulator has no IAM. Records every SetIamPolicy."""

    def __init__(self, client: object, policies: dict[str, policy_pb2.Policy]) -> None:
        self._client = client
        self.policies = policies
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def get_iam_policy(self, *, request: dict[str, str]) -> policy_pb2.Policy:
        policy = policy_pb2.Policy()
        policy.CopyFrom(self.policies.get(request["resource"], policy_pb2.Policy(etag=b"0")))
        return policy

    def set_iam_policy(self, *, request: object) -> policy_pb2.Policy:
        resource, policy = request.resource, request.policy  # type: ignore[attr-defined]
        current = self.policies.get(resource, policy_pb2.Policy(etag=b"0"))
        assert policy.etag == current.etag, "stale etag"
        stored = policy_pb2.Policy()
        stored.CopyFrom(policy)
        stored.etag = str(int(current.etag or b"0") + 1).encode()
        self.policies[resource] = stored
        self.writes.append(resource)
        return stored


def test_iam_plan_and_deploy_with_an_iam_stand_in_is_idempotent(fresh_project: str) -> None:
    """The IAM flow of plan/deploy on the emulator's topics and subscriptions, with IAM
    itself answered by a stand-in (the emulator has none): grants added once, others kept."""
    from iot_remote_access.pubsub.deploy import deploy
    from iot_remote_access.pubsub.plan import Action, Kind, plan

    fleet = FleetSettings.parse({"gcp": GCP_SETTINGS})
    assert fleet.gcp is not None
    desired = GcpPubsubStack(Root(), "S", project=fresh_project, settings=fleet.gcp).desired_state()
    telemetry = f"projects/{fresh_project}/topics/iot-telemetry"
    policies = {
        telemetry: policy_pb2.Policy(
            etag=b"5",
            bindings=[
                policy_pb2.Binding(role="roles/pubsub.viewer", members=["group:ops@example.com"])
            ],
        )
    }
    publisher = IamStandIn(pubsub_v1.PublisherClient(), policies)
    subscriber = IamStandIn(pubsub_v1.SubscriberClient(), policies)

    first = plan(desired, publisher, subscriber, iam=True)
    iam = [c for c in first.changes if c.kind is Kind.IAM]
    assert len(iam) == 5 and {c.action for c in iam} == {Action.UPDATE}
    telemetry_change = next(c for c in iam if c.name == telemetry)
    assert [str(f) for f in telemetry_change.fields] == [
        f"roles/pubsub.publisher: (unset) -> ['{BRIDGE_SA}']"
    ]
    deploy(first, desired, publisher, subscriber)
    assert sorted(publisher.writes + subscriber.writes) == sorted(c.name for c in iam)
    kept = {b.role: list(b.members) for b in policies[telemetry].bindings}
    assert kept == {
        "roles/pubsub.viewer": ["group:ops@example.com"],
        "roles/pubsub.publisher": [BRIDGE_SA],
    }

    second = plan(desired, publisher, subscriber, iam=True)
    assert {c.action for c in second.changes} == {Action.UNCHANGED}
    assert deploy(second, desired, publisher, subscriber) == []
    assert len(publisher.writes + subscriber.writes) == 5  # no write the second time


def test_gcp_plan_and_deploy_run_without_node_on_path(fresh_project: str, tmp_path: Path) -> None:
    """The real console script, a PATH with only Python on it, the emulator: the Pub/Sub
    tree is plain Python, so nothing loads jsii (which would need Node.js)."""
    env = env_without_node(os.environ, tmp_path / "bin")
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud-config"), NO_GCE_CHECK="true")
    env["PYTHONPROFILEIMPORTTIME"] = "1"  # every module the run imports, on stderr
    args = ["--settings", str(example_in(fresh_project, tmp_path))]

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # our own console script
            [str(CONSOLE_SCRIPT), "gcp", command, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    planned = run("plan")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert planned.stdout.count("+ create") == 8
    loaded = imported_packages(planned.stderr)
    assert {"iot_remote_access", "google"} <= loaded  # the import log is complete
    assert loaded & JSII_PACKAGES == set()

    deployed = run("deploy")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert deployed.stdout.splitlines()[-1] == "8 created, 0 updated, 0 unchanged, 5 skipped"
    assert imported_packages(deployed.stderr) & JSII_PACKAGES == set()
    assert "Traceback" not in planned.stderr + deployed.stderr


def test_no_pubsub_module_imports_jsii(tmp_path: Path) -> None:
    import iot_remote_access.pubsub

    engine = [
        info.name
        for info in pkgutil.walk_packages(
            iot_remote_access.pubsub.__path__, "iot_remote_access.pubsub."
        )
    ]
    constructs = [
        f"iot_remote_access.constructs.gcp.{name}"
        for name in (
            "pubsub_topic",
            "pubsub_subscription",
            "dead_lettered_topic",
            "desired_state",
            "iam_grant",
        )
    ]
    modules = [*engine, *constructs, "iot_remote_access.stacks.gcp_pubsub_stack"]
    assert "iot_remote_access.pubsub.plan" in modules
    loaded = packages_loaded_by(modules, env_without_node(os.environ, tmp_path / "bin"))
    assert "google" in loaded
    assert loaded & JSII_PACKAGES == set()
