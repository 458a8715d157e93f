"""Azure plan/deploy with the real Azure SDKs against the local ARM stand-in.

No public Azure emulator exists: every test here talks HTTPS to
``tests.support.azure_arm_standin.ArmStandIn`` (a stand-in, not Azure) and asserts
what the SDK really sent. The credential is ``FakeCredential`` (a fake).
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iot_remote_access.arm import deployment
from iot_remote_access.arm.deployment import Action
from iot_remote_access.arm.errors import ArmInputError, ArmOperationError
from iot_remote_access.arm.proof_of_possession import load_ca_key
from iot_remote_access.core.tree import Root
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.azure_stack import AzureStack
from tests.support.azure_arm_standin import ArmStandIn
from tests.support.azure_helpers import (
    ACTION_GROUP,
    DPS_ID,
    GROUP,
    HUB_ID,
    SUBSCRIPTION,
    WORKSPACE,
    FleetCa,
    azure_section,
    context_for,
    make_ca,
    resource_group,
)

ROUTE = "topic = CONCAT('dt/', $connectionDeviceId, '/telemetry')"
EXPECTED_HUB_BODY = {
    "location": "northeurope",
    "tags": {"managed-by": "iot-remote-access"},
    "sku": {"name": "S1", "capacity": 1},
    "properties": {
        "authorizationPolicies": [],
        "disableLocalAuth": True,
        "disableDeviceSAS": True,
        "disableModuleSAS": True,
        "minTlsVersion": "1.2",
        "publicNetworkAccess": "Enabled",
        "ipFilterRules": [{"filterName": "office", "action": "Accept", "ipMask": "203.0.113.0/24"}],
        "eventHubEndpoints": {"events": {"retentionTimeInDays": 1, "partitionCount": 4}},
        "routing": {
            "routes": [
                {
                    "name": "telemetry",
                    "source": "DeviceMessages",
                    "condition": ROUTE,
                    "endpointNames": ["events"],
                    "isEnabled": True,
                }
            ],
            "fallbackRoute": {
                "name": "$fallback",
                "source": "DeviceMessages",
                "condition": "true",
                "endpointNames": ["events"],
                "isEnabled": False,
            },
        },
    },
}


@pytest.fixture
def standin(tmp_path: Path) -> Any:
    with ArmStandIn(tmp_path) as server:
        server.add_resource_group(SUBSCRIPTION, GROUP)
        yield server


@pytest.fixture
def ca(tmp_path: Path) -> FleetCa:
    return make_ca(tmp_path / "ca")


def stack(section: dict[str, Any], **fleet: Any) -> AzureStack:
    settings = FleetSettings.parse({**fleet, "azure": section})
    return AzureStack(Root("azure"), "Fleet", settings=settings, resource_group=resource_group())


def test_hub_put_body_is_x509_only_tls12_without_sas_policies_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca, deviceStreams=False)), ctx)

    (put,) = [
        r
        for r in standin.find("PUT", "/IotHubs/fleet-hub")
        if r.path.lower().endswith("/fleet-hub")
    ]
    assert put.body == EXPECTED_HUB_BODY
    assert put.api_version == "2023-06-30"
    assert "if-match" not in put.headers  # a new hub: no ETag
    hub = standin.resource(HUB_ID)
    assert hub is not None and hub["properties"]["authorizationPolicies"] == []
    # Nothing ever asked for keys: no iothubowner (or any SAS policy) use.
    assert not [r for r in standin.requests if "listkeys" in r.path.lower()]
    assert "iothubowner" not in str([r.body for r in standin.requests])


def test_dps_uses_managed_identity_link_after_role_assignment_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca)), ctx)

    dps_puts = [r for r in standin.find("PUT", DPS_ID) if r.path.lower() == DPS_ID.lower()]
    assert len(dps_puts) == 2  # created, then linked once its identity holds the role
    create, link = dps_puts
    assert create.body == {
        "location": "northeurope",
        "tags": {"managed-by": "iot-remote-access"},
        "sku": {"name": "S1", "capacity": 1},
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "allocationPolicy": "Hashed",
            "disableLocalAuth": True,
            "authorizationPolicies": [],
        },
    }
    (role,) = standin.find("PUT", "/roleAssignments/")
    assert standin.requests.index(role) < standin.requests.index(link)
    principal = standin.resource(DPS_ID)["identity"]["principalId"]  # type: ignore[index]
    assert role.body == {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/"
            "roleDefinitions/4fc6c259-987e-4a07-842e-c321cc9d413f",
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }
    assert role.path.lower().startswith(HUB_ID.lower() + "/providers/microsoft.authorization/")
    (hub_link,) = link.body["properties"]["iotHubs"]
    assert hub_link == {
        "hostName": "fleet-hub.azure-devices.net",
        "location": "northeurope",
        "authenticationType": "SystemAssigned",
        "applyAllocationPolicy": True,
        "allocationWeight": 1,
    }
    assert "connectionString" not in str(link.body)


def test_second_deploy_reports_no_changes_and_sends_no_writes_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    first = deployment.deploy(stack(azure_section(ca)), ctx)
    assert first.writes == 9
    before = len(standin.requests)

    again = deployment.deploy(stack(azure_section(ca)), ctx)
    assert again.writes == 0
    assert again.summary() == "No changes: all 9 resources are up to date."
    assert standin.writes(since=before) == []
    assert {r.method for r in standin.requests[before:]} == {"GET"}
    result = deployment.plan(stack(azure_section(ca)), ctx)
    assert [r.action for r in result.resources] == [Action.NONE] * 9


def _proof_sequence(standin: ArmStandIn, certificate_path: str) -> list[Any]:
    return [
        r
        for r in standin.requests
        if certificate_path.lower() in r.path.lower() and r.method != "GET"
    ]


@pytest.mark.parametrize("parent", [HUB_ID, DPS_ID], ids=["iot-hub", "dps"])
def test_proof_of_possession_sequence_standin(
    standin: ArmStandIn, ca: FleetCa, parent: str
) -> None:
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca)), ctx)

    certificate_path = f"{parent}/certificates/fleet-ca"
    upload, generate, verify = _proof_sequence(standin, certificate_path)
    assert (upload.method, generate.method, verify.method) == ("PUT", "POST", "POST")
    assert generate.path.endswith("/generateVerificationCode")
    assert verify.path.endswith("/verify")
    # Each step names the ETag the previous step returned.
    assert "if-match" not in upload.headers
    assert generate.headers["if-match"] and verify.headers["if-match"]
    assert generate.headers["if-match"] != verify.headers["if-match"]
    # The verification certificate: CN = the code Azure issued, signed by the CA key.
    proof = x509.load_pem_x509_certificate(verify.body["certificate"].encode())
    proof.verify_directly_issued_by(ca.certificate)
    cn = proof.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == generate.response["properties"]["verificationCode"]
    live = standin.resource(certificate_path)
    assert live is not None and live["properties"]["isVerified"] is True
    assert (
        live["properties"]["thumbprint"] == ca.certificate.fingerprint(hashes.SHA1()).hex().upper()
    )


def test_hub_certificate_upload_is_the_public_pem_and_dps_gets_der_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca)), ctx)
    (hub_upload,) = standin.find("PUT", f"{HUB_ID}/certificates/fleet-ca")
    assert hub_upload.body == {"properties": {"certificate": ca.certificate_file.read_text()}}
    (dps_upload,) = standin.find("PUT", f"{DPS_ID}/certificates/fleet-ca")
    assert dps_upload.body == {
        "properties": {
            "certificate": base64.b64encode(
                ca.certificate.public_bytes(serialization.Encoding.DER)
            ).decode()
        }
    }


def test_unverified_certificate_left_by_a_failed_proof_is_verified_on_rerun_standin(
    standin: ArmStandIn, ca: FleetCa, tmp_path: Path
) -> None:
    section = azure_section(
        ca, provisioning=None, logAnalyticsWorkspaceId=None, deviceStreams=False
    )
    ctx, _ = context_for(standin, ca, retry_total=0)
    standin.throttle("POST", "/verify", times=1, retry_after=0)
    with pytest.raises(
        ArmOperationError, match=r"IoT hub CA certificate fleet-ca: Azure error TooManyRequests"
    ):
        deployment.deploy(stack(section), ctx)
    live = standin.resource(f"{HUB_ID}/certificates/fleet-ca")
    assert live is not None and live["properties"]["isVerified"] is False

    result = deployment.plan(stack(section), ctx)
    (cert_step,) = [r for r in result.resources if r.resource.kind == "IoT hub CA certificate"]
    assert cert_step.action is Action.UPDATE and cert_step.proves_possession
    assert [str(c) for c in cert_step.changes] == ["~ properties.isVerified: false -> true"]
    before = len(standin.requests)
    deployment.deploy(stack(section), ctx)
    assert [r.path.rsplit("/", 1)[1] for r in standin.writes(before)] == [
        "generateVerificationCode",
        "verify",
    ]
    assert standin.resource(f"{HUB_ID}/certificates/fleet-ca")["properties"]["isVerified"] is True  # type: ignore[index]


def test_deploy_without_ca_key_stops_before_any_write_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin)  # no key
    with pytest.raises(
        ArmInputError,
        match=r"IoT hub CA certificate fleet-ca, DPS CA certificate fleet-ca: "
        r"proof of possession of the CA key is due; pass --ca-key-file",
    ):
        deployment.deploy(stack(azure_section(ca)), ctx)
    assert standin.writes() == []


def test_device_streams_hub_is_managed_with_the_preview_api_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    azure_stack = stack(azure_section(ca))
    deployment.deploy(azure_stack, ctx)
    hub_requests = [  # the hub and its certificates; not extension resources on it
        r
        for r in standin.requests
        if r.path.lower().startswith(HUB_ID.lower())
        and "/providers/" not in r.path[len(HUB_ID) :].lower()
    ]
    assert hub_requests and {r.api_version for r in hub_requests} == {"2023-06-30-preview"}
    (put,) = [
        r for r in hub_requests if r.method == "PUT" and r.path.lower().endswith("/fleet-hub")
    ]
    assert put.body == EXPECTED_HUB_BODY  # same secure body; streams have no switch in ARM
    assert azure_stack.device_streams is not None
    assert azure_stack.device_streams.streaming_endpoints == [
        "https://northeurope.streams.azure-devices.net"
    ]
    notes = deployment.plan(stack(azure_section(ca)), ctx).resources[0].notes
    assert notes == [
        "Device Streams (preview) endpoints: https://northeurope.streams.azure-devices.net"
    ]


def test_diagnostic_settings_and_stream_alert_bodies_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca, maxStreamsPerDevicePerDay=5)), ctx)

    (hub_diag,) = standin.find("PUT", f"{HUB_ID}/providers/Microsoft.Insights/diagnosticSettings/")
    assert hub_diag.api_version == "2021-05-01-preview"
    assert hub_diag.body == {
        "properties": {
            "workspaceId": WORKSPACE,
            "logs": [
                {"category": c, "enabled": True}
                for c in (
                    "Connections",
                    "DeviceTelemetry",
                    "C2DCommands",
                    "DeviceIdentityOperations",
                    "Routes",
                    "DirectMethods",
                    "DeviceStreams",
                )
            ],
            "metrics": [{"category": "AllMetrics", "enabled": True}],
        }
    }
    (dps_diag,) = standin.find("PUT", f"{DPS_ID}/providers/Microsoft.Insights/diagnosticSettings/")
    assert [log["category"] for log in dps_diag.body["properties"]["logs"]] == [
        "DeviceOperations",
        "ServiceOperations",
    ]

    (rule,) = standin.find("PUT", "/scheduledQueryRules/fleet-hub-device-streams-per-device")
    assert rule.api_version == "2023-12-01"
    props = rule.body["properties"]
    assert props["scopes"] == [WORKSPACE]
    assert (props["windowSize"], props["evaluationFrequency"]) == ("P1D", "PT1H")
    assert props["actions"] == {"actionGroups": [ACTION_GROUP]}
    (condition,) = props["criteria"]["allOf"]
    assert condition["operator"] == "GreaterThan" and condition["threshold"] == 5.0
    assert (
        condition["timeAggregation"] == "Total"
        and condition["metricMeasureColumn"] == "streamsOpened"
    )
    assert condition["dimensions"] == [{"name": "deviceId", "operator": "Include", "values": ["*"]}]
    assert 'Category == "DeviceStreams"' in condition["query"]
    assert f'_ResourceId =~ "{HUB_ID}"' in condition["query"]


def test_throttled_request_is_retried_after_retry_after_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    standin.throttle("GET", "/IotHubs/fleet-hub", times=1, retry_after=1)
    ctx, _ = context_for(standin, ca)
    started = time.monotonic()
    report = deployment.deploy(stack(azure_section(ca, deviceStreams=False)), ctx)
    assert report.writes > 0
    first_two = [
        r
        for r in standin.requests
        if r.method == "GET" and r.path.lower().endswith("/iothubs/fleet-hub")
    ][:2]
    assert [r.status for r in first_two] == [429, 404]
    assert time.monotonic() - started >= 1.0  # waited for Retry-After


def test_persistent_throttling_is_one_line_naming_resource_and_code_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    standin.throttle("GET", "/IotHubs/fleet-hub", times=50, retry_after=0)
    ctx, _ = context_for(standin, ca, retry_total=2)
    with pytest.raises(ArmOperationError) as raised:
        deployment.plan(stack(azure_section(ca)), ctx)
    message = str(raised.value)
    assert message.startswith("IoT hub fleet-hub: Azure error TooManyRequests, HTTP 429: ")
    assert "\n" not in message
    assert len([r for r in standin.requests if r.status == 429]) == 3  # first try + 2 retries


def test_failed_long_running_operation_then_rerun_converges_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    standin.fail_next_operation(
        "/iothubs/fleet-hub", code="InternalServerError", message="Hub provisioning failed"
    )
    ctx, _ = context_for(standin, ca)
    with pytest.raises(
        ArmOperationError, match=r"^IoT hub fleet-hub: Azure error InternalServerError"
    ):
        deployment.deploy(stack(azure_section(ca)), ctx)
    # Stopped at the failure: nothing after the hub was touched.
    assert [r.path.rsplit("/", 1)[1] for r in standin.writes()] == ["fleet-hub"]
    half = standin.resource(HUB_ID)
    assert half is not None and half["properties"]["provisioningState"] == "Failed"
    assert "disableLocalAuth" not in half["properties"]

    result = deployment.plan(stack(azure_section(ca)), ctx)
    hub_step = result.resources[0]
    assert hub_step.action is Action.UPDATE
    assert str(hub_step.changes[0]) == '~ properties.provisioningState: "Failed" -> "Succeeded"'
    assert "+ properties.disableLocalAuth: true" in [str(c) for c in hub_step.changes]

    before = len(standin.requests)
    deployment.deploy(stack(azure_section(ca)), ctx)
    retry = standin.writes(before)[0]
    assert retry.method == "PUT" and retry.path.lower().endswith("/iothubs/fleet-hub")
    assert retry.headers["if-match"] == half["etag"]  # IoT Hub needs the ETag to update
    for key, value in EXPECTED_HUB_BODY["properties"].items():  # type: ignore[attr-defined]
        assert retry.body["properties"][key] == value
    hub = standin.resource(HUB_ID)
    assert hub is not None and hub["properties"]["provisioningState"] == "Succeeded"
    assert hub["properties"]["disableLocalAuth"] is True

    before = len(standin.requests)
    assert deployment.deploy(stack(azure_section(ca)), ctx).writes == 0
    assert standin.writes(before) == []


def test_tag_only_change_is_a_patch_not_a_hub_update_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    section = azure_section(
        ca, provisioning=None, logAnalyticsWorkspaceId=None, deviceStreams=False
    )
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(section), ctx)
    before = len(standin.requests)
    deployment.deploy(stack({**section, "tags": {"cost-center": "42"}}), ctx)
    (patch,) = standin.writes(before)
    assert patch.method == "PATCH"
    assert patch.body == {"tags": {"managed-by": "iot-remote-access", "cost-center": "42"}}


def test_changed_setting_is_a_field_level_update_with_etag_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    section = azure_section(
        ca, provisioning=None, logAnalyticsWorkspaceId=None, deviceStreams=False
    )
    ctx, _ = context_for(standin, ca)
    deployment.deploy(stack(section), ctx)
    changed = {
        **section,
        "iotHub": {**section["iotHub"], "units": 2, "publicNetworkAccess": "Disabled"},
    }
    result = deployment.plan(stack(changed), ctx)
    assert [str(c) for c in result.resources[0].changes] == [
        '~ properties.publicNetworkAccess: "Enabled" -> "Disabled"',
        "~ sku.capacity: 1 -> 2",
    ]
    etag = standin.resource(HUB_ID)["etag"]  # type: ignore[index]
    before = len(standin.requests)
    deployment.deploy(stack(changed), ctx)
    (put,) = standin.writes(before)
    assert put.headers["if-match"] == etag
    assert put.body["sku"] == {"name": "S1", "capacity": 2}
    # Live fields that are not ours survive the full PUT (ARM would reset them otherwise).
    assert put.body["properties"]["eventHubEndpoints"]["events"]["partitionCount"] == 4


def test_missing_resource_group_is_an_error_not_an_absent_resource_standin(
    standin: ArmStandIn, ca: FleetCa
) -> None:
    ctx, _ = context_for(standin, ca)
    other = AzureStack(
        Root("azure"),
        "Fleet",
        settings=FleetSettings.parse({"azure": azure_section(ca)}),
        resource_group=type(resource_group())(SUBSCRIPTION, "no-such-group"),
    )
    with pytest.raises(
        ArmOperationError, match=r"^IoT hub fleet-hub: Azure error ResourceGroupNotFound, HTTP 404"
    ):
        deployment.plan(other, ctx)


def test_ca_key_never_reaches_requests_logs_or_errors_standin(
    standin: ArmStandIn, ca: FleetCa, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx, progress = context_for(standin, ca)
    deployment.deploy(stack(azure_section(ca)), ctx)
    # The secret part only: a PKCS#8 EC key also carries a common header and the
    # public point, which the (public) certificate legitimately contains.
    key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    key_body = "".join(ca.key_pem.splitlines()[1:-1])
    fragments = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        key_body[52:84],
        "PRIVATE KEY",
    ]
    seen = [str(r.body) + str(r.headers) + r.path for r in standin.requests]
    texts = [*seen, caplog.text, progress.getvalue(), repr(ctx.ca_key), str(ctx.ca_key)]
    for fragment in fragments:
        assert not any(fragment in text for text in texts), fragment
    # A key that does not belong to the CA is refused without echoing either.
    other = make_ca(tmp_path / "other", "Other CA")
    with pytest.raises(
        ArmInputError, match=r"--ca-key-file: the key in .* does not belong to the CA certificate"
    ) as raised:
        load_ca_key(other.key_file, certificate=ca.certificate)
    assert "PRIVATE" not in str(raised.value) and other.key_pem[40:80] not in str(raised.value)


def test_progress_on_a_terminal_shows_a_live_status_standin(standin: ArmStandIn) -> None:
    """On a terminal the long-running operation gets a rich status line, then a done line."""
    import io

    from rich.console import Console

    from iot_remote_access.arm.progress import ConsoleProgress

    ctx, _ = context_for(standin)
    screen = io.StringIO()
    ctx.progress = ConsoleProgress(Console(file=screen, force_terminal=True, width=120))
    section = azure_section(
        None, provisioning=None, logAnalyticsWorkspaceId=None, deviceStreams=False
    )
    deployment.deploy(stack(section), ctx)
    assert "creating IoT hub fleet-hub: done in" in screen.getvalue()


@pytest.mark.parametrize("content_type", ["application/x-pem-file", "application/x-pkcs12"])
def test_ca_key_from_key_vault_secret_proves_possession_standin(
    standin: ArmStandIn, ca: FleetCa, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The key as a Key Vault secret: PEM, or the PKCS#12 a Key Vault certificate exposes."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    from iot_remote_access.arm.key_vault import read_ca_key_secret
    from tests.support.azure_helpers import FakeCredential

    caplog.set_level(logging.DEBUG)
    key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if content_type == "application/x-pkcs12":
        bundle = pkcs12.serialize_key_and_certificates(
            b"fleet-ca", key, ca.certificate, None, serialization.NoEncryption()
        )
        value = base64.b64encode(bundle).decode()
    else:
        value = ca.key_pem
    secret_id = standin.add_secret("fleet-ca-key", value, content_type)

    ca_key = read_ca_key_secret(
        secret_id,
        credential=FakeCredential(),
        certificate=ca.certificate,
        connection_verify=str(standin.ca_bundle),
        verify_challenge_resource=False,  # the stand-in's address is not *.vault.azure.net
    )
    # Key Vault's challenge flow: unauthenticated first, then with the bearer token.
    assert [r.status for r in standin.find("GET", "/secrets/fleet-ca-key")] == [401, 200]
    ctx, _ = context_for(standin)
    ctx.ca_key = ca_key
    section = azure_section(
        ca, provisioning=None, logAnalyticsWorkspaceId=None, deviceStreams=False
    )
    deployment.deploy(stack(section), ctx)
    verified = standin.resource(f"{HUB_ID}/certificates/fleet-ca")
    assert verified is not None and verified["properties"]["isVerified"] is True
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    assert base64.b64encode(secret).decode() not in caplog.text and value[60:100] not in caplog.text


def test_key_vault_errors_name_the_secret_standin(standin: ArmStandIn, ca: FleetCa) -> None:
    from iot_remote_access.arm.key_vault import read_ca_key_secret
    from tests.support.azure_helpers import FakeCredential

    common = {
        "credential": FakeCredential(),
        "certificate": ca.certificate,
        "connection_verify": str(standin.ca_bundle),
        "verify_challenge_resource": False,
    }
    with pytest.raises(
        ArmOperationError, match=r"^Key Vault secret nope: Azure error SecretNotFound, HTTP 404"
    ):
        read_ca_key_secret(f"{standin.endpoint}/secrets/nope", **common)  # type: ignore[arg-type]
    with pytest.raises(
        ArmInputError, match=r"^--ca-key-secret: 'https://vault' is not a Key Vault"
    ):
        read_ca_key_secret("https://vault", **common)  # type: ignore[arg-type]
    standin.add_secret("not-a-key", "hello")
    with pytest.raises(
        ArmInputError, match=r"--ca-key-secret: '.*/secrets/not-a-key' is not a PEM"
    ):
        read_ca_key_secret(f"{standin.endpoint}/secrets/not-a-key", **common)  # type: ignore[arg-type]
