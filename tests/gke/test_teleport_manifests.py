"""``gcp manifests`` with ``gcp.accessProxy``: Teleport's objects, chart values and roles.

Checked offline with the real validators: kubernetes-validate (strict) for every
object, and the teleport-cluster chart's own values.schema.json (chart 15.3.1) for
the values merged over the chart's values.yaml as Helm merges them, both read from
../shared/schemas/teleport (never copied into the project).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.teleport_access import (
    STANDING_ROLES,
    THING_GROUP_LABEL,
    AccessProxyPolicy,
    minutes_of,
    role_grants,
)
from iot_remote_access.core.tunnel_rules import MAX_LIFETIME_MINUTES
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.hivemq_chart import (
    MANIFESTS_DIR,
    TELEPORT_RESOURCES_FILE,
    TELEPORT_VALUES_FILE,
    synthesize,
)
from tests.support.cli_runner import run_cli
from tests.support.teleport import (
    DIGEST,
    access_raw,
    chart_defaults,
    chart_schema,
    merged,
    read_yaml,
)

#: Keys of ours that the 15.3.1 schema does not describe (it allows unknown keys, so the
#: schema check alone would not notice a key only newer charts know). None today: every
#: key rendered is in the 15.3.1 schema. A key added from a newer chart goes here, named.
NEWER_THAN_SCHEMA: set[str] = set()


class Rendered:
    def __init__(self, out_dir: Path, raw: dict[str, Any]) -> None:
        self.settings = FleetSettings.parse(raw)
        self.files = synthesize(self.settings, out_dir)
        self.objects = {}
        for path in sorted((out_dir / MANIFESTS_DIR).glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                self.objects[(document["kind"], document["metadata"]["name"])] = document
        self.values: dict[str, Any] = read_yaml(out_dir / TELEPORT_VALUES_FILE)
        self.values_text = (out_dir / TELEPORT_VALUES_FILE).read_text(encoding="utf-8")
        text = (out_dir / TELEPORT_RESOURCES_FILE).read_text(encoding="utf-8")
        self.roles = [doc for doc in yaml.safe_load_all(text) if doc]

    def teleport_objects(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            key: obj
            for key, obj in self.objects.items()
            if obj["metadata"].get("namespace") == "teleport" or key == ("Namespace", "teleport")
        }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    raw = access_raw(monitoringNamespace="monitoring")
    return Rendered(tmp_path_factory.mktemp("teleport"), raw)


def test_teleport_objects_pass_kubernetes_validate_strict(rendered: Rendered) -> None:
    ours = rendered.teleport_objects()
    assert {kind for kind, _ in ours} == {"Namespace", "NetworkPolicy"}
    version = rendered.settings.hivemq.kubernetes_version  # type: ignore[union-attr]
    for obj in ours.values():
        assert kubernetes_validate.validate(obj, version, strict=True) == version


def test_network_policies_deny_by_default_and_open_only_tls(rendered: Rendered) -> None:
    policies = {
        name: obj["spec"]
        for (kind, name), obj in rendered.teleport_objects().items()
        if kind == "NetworkPolicy"
    }
    assert policies["teleport-default-deny"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    ports = {
        (name, port["port"])
        for name, spec in policies.items()
        for rule in spec.get("ingress", [])
        for port in rule.get("ports", [])
    }
    assert ports == {
        ("teleport-proxy-tls-in", 443),
        ("teleport-auth-from-proxy", 3025),
        ("teleport-diagnostics-from-monitoring", 3000),
    }
    egress = {
        (tuple(peer["ipBlock"]["cidr"] for peer in rule.get("to", [])), port["port"])
        for rule in policies["teleport-egress"]["egress"]
        for port in rule["ports"]
    }
    assert egress == {
        ((), 53),
        ((), 443),
        ((), 3025),
        # the GKE metadata server (Workload Identity tokens), and nothing else in plain text
        (("169.254.169.254/32",), 80),
        (("169.254.169.252/32", "127.0.0.1/32"), 988),
    }


def test_values_pass_the_charts_own_schema(rendered: Rendered) -> None:
    helm_values = merged(chart_defaults(), rendered.values)
    jsonschema.Draft7Validator(chart_schema()).validate(helm_values)


def test_the_schema_check_would_catch_a_wrong_value(rendered: Rendered) -> None:
    broken = merged(chart_defaults(), {**rendered.values, "chartMode": "gke"})
    with pytest.raises(jsonschema.ValidationError, match="'gke' is not one of"):
        jsonschema.Draft7Validator(chart_schema()).validate(broken)


def _paths(values: Any, prefix: str = "") -> set[str]:
    if not isinstance(values, dict):
        return {prefix}
    found: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        found |= _paths(value, path) if isinstance(value, dict) and value else {path}
    return found


def _described(schema: dict[str, Any], path: str) -> bool:
    node = schema
    for part in path.split("."):
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif node.get("type") == "object" and "properties" not in node:
            return True  # a free-form object in the schema (auth, proxy, securityContext...)
        else:
            return part in node.get("required", [])
    return True


def test_keys_newer_than_the_15_3_1_schema_are_named(rendered: Rendered) -> None:
    undescribed = {p for p in _paths(rendered.values) if not _described(chart_schema(), p)}
    # log.format / log.output count as described: the 15.3.1 schema's "log" lists other
    # properties by mistake but requires these two (the chart's values.yaml sets both).
    assert undescribed == NEWER_THAN_SCHEMA


def test_gke_native_storage_workload_identity_tls_and_pinned_image(rendered: Rendered) -> None:
    values = rendered.values
    assert values["chartMode"] == "gcp"
    assert values["gcp"] == {
        "projectId": "my-fleet-project",
        "backendTable": "teleport-backend",
        "auditLogTable": "teleport-events",
        "auditLogMirrorOnStdout": True,
        "sessionRecordingBucket": "my-fleet-teleport-recordings",
        "credentialSecretName": "",  # no key file: Workload Identity
    }
    assert values["annotations"]["serviceAccount"] == {
        "iam.gke.io/gcp-service-account": "teleport-auth@my-fleet-project.iam.gserviceaccount.com"
    }
    assert values["proxyListenerMode"] == "multiplex"  # one TLS port, no plain-text listener
    assert values["image"] == "public.ecr.aws/gravitational/teleport-distroless"
    assert "--version 15.3.1" in rendered.values_text and DIGEST in rendered.values_text
    assert values["securityContext"]["runAsNonRoot"] is True


# -- the roles: no standing access, a reason, the selector, the lifetime -------------------

label_values = st.lists(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True), min_size=1, max_size=3, unique=True
)
selectors = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True).filter(lambda k: k != THING_GROUP_LABEL),
    label_values,
    max_size=3,
)
groups = st.lists(st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True), max_size=3, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    labels=selectors,
    thing_groups=groups,
    lifetime=st.integers(1, MAX_LIFETIME_MINUTES),
    idle=st.integers(1, MAX_LIFETIME_MINUTES),
    approvals=st.integers(1, 5),
)
def test_no_rendered_role_grants_beyond_the_selector_without_reason_or_longer_than_the_maximum(
    labels: dict[str, list[str]], thing_groups: list[str], lifetime: int, idle: int, approvals: int
) -> None:
    if not labels and not thing_groups:
        return  # refused by the settings (tested in tests/gcp/test_access_proxy_settings.py)
    policy = AccessProxyPolicy(
        max_lifetime_minutes=lifetime,
        idle_timeout_minutes=min(idle, lifetime),
        selector_labels={k: tuple(v) for k, v in labels.items()},
        thing_groups=tuple(thing_groups),
        approvals_required=approvals,
    )
    roles = {role["metadata"]["name"]: role for role in policy.roles()}
    expected = {**labels, **({THING_GROUP_LABEL: thing_groups} if thing_groups else {})}
    for name, role in roles.items():
        grants = role_grants(role)
        spec = role["spec"]
        assert minutes_of(spec["options"]["max_session_ttl"]) <= lifetime
        if name == policy.access_role:
            # The only role with node access: exactly the selector, never a wildcard.
            assert grants["node_labels"] == expected
            assert all(
                "*" not in k and all("*" not in v for v in vs)
                for k, vs in grants["node_labels"].items()
            )
            assert (
                "root" not in grants["logins"]
                and spec["options"]["disconnect_expired_cert"] is True
            )
        else:
            assert grants == {"node_labels": {}, "logins": []}  # no standing access
    requester = roles[policy.requester_role]["spec"]
    assert requester["options"]["request_access"] == "reason"
    assert requester["allow"]["request"]["roles"] == [policy.access_role]
    assert minutes_of(requester["allow"]["request"]["max_duration"]) == lifetime
    assert roles[policy.approver_role]["spec"]["allow"]["review_requests"]["roles"] == [
        policy.access_role
    ]
    assert not set(roles) & STANDING_ROLES


def test_rendered_resources_are_the_settings_roles(rendered: Rendered) -> None:
    access = rendered.settings.gcp.access_proxy  # type: ignore[union-attr]
    assert access is not None
    assert rendered.roles == access.resources()
    users = {
        r["metadata"]["name"]: r["spec"]["roles"] for r in rendered.roles if r["kind"] == "user"
    }
    # who may request, who may approve; nobody holds the access role itself
    assert users == {
        "alice@example.com": ["iot-device-requester"],
        "bob@example.com": ["iot-device-approver"],
    }
    (access_role,) = [r for r in rendered.roles if r["metadata"]["name"] == "iot-device-access"]
    assert access_role["spec"]["allow"]["node_labels"] == {
        "site": ["berlin"],
        "thing-group": ["field-gateways"],
    }
    assert access_role["spec"]["options"]["max_session_ttl"] == "60m"


def test_gcp_manifests_cli_writes_the_teleport_files_and_names_the_grants(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump({"iot-remote-access": access_raw()}))
    result = run_cli(
        "gcp", "manifests", "--settings", str(settings_file), "--out", str(tmp_path / "out")
    )
    assert result.code == 0, result.stderr
    assert str(tmp_path / "out" / TELEPORT_VALUES_FILE) in result.stdout
    assert str(tmp_path / "out" / TELEPORT_RESOURCES_FILE) in result.stdout
    assert "roles/iam.workloadIdentityUser" in result.stderr
    assert "my-fleet-project.svc.id.goog[teleport/teleport]" in result.stderr


def test_gcp_manifests_refuses_bad_access_settings_with_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    settings_file = tmp_path / "settings.yaml"
    raw = access_raw(maxLifetimeMinutes=721)
    settings_file.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    result = run_cli(
        "gcp", "manifests", "--settings", str(settings_file), "--out", str(tmp_path / "out")
    )
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gcp.accessProxy" in lines[0] and "721" in lines[0], lines
    assert not (tmp_path / "out").exists()


HELM_OUTPUT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: teleport-auth, namespace: teleport}
spec:
  selector: {matchLabels: {app: auth}}
  template:
    metadata: {labels: {app: auth}}
    spec:
      initContainers: [{name: wait, image: "public.ecr.aws/gravitational/teleport-distroless:15.3.1"}]
      containers: [{name: teleport, image: "public.ecr.aws/gravitational/teleport-distroless:15.3.1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: teleport-auth-hook, namespace: teleport}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: check, image: "public.ecr.aws/gravitational/teleport-distroless:15.3.1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: teleport}
spec:
  containers: [{name: other, image: "registry.example.com/other:1.0"}]
"""


def test_the_post_renderer_pins_every_teleport_container_to_the_digest(rendered: Rendered) -> None:
    """Helm's manifests (a sample of the chart's kinds) through the written post-renderer:
    real kustomize (kubectl kustomize) sets the digest; other images stay as they are."""
    script = rendered.files[-1]
    assert script.name == "post-render" and script.stat().st_mode & 0o111
    result = subprocess.run(
        [str(script)], input=HELM_OUTPUT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    images = [
        container["image"]
        for document in yaml.safe_load_all(result.stdout)
        for spec in [document["spec"].get("template", {}).get("spec", document["spec"])]
        for container in [*spec.get("initContainers", []), *spec["containers"]]
    ]
    pinned = f"public.ecr.aws/gravitational/teleport-distroless@{DIGEST}"
    assert sorted(images) == sorted([pinned, pinned, pinned, "registry.example.com/other:1.0"])


def test_teleport_in_the_brokers_namespace_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    settings_file = tmp_path / "settings.yaml"
    raw = access_raw(namespace="iot")
    settings_file.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    out = tmp_path / "out"
    result = run_cli("gcp", "manifests", "--settings", str(settings_file), "--out", str(out))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {settings_file}: gcp.accessProxy.namespace: 'iot' is hivemq.namespace too; "
        "allowed: a namespace of its own"
    ]
    assert not list(out.rglob("*.yaml"))
