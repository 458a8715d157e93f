"""``gcp.accessProxy`` settings: the AWS tunnel rules, refused in one line naming the field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_remote_access.core.teleport_access import AccessProxyPolicy, AccessRuleError
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.teleport import DIGEST, access_raw

REPO = "public.ecr.aws/gravitational/teleport-distroless"


def test_defaults_are_the_aws_broker_defaults() -> None:
    settings = FleetSettings.parse(access_raw())
    assert settings.gcp is not None and settings.gcp.access_proxy is not None
    access = settings.gcp.access_proxy
    assert access.allowed_services == ("SSH",)
    assert access.max_lifetime_minutes == 60
    assert access.require_reason is True and access.approvals_required == 1
    assert access.join_token_ttl_minutes == 15 and access.idle_timeout_minutes == 15
    assert access.policy().node_labels() == {"site": ["berlin"], "thing-group": ["field-gateways"]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"maxLifetimeMinutes": 721},
            r"gcp\.accessProxy: maxLifetimeMinutes: 721 is outside 1\.\.720",
        ),
        ({"maxLifetimeMinutes": 0}, r"maxLifetimeMinutes: 0 is outside 1\.\.720"),
        ({"idleTimeoutMinutes": 61}, r"idleTimeoutMinutes: 61 is outside 1\.\.60"),
        (
            {"allowedServices": ["SSH", "VNC"]},
            r"allowedServices: 'VNC' is not on the allowlist; allowed: SSH",
        ),
        ({"allowedServices": []}, r"allowedServices: \(\) is not allowed"),
        ({"deviceSelector": {"labels": {"*": ["x"]}}}, r"deviceSelector: key '\*' is not allowed"),
        ({"deviceSelector": {"labels": {"site": ["*"]}}}, r"deviceSelector: '\*' is not allowed"),
        (
            {"deviceSelector": {"labels": {"site": ["^.*$"]}}},
            r"'\^\.\*\$' is not allowed \(it could match every device\)",
        ),
        ({"deviceSelector": {"thingGroups": ["*"]}}, r"deviceSelector: '\*' matches every device"),
        ({"deviceSelector": {}}, r"deviceSelector: is empty"),
        (
            {"requesterExtraRoles": ["access"]},
            r"requesterExtraRoles: 'access' grants standing access",
        ),
        (
            {"requesterExtraRoles": ["iot-device-access"]},
            r"'iot-device-access' grants standing access",
        ),
        ({"requireReason": False}, r"requireReason: false is not allowed; allowed: true"),
        ({"image": f"{REPO}:15.3.1"}, r"image: '.*' is not pinned by tag and digest"),
        ({"image": f"{REPO}@{DIGEST}"}, r"image: '.*' is not pinned by tag and digest"),
        ({"image": f"{REPO}:latest@{DIGEST}"}, r"image: '.*' uses the floating tag 'latest'"),
        ({"image": f"{REPO}:15.4.0@{DIGEST}"}, r"image: tag '15\.4\.0' differs from chartVersion"),
        (
            {"approvers": ["alice@example.com"]},
            r"approvers: 'alice@example.com' is also a requester",
        ),
        ({"requesters": ["*"]}, r"requesters: '\*' is not a user name"),
        ({"deviceLogin": "root"}, r"deviceLogin: 'root' is not allowed"),
        ({"auditCollection": "teleport-backend"}, r"auditCollection: equals backendCollection"),
        (
            {"auditSinkDestination": "https://siem.example.com"},
            r"auditSinkDestination: '.*' is not a sink destination",
        ),
        ({"joinTokenTtlMinutes": 61}, r"joinTokenTtlMinutes"),
    ],
)
def test_bad_settings_are_refused_in_one_line_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        FleetSettings.parse(access_raw(**changes))
    text = str(error.value)
    assert len(text.splitlines()) == 1, text
    assert "gcp.accessProxy" in text
    assert re.search(message, text), text


def test_a_huge_hostile_value_is_shortened_in_the_message() -> None:
    with pytest.raises(SettingsError) as error:
        FleetSettings.parse(access_raw(clusterName="x" * 100_000))
    assert len(str(error.value)) < 400


def test_the_core_policy_refuses_standing_preset_roles_and_collisions() -> None:
    with pytest.raises(AccessRuleError, match="accessRole: 'access' is a Teleport preset role"):
        AccessProxyPolicy(access_role="access", thing_groups=("g",))
    with pytest.raises(AccessRuleError, match="the three role names collide"):
        AccessProxyPolicy(requester_role="same", access_role="same", thing_groups=("g",))


hostile_text = st.text(alphabet="ab*^$.-_:/ ", min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    labels=st.dictionaries(hostile_text, st.lists(hostile_text, max_size=3), max_size=3),
    groups=st.lists(hostile_text, max_size=3),
)
def test_any_selector_is_refused_in_one_line_or_rendered_exactly_without_wildcards(
    labels: dict[str, list[str]], groups: list[str]
) -> None:
    try:
        parsed = FleetSettings.parse(
            access_raw(deviceSelector={"labels": labels, "thingGroups": groups})
        )
    except SettingsError as error:
        text = str(error)
        assert len(text.splitlines()) == 1 and "gcp.accessProxy.deviceSelector" in text, text
        return
    assert parsed.gcp is not None and parsed.gcp.access_proxy is not None
    (access,) = [
        r
        for r in parsed.gcp.access_proxy.policy().roles()
        if r["metadata"]["name"] == "iot-device-access"
    ]
    node_labels = access["spec"]["allow"]["node_labels"]
    assert node_labels == {**labels, **({"thing-group": groups} if groups else {})}
    for key, values in node_labels.items():
        for text in (key, *values):
            assert "*" not in text and not text.startswith("^") and not text.endswith("$")
