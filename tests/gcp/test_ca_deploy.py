"""``gcp plan|deploy`` with ``gcp.certificateAuthority``: the CA pool and root CA.

CA Service has no emulator: the real SDK client talks gRPC to a STAND-IN on a loopback
port (tests/support/ca_service_standin.py), which decodes the requests with the SDK's
own types. The joined test runs the real console script in a subprocess with the real
Pub/Sub emulator for the topology and the stand-in for CA Service.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud.security.privateca_v1 import types as ca

from iot_remote_access.gcp_ca.clients import make_client
from iot_remote_access.gcp_ca.deploy import CaDeployBlocked, deploy
from iot_remote_access.gcp_ca.desired import desired_state
from iot_remote_access.gcp_ca.plan import Action, Kind, plan
from iot_remote_access.settings import FleetSettings
from tests.support.ca_service_standin import CaServiceStandIn
from tests.support.cli_runner import run_cli
from tests.support.no_node import CONSOLE_SCRIPT
from tests.support.processes import PubsubEmulator

PROJECT = "my-fleet-project"
POOL = f"projects/{PROJECT}/locations/europe-west1/caPools/iot-devices"
CA = f"{POOL}/certificateAuthorities/iot-devices-root-1"
WRITES = ("Create", "Update", "Enable", "Set")
ROTATION = f"serviceAccount:iot-rotation@{PROJECT}.iam.gserviceaccount.com"
ROLE = "roles/privateca.certificateManager"


def raw_settings(project: str = PROJECT, **authority: Any) -> dict[str, Any]:
    return {
        "gcp": {
            "projectId": project,
            "projectNumber": "123456789012",
            "labels": {"team": "fleet"},
            "bridge": {"serviceAccount": f"iot-bridge@{PROJECT}.iam.gserviceaccount.com"},
            "certificateAuthority": {
                "location": "europe-west1",
                "issuerMembers": [ROTATION],
                **authority,
            },
        }
    }


def state_of(**authority: Any) -> Any:
    settings = FleetSettings.parse(raw_settings(**authority))
    assert settings.gcp is not None
    return desired_state(PROJECT, settings.gcp, settings.stagger_policy())


def writes(standin: CaServiceStandIn) -> list[str]:
    return [m for m in standin.methods_called() if m.startswith(WRITES)]


def test_deploy_creates_the_pool_and_an_enabled_ca_then_changes_nothing(
    ca_service: CaServiceStandIn,
) -> None:
    client = make_client(ca_service.host)
    first = plan(state_of(), client)
    assert [(c.kind, c.action) for c in first.changes] == [
        (Kind.POOL, Action.CREATE),
        (Kind.AUTHORITY, Action.CREATE),
        (Kind.IAM, Action.UPDATE),
    ]
    deploy(first, client)
    assert ca_service.methods_called() == [
        "GetCaPool",
        "GetCertificateAuthority",
        "CreateCaPool",
        "CreateCertificateAuthority",
        "EnableCertificateAuthority",
        "GetIamPolicy",
        "SetIamPolicy",
    ]
    granted = ca_service.requests[-1][1]
    assert granted.resource == POOL
    assert [(b.role, list(b.members)) for b in granted.policy.bindings] == [(ROLE, [ROTATION])]
    pool_request = ca_service.requests[2][1]
    assert (pool_request.parent, pool_request.ca_pool_id) == (
        f"projects/{PROJECT}/locations/europe-west1",
        "iot-devices",
    )
    pool = pool_request.ca_pool
    assert pool.tier == ca.CaPool.Tier.ENTERPRISE
    assert dict(pool.labels) == {"team": "fleet"}
    policy = pool.issuance_policy
    assert policy.maximum_lifetime == timedelta(days=454)  # 365 + 90 - 1: the longest stagger
    assert not policy.allowed_issuance_modes.allow_csr_based_issuance
    assert policy.allowed_issuance_modes.allow_config_based_issuance
    assert policy.identity_constraints.allow_subject_passthrough is True
    assert policy.identity_constraints.allow_subject_alt_names_passthrough is False
    assert "passthrough_extensions" in policy  # present and empty: nothing passes
    assert not policy.passthrough_extensions.known_extensions
    usage = policy.baseline_values.key_usage
    assert usage.base_key_usage == ca.KeyUsage.KeyUsageOptions(digital_signature=True)
    assert usage.extended_key_usage == ca.KeyUsage.ExtendedKeyUsageOptions(client_auth=True)
    assert policy.baseline_values.ca_options.is_ca is False
    assert [
        (k.rsa.min_modulus_size, k.rsa.max_modulus_size)
        if "rsa" in k
        else k.elliptic_curve.signature_algorithm.name
        for k in policy.allowed_key_types
    ] == [(2048, 4096), "ECDSA_P256", "ECDSA_P384"]
    assert pool.publishing_options.publish_crl and pool.publishing_options.publish_ca_cert
    authority_request = ca_service.requests[3][1]
    assert (authority_request.parent, authority_request.certificate_authority_id) == (
        POOL,
        "iot-devices-root-1",
    )
    root = authority_request.certificate_authority
    assert root.type_ == ca.CertificateAuthority.Type.SELF_SIGNED
    assert root.key_spec.algorithm == ca.CertificateAuthority.SignHashAlgorithm.EC_P256_SHA256
    assert root.lifetime == timedelta(days=3650)
    assert root.config.subject_config.subject.common_name == "iot-remote-access device CA"
    assert root.config.x509_config.ca_options.max_issuer_path_length == 0
    assert ca_service.requests[4][1].name == CA
    assert ca_service.authorities[CA].state == ca.CertificateAuthority.State.ENABLED

    again = plan(state_of(), client)
    assert [c.action for c in again.changes] == [Action.UNCHANGED] * 3
    assert deploy(again, client) == []
    assert writes(ca_service) == [
        "CreateCaPool",
        "CreateCertificateAuthority",
        "EnableCertificateAuthority",
        "SetIamPolicy",
    ]


def test_the_issuer_role_is_added_to_the_pools_policy_keeping_other_bindings(
    ca_service: CaServiceStandIn,
) -> None:
    client = make_client(ca_service.host)
    deploy(plan(state_of(issuerMembers=[]), client), client)
    live = client.get_iam_policy(request={"resource": POOL})
    live.bindings.add(role="roles/privateca.auditor", members=["group:sec@example.com"])
    client.set_iam_policy(request={"resource": POOL, "policy": live})
    result = plan(state_of(), client)
    assert [c.kind for c in result.pending] == [Kind.IAM]
    assert str(result.pending[0].differences[0]) == f'members: [] -> ["{ROTATION}"]'
    deploy(result, client)
    bindings = {b.role: list(b.members) for b in ca_service.iam_policies[POOL].bindings}
    assert bindings == {"roles/privateca.auditor": ["group:sec@example.com"], ROLE: [ROTATION]}


def test_a_changed_issuance_policy_is_updated_in_place(ca_service: CaServiceStandIn) -> None:
    client = make_client(ca_service.host)
    deploy(plan(state_of(), client), client)
    changed = plan(state_of(maximumCertificateLifetimeDays=500), client)
    pool_change = changed.changes[0]
    assert (pool_change.action, pool_change.fields) == (Action.UPDATE, ("issuance_policy",))
    assert "39225600s" in str(pool_change.differences[0])  # 454 days live
    deploy(changed, client)
    name, request = ca_service.requests[-1]
    assert name == "UpdateCaPool"
    assert list(request.update_mask.paths) == ["issuance_policy"]
    assert request.ca_pool.issuance_policy.maximum_lifetime == timedelta(days=500)
    assert plan(state_of(maximumCertificateLifetimeDays=500), client).pending == ()


def test_an_immutable_ca_change_blocks_the_deploy(ca_service: CaServiceStandIn) -> None:
    client = make_client(ca_service.host)
    deploy(plan(state_of(), client), client)
    before = len(writes(ca_service))
    blocked = plan(state_of(keyAlgorithm="EC_P384_SHA384"), client)
    assert [c.action for c in blocked.changes] == [
        Action.UNCHANGED,
        Action.BLOCKED,
        Action.UNCHANGED,
    ]
    assert blocked.changes[1].fields == ("key_spec",)
    with pytest.raises(CaDeployBlocked, match="set a new caId"):
        deploy(blocked, client)
    assert len(writes(ca_service)) == before  # nothing sent


def test_a_staged_ca_is_enabled(ca_service: CaServiceStandIn) -> None:
    client = make_client(ca_service.host)
    deploy(plan(state_of(), client), client)
    ca_service.authorities[CA].state = ca.CertificateAuthority.State.STAGED
    result = plan(state_of(), client)
    assert result.changes[1].action == Action.UPDATE
    assert str(result.changes[1].differences[0]) == 'state: "STAGED" -> "ENABLED"'
    deploy(result, client)
    assert ca_service.methods_called()[-1] == "EnableCertificateAuthority"


# -- settings errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "message"),
    [
        (
            {"location": "mars"},
            ".gcp.certificateAuthority.location: 'mars' is not a region; "
            "allowed: a Google Cloud region such as 'europe-west1'",
        ),
        (
            {"pool": "iot devices"},
            ".gcp.certificateAuthority.pool: 'iot devices' is not a CA Service "
            "id; allowed: 1-63 of a-z, A-Z, 0-9, '-' and '_'",
        ),
        (
            {"caId": "x" * 64},
            ".gcp.certificateAuthority.caId: 'xxxxxxxx",
        ),
        (
            {"tier": "DEVOPS"},
            ".gcp.certificateAuthority.tier: 'DEVOPS' is not allowed (that tier keeps no certificates and cannot revoke "
            "one, which every rotation ends with); allowed: 'ENTERPRISE'",
        ),
        (
            {"keyAlgorithm": "DSA_1024"},
            ".gcp.certificateAuthority.keyAlgorithm: 'DSA_1024' is not a CA "
            "Service key algorithm; allowed: EC_P256_SHA256, EC_P384_SHA384",
        ),
        (
            {"maximumCertificateLifetimeDays": 100},
            "gcp.certificateAuthority.maximumCertificateLifetimeDays: 100 is below the longest "
            "staggered validity 454 (certificates.baseValidityDays + staggerWindowDays - 1); "
            "allowed: at least 454",
        ),
        (
            {"caLifetimeDays": 400},
            "gcp.certificateAuthority.caLifetimeDays: 400 is not above the certificates' "
            "maximum lifetime 454; allowed: more than 454",
        ),
        (
            {"issuerMembers": ["allUsers"]},
            ".gcp.certificateAuthority.issuerMembers: 'allUsers' is not an IAM member; "
            "allowed: 'serviceAccount:EMAIL'",
        ),
        (
            {"caLifetimeDays": 20000},
            ".gcp.certificateAuthority.caLifetimeDays: 20000",
        ),
    ],
    ids=[
        "location",
        "pool",
        "ca-id",
        "devops",
        "key",
        "max-lifetime",
        "ca-lifetime",
        "30y",
        "member",
    ],
)
def test_settings_errors_name_the_field_the_value_and_what_is_allowed(
    tmp_path: Path, authority: dict[str, Any], message: str
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": raw_settings(**authority)}))
    result = run_cli("gcp", "plan", "--settings", str(path), "--ca-endpoint", "127.0.0.1:9")
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


# -- the console script, joined ------------------------------------------------------------


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT), *args]  # our own console script
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_gcp_plan_and_deploy_console_script_with_the_emulator_and_the_standin(
    emulator: PubsubEmulator, ca_service: CaServiceStandIn, tmp_path: Path
) -> None:
    project = f"ca-{os.getpid()}-{os.urandom(3).hex()}"
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": raw_settings(project)}))
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "NO_GCE_CHECK": "true",
        "PUBSUB_EMULATOR_HOST": emulator.host,
    }
    pool = f"projects/{project}/locations/europe-west1/caPools/iot-devices"
    ca_args = ["--settings", str(path), "--ca-endpoint", ca_service.host]
    planned = run(["gcp", "plan", *ca_args], env)
    assert planned.returncode == 0, planned.stderr
    assert f"+ create ca pool {pool}\n" in planned.stdout
    assert (
        f"+ create certificate authority {pool}/certificateAuthorities/iot-devices-root-1 "
        "(created STAGED, then enabled)" in planned.stdout
    )
    assert "ca service: 3 to change, 0 unchanged" in planned.stdout
    assert f"~ update iam policy {pool} {ROLE}" in planned.stdout

    ca_service.deny = "CreateCertificateAuthority"  # a refused call: one line, exit 1
    refused = run(["gcp", "deploy", *ca_args], env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: CA Service refused to create certificate authority {pool}/"
        "certificateAuthorities/iot-devices-root-1: PERMISSION_DENIED stand-in denies "
        "CreateCertificateAuthority"
    ], refused.stderr
    ca_service.deny = None

    deployed = run(["gcp", "deploy", *ca_args], env)  # converges: only the CA is missing
    assert deployed.returncode == 0, deployed.stderr
    assert "ca service: 1 created, 1 updated, 1 unchanged" in deployed.stdout
    second = run(["gcp", "deploy", *ca_args], env)
    assert second.returncode == 0, second.stderr
    assert "ca service: 0 created, 0 updated, 3 unchanged" in second.stdout
    assert [m for m in ca_service.methods_called() if m.startswith(WRITES)] == [
        "CreateCaPool",
        "CreateCertificateAuthority",  # denied
        "CreateCertificateAuthority",
        "EnableCertificateAuthority",
        "SetIamPolicy",
    ]
    assert ca_service.methods_called().count("GetCaPool") == 4  # one read per run, no more

    # A blocked CA change refuses the whole deploy before Pub/Sub is touched either.
    changed = raw_settings(project, keyAlgorithm="EC_P384_SHA384")
    changed["gcp"]["labels"] = {"team": "fleet-2"}
    path.write_text(yaml.safe_dump({"iot-remote-access": changed}))
    blocked = run(["gcp", "deploy", *ca_args], env)
    assert blocked.returncode == 2
    assert blocked.stderr.startswith("error: nothing deployed to CA Service: ")
    assert len(blocked.stderr.strip().splitlines()) == 1
    replanned = run(["gcp", "plan", *ca_args], env)
    assert "~ update" in replanned.stdout.split("ca service")[0]  # the label change still pending
