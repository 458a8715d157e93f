"""The certificate signer under hostile CSR events (issue 14, defect 2), against moto.

moto's IssueCertificate ignores ApiPassthrough (see tests/test_cert_rotation_moto.py),
so what reaches the CA is checked on the recorded request: the CSR bytes forwarded
are the ones inspected, with no subjectAltName for the template to copy.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.lambdas.cert_signer import handler as signer_handler
from iot_remote_access.lambdas.certs import runtime as runtime_module
from tests.support.tunneling_stub import Utf8Stream
from tests.test_cert_handlers import LambdaContextStandIn, deployed  # noqa: F401 - fixture
from tests.test_cert_rotation_moto import T0, Device, Fleet, fleet  # noqa: F401 - fixture


def _csr_with_san(device: Device, *names: x509.GeneralName) -> str:
    device.key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device.thing)]))
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .sign(device.key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def _nothing_issued(fleet: Fleet, device: Device) -> None:  # noqa: F811
    assert fleet.issue_requests == []
    assert len(fleet.iot.list_certificates()["certificates"]) == 2  # the two enrolled ones
    assert fleet.state(device.thing)["rotationState"] == RotationState.REQUESTED
    assert fleet.status(device.certificate_id) == "ACTIVE"


@pytest.mark.parametrize(
    "san",
    [
        x509.DNSName("sensor-2"),
        x509.UniformResourceIdentifier("urn:aws:iot:thing:sensor-2"),
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-2")])),
    ],
    ids=["dns", "uri", "directory-name"],
)
def test_a_csr_naming_another_thing_in_its_san_is_refused(
    fleet: Fleet,  # noqa: F811
    san: x509.GeneralName,
) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.add_device("sensor-2", expires_in_days=400)
    fleet.request_rotation(device)
    outcome = fleet.runtime.rotation.sign(device.csr_event(_csr_with_san(device, san)), T0)
    assert outcome.status == 400
    assert outcome.body["reason"].startswith("csr: requests the extension subjectAltName")
    _nothing_issued(fleet, device)
    (reply,) = fleet.published("rot/sensor-1/certificate")
    assert reply["status"] == "rejected"


@pytest.mark.parametrize("principal", [None, "", 0, ["id"], {"id": 1}], ids=repr)
def test_a_missing_principal_is_refused_not_skipped(
    fleet: Fleet,  # noqa: F811
    principal: Any,
) -> None:
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.add_device("sensor-2", expires_in_days=400)
    fleet.request_rotation(device)
    event = device.csr_event(device.csr())
    if principal is None:
        del event["principal"]
    else:
        event["principal"] = principal
    outcome = fleet.runtime.rotation.sign(event, T0)
    assert outcome.status == 400
    assert outcome.body["reason"].startswith("principal: ")
    assert (
        "allowed: the certificate id the IoT rule passes as principal()" in outcome.body["reason"]
    )
    _nothing_issued(fleet, device)


def test_the_ca_gets_exactly_the_inspected_csr_without_a_san(fleet: Fleet) -> None:  # noqa: F811
    device = fleet.add_device("sensor-1", expires_in_days=40)
    fleet.request_rotation(device)
    outcome = fleet.runtime.rotation.sign(device.csr_event(device.csr()), T0)
    assert outcome.status == 200, outcome.body
    (request,) = fleet.issue_requests
    forwarded = x509.load_pem_x509_csr(request["Csr"])
    assert list(forwarded.extensions) == []
    assert request["ApiPassthrough"] == {"Subject": {"CommonName": "sensor-1"}}


def test_the_signer_handler_writes_an_audit_record_for_a_refusal(
    deployed: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device: Device = deployed["device"]
    event = device.csr_event(device.csr())
    del event["principal"]
    stream = Utf8Stream()
    handler = signer_handler.logger.registered_handler
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        response = signer_handler.handler(event, LambdaContextStandIn())
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert response["statusCode"] == 400
    records = [json.loads(line) for line in stream.getvalue().splitlines() if '"audit"' in line]
    (record,) = records
    assert record["audit"]["decision"] == "refused"
    assert record["audit"]["thing"] == "sensor-1"
    assert record["audit"]["principal"] == "None"
    assert record["audit"]["reason"].startswith("principal: ")
    assert runtime_module.runtime().inventory.get("sensor-1") is not None
    assert isinstance(stream, io.TextIOWrapper)
