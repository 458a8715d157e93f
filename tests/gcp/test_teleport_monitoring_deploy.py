"""``gcp plan|deploy`` with ``gcp.accessProxy``: metrics, alert policies and the SIEM sink.

Cloud Logging and Cloud Monitoring have no emulator: the real SDK clients talk gRPC to
a STAND-IN on a loopback port (tests/support/gcp_monitoring_standin.py), which decodes
the requests with the SDKs' own types. The joined test runs the real console script
with the real Pub/Sub emulator for the topology and the stand-in for monitoring.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.gcp_monitoring.deploy import deploy
from iot_remote_access.gcp_monitoring.desired import MANAGED_LABEL, desired_state
from iot_remote_access.gcp_monitoring.plan import Action, Kind, plan
from iot_remote_access.settings import FleetSettings
from tests.support.gcp_monitoring_standin import MonitoringStandIn, clients
from tests.support.no_node import CONSOLE_SCRIPT
from tests.support.processes import PubsubEmulator
from tests.support.teleport import access_raw

PROJECT = "my-fleet-project"
TELEPORT_SA = "teleport-auth@my-fleet-project.iam.gserviceaccount.com"
SIEM = "pubsub.googleapis.com/projects/my-fleet-project/topics/siem"


@pytest.fixture
def standin() -> Iterator[MonitoringStandIn]:
    server = MonitoringStandIn()
    server.service_accounts.add(TELEPORT_SA)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def state_of(raw: dict[str, Any]) -> Any:
    settings = FleetSettings.parse(raw)
    assert settings.gcp is not None and settings.gcp.access_proxy is not None
    return desired_state(PROJECT, settings.gcp.access_proxy, settings.tunnel_alarms)


def test_deploy_creates_everything_then_a_second_deploy_changes_nothing(
    standin: MonitoringStandIn,
) -> None:
    state = state_of(access_raw(auditSinkDestination=SIEM))
    metrics, policies, config, iam = clients(standin.host)
    first = plan(state, metrics, policies, config, iam)
    assert [(c.kind, c.action) for c in first.changes] == [
        (Kind.METRIC, Action.CREATE),
        (Kind.METRIC, Action.CREATE),
        (Kind.POLICY, Action.CREATE),
        (Kind.POLICY, Action.CREATE),
        (Kind.POLICY, Action.CREATE),
        (Kind.SINK, Action.CREATE),
        (Kind.IAM, Action.UPDATE),
    ]
    deploy(first, PROJECT, metrics, policies, config, iam)
    writes = [m for m in standin.methods_called() if not m.startswith(("get_", "list_"))]
    assert writes == [
        *["create_log_metric"] * 2,
        *["create_alert_policy"] * 3,
        "create_sink",
        "set_iam_policy",
    ]

    again = plan(state, metrics, policies, config, iam)
    assert again.pending == ()
    before = len(standin.requests)
    assert deploy(again, PROJECT, metrics, policies, config, iam) == []
    assert len(standin.requests) == before  # no request at all


def test_the_built_requests_carry_filters_extractors_queries_and_channels(
    standin: MonitoringStandIn,
) -> None:
    state = state_of(access_raw(auditSinkDestination=SIEM))
    metrics, policies, config, iam = clients(standin.host)
    deploy(plan(state, metrics, policies, config, iam), PROJECT, metrics, policies, config, iam)
    by_method: dict[str, list[Any]] = {}
    for method, request in standin.requests:
        by_method.setdefault(method, []).append(request)
    metric = by_method["create_log_metric"][0]
    assert metric.parent == f"projects/{PROJECT}"
    assert 'jsonPayload.event="session.start"' in metric.metric.filter
    assert 'resource.labels.namespace_name="teleport"' in metric.metric.filter
    assert dict(metric.metric.label_extractors) == {
        "device": "EXTRACT(jsonPayload.server_hostname)",
        "sid": "EXTRACT(jsonPayload.sid)",
    }
    created = [r.alert_policy for r in by_method["create_alert_policy"]]
    assert [p.user_labels["rule"] for p in created] == [
        "opens-per-device-per-day",
        "renewal-loop",
        "session-open-too-long",
    ]
    for policy in created:
        assert policy.user_labels[MANAGED_LABEL] == "iot-remote-access"
        assert list(policy.notification_channels) == [
            "projects/my-fleet-project/notificationChannels/123"
        ]
        condition = policy.conditions[0].condition_prometheus_query_language
        assert condition.query.startswith(("sum by (device)", "(sum by (device"))
        assert condition.evaluation_interval.total_seconds() == 60
    sink = by_method["create_sink"][0]
    assert sink.unique_writer_identity is True
    assert sink.sink.destination == SIEM
    assert 'jsonPayload.event="access_request.create"' in sink.sink.filter


def test_plan_shows_the_changed_fields_and_deploy_sends_only_those_resources(
    standin: MonitoringStandIn,
) -> None:
    metrics, policies, config, iam = clients(standin.host)
    first = state_of(access_raw())
    deploy(plan(first, metrics, policies, config, iam), PROJECT, metrics, policies, config, iam)
    raw = access_raw()
    raw["tunnelAlarms"] = {"renewalWindowMinutes": 30}
    changed = plan(state_of(raw), metrics, policies, config, iam)
    assert [(c.kind, c.action, c.fields) for c in changed.pending] == [
        (Kind.POLICY, Action.UPDATE, ("display_name", "documentation", "conditions"))
    ]
    (diff,) = [d for d in changed.pending[0].diffs if d.field == "conditions"]
    assert "[16m]" in str(diff) and "[31m]" in str(diff) and " -> " in str(diff)
    standin.requests.clear()
    deploy(changed, PROJECT, metrics, policies, config, iam)
    (update,) = [r for m, r in standin.requests if m == "update_alert_policy"]
    assert update.alert_policy.name.startswith(f"projects/{PROJECT}/alertPolicies/")
    assert "[31m]" in update.alert_policy.conditions[0].condition_prometheus_query_language.query
    assert plan(state_of(raw), metrics, policies, config, iam).pending == ()


def test_someone_elses_policies_are_left_alone(standin: MonitoringStandIn) -> None:
    from google.cloud.monitoring_v3 import AlertPolicy

    metrics, policies, config, iam = clients(standin.host)
    theirs = AlertPolicy(display_name="their policy", user_labels={"rule": "renewal-loop"})
    policies.create_alert_policy(name=f"projects/{PROJECT}", alert_policy=theirs)
    result = plan(state_of(access_raw()), metrics, policies, config, iam)
    assert [c.action for c in result.changes if c.kind == Kind.POLICY] == [Action.CREATE] * 3


def test_workload_identity_adds_one_member_and_keeps_every_other_binding(
    standin: MonitoringStandIn,
) -> None:
    from google.iam.v1 import policy_pb2

    resource = f"projects/-/serviceAccounts/{TELEPORT_SA}"
    standin.iam_policies[resource] = policy_pb2.Policy(
        etag=b"\x05",
        bindings=[
            policy_pb2.Binding(
                role="roles/iam.serviceAccountUser", members=["group:ops@example.com"]
            ),
            policy_pb2.Binding(
                role="roles/iam.workloadIdentityUser",
                members=["serviceAccount:my-fleet-project.svc.id.goog[other/app]"],
            ),
        ],
    )
    metrics, policies, config, iam = clients(standin.host)
    result = plan(state_of(access_raw()), metrics, policies, config, iam)
    (change,) = [c for c in result.changes if c.kind == Kind.IAM]
    member = "serviceAccount:my-fleet-project.svc.id.goog[teleport/teleport]"
    assert change.action == Action.UPDATE and member in str(change.diffs[0])
    deploy(result, PROJECT, metrics, policies, config, iam)
    (sent,) = [r for m, r in standin.requests if m == "set_iam_policy"]
    assert sent.policy.etag == b"\x05"  # written with the etag it read
    bindings = {b.role: sorted(b.members) for b in standin.iam_policies[resource].bindings}
    assert bindings == {
        "roles/iam.serviceAccountUser": ["group:ops@example.com"],
        "roles/iam.workloadIdentityUser": [
            "serviceAccount:my-fleet-project.svc.id.goog[other/app]",
            member,
        ],
    }
    again = plan(state_of(access_raw()), metrics, policies, config, iam)
    assert [c.action for c in again.changes if c.kind == Kind.IAM] == [Action.UNCHANGED]


# -- the console script, joined ------------------------------------------------------------


def settings_file(tmp_path: Path, project: str, **changes: Any) -> Path:
    raw = access_raw(**changes)
    raw["gcp"]["projectId"] = project
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    return path


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT), *args]  # our own console script
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_gcp_plan_and_deploy_console_script_with_the_emulator_and_the_standin(
    emulator: PubsubEmulator, standin: MonitoringStandIn, tmp_path: Path
) -> None:
    project = f"teleport-{os.getpid()}-{os.urandom(3).hex()}"
    path = settings_file(tmp_path, project, auditSinkDestination=SIEM.replace(PROJECT, project))
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "NO_GCE_CHECK": "true",
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT": standin.host,
    }
    planned = run(["gcp", "plan", "--settings", str(path)], env)
    assert planned.returncode == 0, planned.stderr
    assert "monitoring: 7 to change, 0 unchanged" in planned.stdout
    assert f"+ create log-based metric projects/{project}/metrics/" in planned.stdout
    deployed = run(["gcp", "deploy", "--settings", str(path)], env)
    assert deployed.returncode == 0, deployed.stderr
    assert "monitoring: 6 created, 1 updated, 0 unchanged" in deployed.stdout
    assert "writer identity" in deployed.stdout
    second = run(["gcp", "deploy", "--settings", str(path)], env)
    assert second.returncode == 0, second.stderr
    assert "monitoring: 0 created, 0 updated, 7 unchanged" in second.stdout


def test_a_refused_call_is_one_line_exit_1(
    emulator: PubsubEmulator, standin: MonitoringStandIn, tmp_path: Path
) -> None:
    project = f"teleport-{os.getpid()}-{os.urandom(3).hex()}"
    path = settings_file(tmp_path, project)
    standin.deny = "create_alert_policy"
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "NO_GCE_CHECK": "true",
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT": standin.host,
    }
    result = run(["gcp", "deploy", "--settings", str(path)], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: Google Cloud refused to create alert policy projects/{project} "
        "rule=opens-per-device-per-day: PERMISSION_DENIED stand-in denies create_alert_policy"
    ], result.stderr
    standin.deny = None  # a rerun converges: only what is missing is created
    rerun = run(["gcp", "deploy", "--settings", str(path)], env)
    assert rerun.returncode == 0, rerun.stderr
    assert "monitoring: 3 created, 1 updated, 2 unchanged" in rerun.stdout


def test_a_missing_google_service_account_is_one_line_exit_1(
    emulator: PubsubEmulator, standin: MonitoringStandIn, tmp_path: Path
) -> None:
    project = f"teleport-{os.getpid()}-{os.urandom(3).hex()}"
    path = settings_file(tmp_path, project)
    standin.service_accounts.clear()
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "NO_GCE_CHECK": "true",
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "IOT_REMOTE_ACCESS_GCP_MONITORING_ENDPOINT": standin.host,
    }
    result = run(["gcp", "plan", "--settings", str(path)], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Google Cloud refused"), lines
    assert "NOT_FOUND" in lines[0] and TELEPORT_SA in lines[0]
