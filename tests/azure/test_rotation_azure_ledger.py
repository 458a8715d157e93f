"""Azure rotation decisions in the access ledger: the chain in the anchor container.

STAND-INS: the IoT Hub service (``tests.support.iot_hub_service_standin``) and the Blob
service (``tests.support.azure_storage_standin.BlobStandIn``); the ledger is the real
``ObjectChain`` the `evidence record azure-alerts` writer uses, and the check is the real
``core.ledger_verify``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from iot_remote_access.arm.rotation_service import AzureRotationService
from iot_remote_access.core.ledger import LedgerUnavailable, parse_record
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
from iot_remote_access.lambdas.anchor_sinks.sinks import AzureBlobAnchors
from tests.azure.test_rotation_azure_standin import NOW, THING, Clock, group_ca, hub, service
from tests.support.azure_rotation import DeviceStandIn, GroupCa, certificate_tags
from tests.support.azure_storage_standin import BlobStandIn
from tests.support.iot_hub_service_standin import IotHubServiceStandIn

__all__ = ["group_ca", "hub"]  # the fixtures, shared with the rotation tests


@pytest.fixture
def chain() -> Iterator[ObjectChain]:
    with BlobStandIn() as blobs:
        url = blobs.container_url("fleetledger", "ledger-anchors")
        yield ObjectChain(AzureBlobAnchors(ContainerClient.from_container_url(url)))


class DownThenUp:
    """An appender that is down until ``up`` is set (as the Blob service during an outage)."""

    def __init__(self, chain: ObjectChain) -> None:
        self.chain, self.up = chain, False

    def append(self, data: Mapping[str, Any]) -> object:
        if not self.up:
            raise LedgerUnavailable("blob service: 503 ServerBusy")
        return self.chain.append(data)


def with_ledger(service_: AzureRotationService, ledger: Any) -> AzureRotationService:
    service_.ledger = ledger
    return service_


def test_issue_rotate_and_revoke_are_recorded_and_the_chain_holds(
    hub: IotHubServiceStandIn, group_ca: GroupCa, chain: ObjectChain
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    device = DeviceStandIn(hub, THING, group_ca.certificate)
    clock = Clock(NOW + timedelta(hours=1))
    rotation = with_ledger(service(hub, group_ca, clock=clock), chain)

    assert rotation.run_once().issued == [THING]
    clock.now += timedelta(minutes=10)
    assert rotation.run_once().confirmed == [THING]

    [leaf] = device.installed
    serial = f"{leaf.serial_number:x}"
    records = [parse_record(line).data for line in chain.lines()]
    assert [(r["event"], r["decision"], r["thing"]) for r in records] == [
        ("cert.issue", "issued", THING),
        ("cert.rotate", "rotated", THING),
        ("cert.revoke", "revoked", THING),
    ]
    assert records[0]["serial"] == serial and records[0]["certificateId"] == serial
    assert records[1]["previousSerial"] == "aa"
    assert (records[2]["serial"], records[2]["reason"]) == ("aa", "rotated")
    assert not any("BEGIN" in str(value) for r in records for value in r.values())  # no PEM
    result = verify(chain.lines(), [])
    assert result.holds and result.records == 3


def test_an_issue_the_ledger_cannot_record_is_revoked_unsent_and_retried(
    hub: IotHubServiceStandIn, group_ca: GroupCa, chain: ObjectChain
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    device = DeviceStandIn(hub, THING, group_ca.certificate)
    clock = Clock(NOW + timedelta(hours=1))
    ledger = DownThenUp(chain)
    rotation = with_ledger(service(hub, group_ca, clock=clock), ledger)

    report = rotation.run_once()
    assert report.refused == {THING: "ledger unavailable"}
    assert device.installed == [] and device.messages == []  # nothing sent, as when throttled
    tags = hub.twins[THING]["tags"]["certificate"]
    assert tags["state"] == "FAILED" and tags["serial"] == "aa"  # the old one still works
    assert len(rotation.issuer.revoked) == 1  # type: ignore[attr-defined]  # the unsent one
    assert list(chain.lines()) == []

    ledger.up = True
    clock.now += timedelta(hours=7)  # past the retry backoff
    assert rotation.run_once().issued == [THING]
    assert [parse_record(line).data["event"] for line in chain.lines()] == ["cert.issue"]


def test_a_confirmation_the_ledger_cannot_record_changes_nothing_until_it_can(
    hub: IotHubServiceStandIn, group_ca: GroupCa, chain: ObjectChain
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    DeviceStandIn(hub, THING, group_ca.certificate)
    clock = Clock(NOW + timedelta(hours=1))
    ledger = DownThenUp(chain)
    ledger.up = True
    rotation = with_ledger(service(hub, group_ca, clock=clock), ledger)
    assert rotation.run_once().issued == [THING]

    ledger.up = False
    clock.now += timedelta(minutes=10)
    assert rotation.run_once().confirmed == []
    assert hub.twins[THING]["tags"]["certificate"]["serial"] == "aa"
    assert rotation.issuer.revoked == set()  # type: ignore[attr-defined]

    ledger.up = True
    clock.now += timedelta(minutes=10)
    assert rotation.run_once().confirmed == [THING]
    events = [parse_record(line).data["event"] for line in chain.lines()]
    assert events == ["cert.issue", "cert.rotate", "cert.revoke"]


def test_no_ledger_configured_records_nothing_and_rotates(
    hub: IotHubServiceStandIn, group_ca: GroupCa, tmp_path: Path
) -> None:
    hub.register(THING, certificate_tags(NOW + timedelta(days=20), serial="aa"))
    DeviceStandIn(hub, THING, group_ca.certificate)
    rotation = service(hub, group_ca, clock=Clock(NOW + timedelta(hours=1)))
    assert rotation.ledger is None and rotation.run_once().issued == [THING]
