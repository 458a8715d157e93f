"""Certificate rotation on Azure against the IoT Hub service STAND-IN (twins + direct methods).

The real code (``arm/rotation_service.py``, ``arm/twin_inventory.py``, ``arm/ca_issuer.py``)
talks HTTPS through the azure-core pipeline with a bearer token to
``tests/support/iot_hub_service_standin.py``; each test asserts the exact requests the hub
received. The enrollment group's CA is a key on disk loaded by the real loader.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iot_remote_access.arm.ca_issuer import EnrollmentGroupCaIssuer
from iot_remote_access.arm.direct_methods import DirectMethodClient
from iot_remote_access.arm.hub_service import TwinClient
from iot_remote_access.arm.proof_of_possession import load_ca_certificate, load_ca_key
from iot_remote_access.arm.rotation_service import AzureRotationService
from iot_remote_access.arm.twin_inventory import TwinInventory, stamp
from iot_remote_access.core.rotation_plan import RotationSettings
from iot_remote_access.core.stagger import StaggerPolicy, balanced_bound
from tests.support.azure_rotation import (
    Credential,
    DeviceStandIn,
    GroupCa,
    certificate_tags,
    make_group_ca,
)
from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.pki import TestCa
from tests.test_csr_policy import HOSTILE

# Half past an hour, in the past: certificates issued "now" are valid on the real clock.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3, minutes=30)
THING = "sensor-1"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[IotHubServiceStandIn]:
    with IotHubServiceStandIn(TestCa(tmp_path / "tls")) as standin:
        yield standin


@pytest.fixture
def group_ca(tmp_path: Path) -> GroupCa:
    return make_group_ca(tmp_path / "group")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def service(
    hub: IotHubServiceStandIn,
    ca: GroupCa,
    *,
    clock: Clock | None = None,
    settings: RotationSettings | None = None,
) -> AzureRotationService:
    certificate = load_ca_certificate(ca.cert_file, field="caCertificate")
    credential = Credential()
    clock = clock or Clock(NOW)
    verify = str(hub.ca_file)
    return AzureRotationService(
        inventory=TwinInventory(TwinClient(hub.endpoint, credential, connection_verify=verify)),
        methods=DirectMethodClient(hub.endpoint, credential, connection_verify=verify),
        issuer=EnrollmentGroupCaIssuer(
            certificate, load_ca_key(ca.key_file, certificate=certificate), clock=clock
        ),
        policy=StaggerPolicy(base_days=365, window_days=90),
        settings=settings or RotationSettings(hourly_budget=5),
        clock=clock,
    )


def requests(hub: IotHubServiceStandIn) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path, r.body) for r in hub.requests]


def test_the_plan_reads_only_due_twins_a_page_at_a_time_within_budget_and_lead(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    for i in range(250):  # due within 90 days: 210 of them, one a day ...
        hub.register(f"dev-{i:03d}", certificate_tags(NOW + timedelta(days=1 + i * 0.4)))
    hub.register("not-enrolled")  # a device without certificate tags is not read
    plan = service(hub, group_ca).plan(NOW)

    assert [r.method for r in hub.requests] == ["POST"] * 3
    for index, request in enumerate(hub.requests):
        assert request.path == "/devices/query"
        assert request.query == {"api-version": "2021-04-12"}
        assert request.headers["Authorization"].startswith("Bearer ")
        assert request.headers["x-ms-max-item-count"] == "100"
        assert request.body == {
            "query": "SELECT * FROM devices WHERE tags.certificate.notAfter <= "
            f"'{stamp(NOW + timedelta(days=90))}'"
        }
        assert ("x-ms-continuation" in request.headers) is (index > 0)
    due = [f"dev-{i:03d}" for i in range(250) if 1 + i * 0.4 <= 90]
    assert sorted(s.thing for s in plan.slots) == due
    assert max(plan.per_hour().values()) == 5  # the hourly budget, no more
    assert min(s.hour for s in plan.slots) == NOW.replace(minute=0) + timedelta(hours=1)
    # Closest to expiry first; every slot starts before its certificate expires.
    assert all(s.hour < s.not_after for s in plan.slots)
    assert plan.slots[0].thing == "dev-000"
    assert plan.expiring_within[30] == len([i for i in range(250) if 1 + i * 0.4 <= 30])


def test_a_rotation_is_requested_issued_installed_confirmed_and_the_old_one_revoked(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    device = DeviceStandIn(hub, THING, group_ca.certificate)
    clock = Clock(NOW + timedelta(hours=1))
    rotation = service(hub, group_ca, clock=clock)

    report = rotation.run_once()
    assert report.requested == [THING] and report.issued == [THING], report
    [leaf] = device.installed
    serial = f"{leaf.serial_number:x}"
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == THING
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    )
    cohort, offset = (
        hub.twins[THING]["tags"]["certificate"][k] for k in ("placedCohort", "placedOffset")
    )
    assert cohort == clock.now.date().isoformat()
    lifetime = leaf.not_valid_after_utc - clock.now
    assert lifetime == timedelta(days=365 + offset)

    calls = requests(hub)
    assert [(m, p) for m, p, _ in calls] == [
        ("POST", "/devices/query"),  # the due twins: the plan and any confirmations
        ("GET", f"/twins/{THING}"),
        ("PATCH", f"/twins/{THING}"),  # REQUESTED
        ("POST", f"/twins/{THING}/methods"),  # requestCsr
        ("GET", f"/twins/{THING}"),
        ("PATCH", f"/twins/{THING}"),  # ISSUING
        ("POST", "/devices/query"),  # the day's stagger placements
        ("PATCH", f"/twins/{THING}"),  # ISSUED
        ("POST", f"/twins/{THING}/methods"),  # installCertificate
    ]
    patches = [r for r in hub.requests if r.method == "PATCH"]
    assert all(r.headers["If-Match"] for r in patches)
    assert patches[0].body["tags"]["certificate"] == {
        "state": "REQUESTED",
        "attempts": 1,
        "lastAttemptAt": stamp(clock.now),
        "lastError": None,
    }
    assert calls[3][2] == {
        "methodName": "requestCsr",
        "payload": {"thing": THING},
        "responseTimeoutInSeconds": 60,
        "connectTimeoutInSeconds": 0,
    }
    assert calls[6][2] == {
        "query": f"SELECT * FROM devices WHERE tags.certificate.placedCohort = '{cohort}'"
    }
    assert calls[8][2]["methodName"] == "installCertificate"
    assert calls[8][2]["payload"]["status"] == "issued"

    hub.requests.clear()
    clock.now += timedelta(minutes=10)
    second = rotation.run_once()
    assert second.confirmed == [THING]
    tags = hub.twins[THING]["tags"]["certificate"]
    assert tags["serial"] == serial and tags["previousSerial"] == "aa"
    assert tags["state"] == "IDLE" and tags["attempts"] == 0 and "pending" not in tags
    assert tags["notAfter"] == stamp(leaf.not_valid_after_utc)
    assert rotation.issuer.revoked == {"aa"}  # type: ignore[attr-defined]
    # Confirmed from the twins the query returned: one query, one conditional write.
    assert [(r.method, r.path) for r in hub.requests] == [
        ("POST", "/devices/query"),
        ("PATCH", f"/twins/{THING}"),
    ]
    assert hub.requests[1].headers["If-Match"]


def test_a_confirmation_after_the_attempt_timed_out_still_makes_the_new_one_current(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    DeviceStandIn(hub, THING, group_ca.certificate)
    reported = hub.twins[THING]["properties"]["reported"]
    clock = Clock(NOW + timedelta(hours=1))
    rotation = service(hub, group_ca, clock=clock)
    rotation.run_once()
    serial = reported.pop("certificateRotation")["serial"]  # the report is late ...
    clock.now += timedelta(hours=25)  # ... past attemptTimeoutHours (24), and the device
    del hub._connected[THING]  # is offline when the retry comes
    report = rotation.run_once()
    assert report.plan.timed_out == (THING,) and "404103" in report.failed[THING]
    assert hub.twins[THING]["tags"]["certificate"]["state"] == "FAILED"
    hub.report(THING, {"certificateRotation": {"serial": serial}})
    clock.now += timedelta(minutes=5)
    assert rotation.run_once().confirmed == [THING]
    tags = hub.twins[THING]["tags"]["certificate"]
    assert (tags["serial"], tags["state"]) == (serial, "IDLE")


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_csrs_are_refused_as_the_aws_signer_refuses_them(
    hub: IotHubServiceStandIn, group_ca: GroupCa, case: str
) -> None:
    pem, status, reason = HOSTILE[case]
    hub.register(THING, certificate_tags(NOW + timedelta(days=20)))
    device = DeviceStandIn(hub, THING, group_ca.certificate, csr_override=pem)
    report = service(hub, group_ca, clock=Clock(NOW + timedelta(hours=1))).run_once()

    assert report.refused[THING].startswith(reason), report.refused
    assert device.messages == [{"status": "rejected", "reason": report.refused[THING]}]
    assert device.installed == []
    tags = hub.twins[THING]["tags"]["certificate"]
    assert tags["state"] == ("FAILED" if status in (400, 403) else "REQUESTED")
    assert tags["lastError"] == report.refused[THING][:200]
    assert "pending" not in tags and "placedCohort" not in tags  # nothing was issued


def test_a_csr_sent_again_after_issuance_gets_the_same_certificate_even_after_a_restart(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20)))
    device = DeviceStandIn(hub, THING, group_ca.certificate)
    clock = Clock(NOW + timedelta(hours=1))
    service(hub, group_ca, clock=clock).run_once()
    first = device.messages[-1]["certificatePem"]

    restarted = service(hub, group_ca, clock=clock)  # a new process, a new issuer
    again = restarted.on_csr(THING, _device_csr(device))
    assert again == {"status": "issued", "certificatePem": first}
    assert restarted.issuer._issued == {}  # type: ignore[attr-defined]  # nothing signed


def _device_csr(device: DeviceStandIn) -> str:
    status, answer = device.answer("requestCsr", {})
    assert status == 200
    return str(answer["csr"])


def test_another_things_csr_or_an_unknown_thing_is_refused(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), state="REQUESTED"))
    DeviceStandIn(hub, THING, group_ca.certificate)
    rotation = service(hub, group_ca)
    from tests.support.azure_rotation import csr_pem

    assert rotation.on_csr("ghost", csr_pem("ghost")) == {
        "status": "rejected",
        "reason": "thing: 'ghost' is not in the certificate inventory",
    }
    idle = certificate_tags(NOW + timedelta(days=20))
    hub.register("sensor-2", idle)
    DeviceStandIn(hub, "sensor-2", group_ca.certificate)
    assert rotation.on_csr("sensor-2", csr_pem("sensor-2"))["reason"] == (
        "thing: 'sensor-2' has no rotation pending (state IDLE)"
    )


def test_an_offline_device_is_marked_failed_and_retried_after_the_backoff(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20)))  # registered, not connected
    clock = Clock(NOW + timedelta(hours=1))
    rotation = service(hub, group_ca, clock=clock)
    report = rotation.run_once()
    assert "404103" in report.failed[THING]
    tags = hub.twins[THING]["tags"]["certificate"]
    assert tags["state"] == "FAILED" and tags["attempts"] == 1
    [slot] = rotation.plan(clock.now).slots
    assert slot.attempt == 2
    # The 6 h backoff from the attempt at half past, rounded up to a full hour.
    assert slot.hour == (clock.now + timedelta(hours=6)).replace(minute=0) + timedelta(hours=1)


def test_5000_devices_issued_on_one_day_meet_the_stagger_bound(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    rotation = service(hub, group_ca, clock=Clock(NOW))
    offsets = [rotation.place(f"device-{i:05d}")[1] for i in range(5000)]
    busiest = max(Counter(offsets).values())
    assert busiest <= math.ceil(1.1 * 5000 / 90)  # the bound: 62
    assert busiest <= balanced_bound(5000, 90)  # the placement's own: 57
    assert len(hub.requests) == 1  # the day's placements were read once


def test_a_restarted_service_counts_the_placements_already_made_today(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    today = NOW.date().isoformat()
    for i in range(180):  # two per day of the window already placed
        hub.register(
            f"old-{i}",
            certificate_tags(NOW, placedCohort=today, placedOffset=i % 90),
        )
    rotation = service(hub, group_ca, clock=Clock(NOW))
    offsets = Counter(i % 90 for i in range(180))
    offsets.update(rotation.place(f"new-{i}")[1] for i in range(90))
    assert max(offsets.values()) == 3  # ceil(270 / 90): the new ones filled every day once


def test_a_device_that_cannot_make_a_csr_is_marked_failed(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20)))
    hub.answer_methods(THING, lambda method, payload: (500, {"error": "key store full"}))
    report = service(hub, group_ca, clock=Clock(NOW + timedelta(hours=1))).run_once()
    assert report.failed == {THING: "requestCsr: the device answered 500"}
    assert report.requested == [] and report.issued == []
    tags = hub.twins[THING]["tags"]["certificate"]
    assert (tags["state"], tags["lastError"]) == ("FAILED", "requestCsr: the device answered 500")


def test_a_refused_twin_write_fails_that_device_and_the_pass_goes_on(
    hub: IotHubServiceStandIn, group_ca: GroupCa
) -> None:
    for thing in ("sensor-1", "sensor-2"):
        hub.register(thing, certificate_tags(NOW + timedelta(days=20)))
        DeviceStandIn(hub, thing, group_ca.certificate)

    def refuse(device_id: str, body: Any) -> tuple[int, Any] | None:
        issuing = body["tags"]["certificate"].get("state") == "ISSUING"
        if device_id == "sensor-1" and issuing:
            return 400, {"errorCode": 400004, "message": "tags too large"}
        return None

    hub.refuse_patch = refuse
    report = service(hub, group_ca, clock=Clock(NOW + timedelta(hours=1))).run_once()
    assert "400 400004" in report.failed["sensor-1"]
    assert report.issued == ["sensor-2"]
    assert hub.twins["sensor-1"]["tags"]["certificate"]["state"] == "FAILED"
    assert "pending" not in hub.twins["sensor-1"]["tags"]["certificate"]  # nothing issued


def test_the_group_ca_key_can_come_from_key_vault(
    hub: IotHubServiceStandIn, group_ca: GroupCa, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from iot_remote_access.arm.key_vault import read_ca_key_secret
    from tests.support.azure_arm_standin import ArmStandIn
    from tests.support.azure_helpers import FakeCredential

    caplog.set_level(logging.DEBUG)
    key_pem = group_ca.key_file.read_text()
    with ArmStandIn(tmp_path) as vault:
        secret_id = vault.add_secret("group-ca-key", key_pem)
        ca_key = read_ca_key_secret(
            secret_id,
            credential=FakeCredential(),  # the ARM stand-in's token
            certificate=group_ca.certificate,
            connection_verify=str(vault.ca_bundle),
            verify_challenge_resource=False,  # the stand-in is not *.vault.azure.net
        )
    hub.register(THING, certificate_tags(NOW + timedelta(days=20)))
    device = DeviceStandIn(hub, THING, group_ca.certificate)
    rotation = service(hub, group_ca, clock=Clock(NOW + timedelta(hours=1)))
    rotation.issuer = EnrollmentGroupCaIssuer(group_ca.certificate, ca_key)
    assert rotation.run_once().issued == [THING]
    [leaf] = device.installed
    assert leaf.issuer == group_ca.certificate.subject
    body = "".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in caplog.text and "PRIVATE KEY" not in caplog.text
