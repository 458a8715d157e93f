"""HiveMQ: device permissions bound to the certificate, not to the client id.

The device role on ``${mqtt-clientid}`` lets a device with a valid fleet
certificate connect under another device's client id and use its topics; the
reachability analysis finds that on the rendered realm. The per-device realm
(one user per thing, found by the certificate's subject CN through the ESE
``authorization-key``; permissions name the thing literally) has no such reach.
"""

from __future__ import annotations

import pytest

from iot_remote_access.core.hivemq_ese import EsePipeline, render_ese_config
from iot_remote_access.core.hivemq_permissions import (
    CLIENT_ID_PLACEHOLDER,
    RealmRole,
    RealmUser,
    device_permissions,
    per_device_realm,
    render_file_realm,
    thing_permissions,
)
from iot_remote_access.core.reach import Operation
from iot_remote_access.core.reach_hivemq import RealmError, analyze_realm
from iot_remote_access.core.topics import Access, CustomTopic, DeviceAccess

ACCESS = DeviceAccess(
    rotation=True,
    command_responses=True,
    custom=(CustomTopic("health", "dt/{thing}/health", Access.PUBLISH),),
)
FLEET = ["device-a", "device-b", "gw:eu_7"]


def test_the_client_id_rendering_lets_a_device_act_as_another() -> None:
    """The hole the analysis found: the role every fleet certificate gets (by its CA)."""
    realm = render_file_realm([RealmRole("Fleet CA 1", device_permissions(ACCESS))])
    assert CLIENT_ID_PLACEHOLDER in realm
    (report,) = analyze_realm(realm)
    assert {f.operation for f in report.lateral} == {Operation.PUBLISH, Operation.SUBSCRIBE}
    for finding in report.lateral:
        # The witness: connect with the victim's client id, then use its topic.
        assert finding.client_id == finding.victim != "device-a"
        assert finding.victim in finding.witness


def test_the_per_device_realm_has_no_lateral_reach() -> None:
    roles, users = per_device_realm(ACCESS, FLEET)
    realm = render_file_realm(roles, users)
    assert CLIENT_ID_PLACEHOLDER not in realm
    reports = analyze_realm(realm)
    assert [r.source for r in reports] == [f"realm:{thing}" for thing in FLEET]
    assert all(r.findings == () for r in reports), [
        f.describe() for r in reports for f in r.findings
    ]
    # Each user holds exactly its own thing's topics, the same the model grants.
    assert thing_permissions(ACCESS, "device-b") == roles[1].permissions
    assert {p.topic for p in roles[1].permissions} == {
        grant.render("device-b") for grant in ACCESS.grants(include_aws_reserved=False)
    }


def test_the_analysis_sees_a_per_device_realm_that_names_the_wrong_thing() -> None:
    """Not a vacuous pass: a role of device-a holding device-b's topics is found."""
    misbound = (RealmRole("device-a", thing_permissions(ACCESS, "device-b")),)
    realm = render_file_realm(misbound, (RealmUser("device-a", ("device-a",)),))
    (report,) = analyze_realm(realm)
    assert report.lateral
    assert {f.victim for f in report.lateral} == {"device-b"}
    assert all(f.client_id == "" for f in report.lateral)  # no client id trick needed


def test_a_role_held_only_by_the_bridge_is_not_a_device_role() -> None:
    realm = render_file_realm(
        [RealmRole("bridge", device_permissions(ACCESS))],
        [RealmUser("pubsub-bridge.internal", ("bridge",))],
    )
    (report,) = analyze_realm(realm)
    assert report.findings == ()
    assert report.notes and "no device certificate" in report.notes[0]


def test_the_pipeline_for_a_per_device_realm_selects_the_user_by_subject_cn() -> None:
    config = render_ese_config((EsePipeline("devices", "devices", "devices.xml", by_user=True),))
    assert "<x509-field>subject-common-name</x509-field>" in config
    assert "<ese-variable>authorization-key</ese-variable>" in config
    assert "<use-authorization-key>true</use-authorization-key>" in config


def test_a_realm_with_too_many_device_users_is_refused_not_analysed_for_minutes() -> None:
    roles, users = per_device_realm(DeviceAccess(), [f"d-{n}" for n in range(1001)])
    with pytest.raises(RealmError, match="1001 device users; allowed: at most 1000"):
        analyze_realm(render_file_realm(roles, users))
