"""core.tunnel_rules: the limits the broker, the sweeper and the CLI share (no AWS)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from iot_remote_access.core.tunnel_rules import (
    CLOSE_LIFETIME_EXCEEDED,
    CLOSE_SOURCE_NOT_CONNECTED,
    TAG_EXPIRES_AT,
    TAG_REASON,
    TAG_REQUESTER,
    TunnelPolicy,
    TunnelRequest,
    TunnelRuleError,
    TunnelState,
    TunnelSummary,
    aws_error_status,
    check_open_count,
    check_thing_groups,
    close_reason,
    keeps_new_tunnel,
    open_tunnel_ids,
    open_tunnel_parameters,
    parse_request,
    tag_value,
    validate_minutes,
    validate_reason,
    validate_tunnel_id,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = TunnelPolicy()


def _request(**fields: object) -> dict[str, object]:
    return {
        "thing": "sensor-1",
        "service": "SSH",
        "minutes": 30,
        "reason": "INC-1234 logs",
        **fields,
    }


def test_defaults_are_ssh_60_minutes_one_tunnel_15_minutes_grace() -> None:
    assert POLICY.allowed_services == ("SSH",)
    assert (POLICY.default_lifetime_minutes, POLICY.max_lifetime_minutes) == (60, 720)
    assert POLICY.max_open_tunnels_per_thing == 1
    assert POLICY.connect_grace_minutes == 15
    request = parse_request({"thing": "sensor-1", "reason": "INC-1"}, POLICY)
    assert request == TunnelRequest("sensor-1", "SSH", 60, "INC-1")


@pytest.mark.parametrize(
    ("minutes", "message"),
    [
        (0, r"minutes: 0 is outside 1\.\.720; allowed: a whole number of minutes from 1 to 720"),
        (721, r"minutes: 721 is outside 1\.\.720"),
        (-5, r"minutes: -5 is outside 1\.\.720"),
        ("abc", r"minutes: 'abc' is not a whole number; allowed"),
        (30.5, r"minutes: 30\.5 is not a whole number"),
        (True, r"minutes: True is not a whole number"),
        ("", r"minutes: '' is not a whole number"),
    ],
)
def test_minutes_outside_1_to_720_are_refused(minutes: object, message: str) -> None:
    with pytest.raises(TunnelRuleError, match=message) as caught:
        parse_request(_request(minutes=minutes), POLICY)
    assert (caught.value.field, caught.value.status) == ("minutes", 400)


def test_minutes_from_a_command_line_string() -> None:
    assert validate_minutes("30") == 30
    assert validate_minutes(" 720 ") == 720
    with pytest.raises(TunnelRuleError, match=r"minutes: 241 is outside 1\.\.240"):
        validate_minutes(241, maximum=240)


def test_deployment_maximum_is_enforced() -> None:
    policy = TunnelPolicy(max_lifetime_minutes=120, default_lifetime_minutes=30)
    with pytest.raises(
        TunnelRuleError,
        match=r"minutes: 121 is outside 1\.\.120; allowed: a whole number of minutes from 1 to 120",
    ):
        parse_request(_request(minutes=121), policy)


@pytest.mark.parametrize(
    ("thing", "message"),
    [
        (
            "dt/sensor",
            r"thing: 'dt/sensor' is not a valid thing name; allowed: \[a-zA-Z0-9:_-\]\{1,128\}",
        ),
        ("sensor+", "is not a valid thing name"),
        ("sensor#", "is not a valid thing name"),
        ("sens*", "is not a valid thing name"),
        ("x" * 129, "is not a valid thing name"),
        ("", "is not a valid thing name"),
        (None, "thing: missing"),
        (42, "42 is not a string"),
    ],
)
def test_thing_names_with_wildcards_or_too_long_are_refused(thing: object, message: str) -> None:
    with pytest.raises(TunnelRuleError, match=message) as caught:
        parse_request(_request(thing=thing), POLICY)
    assert caught.value.field == "thing"


def test_fleet_pattern_narrows_thing_names() -> None:
    policy = TunnelPolicy(thing_name_pattern="sensor-[0-9]+")
    assert parse_request(_request(thing="sensor-7"), policy).thing == "sensor-7"
    with pytest.raises(
        TunnelRuleError,
        match=r"thing: 'gateway-1' does not match the fleet's thing names; allowed: sensor-\[0-9\]\+",
    ):
        parse_request(_request(thing="gateway-1"), policy)


def test_service_must_be_on_the_allowlist() -> None:
    with pytest.raises(
        TunnelRuleError, match="service: 'RDP' is not on the allowlist; allowed: SSH"
    ) as caught:
        parse_request(_request(service="RDP"), POLICY)
    assert caught.value.status == 403
    with pytest.raises(TunnelRuleError, match="service: 'S S' is not a service name"):
        parse_request(_request(service="S S"), POLICY)
    two = TunnelPolicy(allowed_services=("SSH", "VNC"))
    assert parse_request(_request(service="VNC"), two).service == "VNC"


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (None, "reason: missing; allowed: 1 to 256 printable characters"),
        ("", "reason: '' is empty"),
        ("   ", "reason: '   ' is empty"),
        ("x" * 257, "reason: is 257 characters long; allowed: 1 to 256"),
        ("INC-1\nrm -rf", r"reason: contains the non-printable character U\+000A at position 5"),
        ("INC-1\x1b[2J", r"U\+001B"),
        (["INC-1"], r"reason: \['INC-1'\] is not text"),
    ],
)
def test_reason_must_be_1_to_256_printable_characters(reason: object, message: str) -> None:
    with pytest.raises(TunnelRuleError, match=message) as caught:
        parse_request(_request(reason=reason), POLICY)
    assert caught.value.field == "reason"


def test_reason_keeps_unicode_and_drops_surrounding_spaces() -> None:
    assert validate_reason("  Störung #42: Lüfter prüfen  ") == "Störung #42: Lüfter prüfen"
    assert validate_reason("x" * 256) == "x" * 256


def test_body_must_be_an_object_with_known_fields() -> None:
    with pytest.raises(TunnelRuleError, match="body: a JSON list is not an object"):
        parse_request([], POLICY)
    with pytest.raises(
        TunnelRuleError, match="timeout: unknown field; allowed: thing, service, minutes, reason"
    ):
        parse_request(_request(timeout=5), POLICY)


def test_open_parameters_tag_requester_reason_and_expiry() -> None:
    request = TunnelRequest("sensor-1", "SSH", 30, "INC-1234, check 'fan' (urgent!)")
    requester = "arn:aws:sts::123456789012:assumed-role/ops/alice"
    parameters = open_tunnel_parameters(request, requester=requester, now=NOW)
    assert parameters == {
        "description": "INC-1234, check 'fan' (urgent!)",
        "destinationConfig": {"thingName": "sensor-1", "services": ["SSH"]},
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": 30},
        "tags": [
            {"key": TAG_REQUESTER, "value": requester},
            # AWS tag values allow letters, digits, spaces and _.:/=+-@ only.
            {"key": TAG_REASON, "value": "INC-1234_ check _fan_ _urgent__"},
            {"key": TAG_EXPIRES_AT, "value": "2026-11-25T12:30:00Z"},
        ],
    }


def test_tag_values_stay_within_aws_limits() -> None:
    assert tag_value("a" * 300) == "a" * 256
    assert tag_value("Lüfter 1/2 @home") == "Lüfter 1/2 @home"


def test_open_count_allows_up_to_the_limit_and_names_open_tunnels() -> None:
    check_open_count("sensor-1", [], POLICY)
    with pytest.raises(
        TunnelRuleError,
        match=r"thing: 'sensor-1' already has 1 open tunnel\(s\) \(t-1\); allowed: at most 1 per thing",
    ) as caught:
        check_open_count("sensor-1", ["t-1"], POLICY)
    assert caught.value.status == 409
    check_open_count("sensor-1", ["t-1"], TunnelPolicy(max_open_tunnels_per_thing=2))


def test_concurrent_opens_keep_only_the_oldest_within_the_limit() -> None:
    tunnels = [
        TunnelSummary("b", "OPEN", NOW),
        TunnelSummary("a", "OPEN", NOW),  # same second: the id decides, for every caller alike
        TunnelSummary("old", "CLOSED", NOW - timedelta(hours=1)),
        TunnelSummary("c", "OPEN", NOW + timedelta(seconds=1)),
    ]
    ids = open_tunnel_ids(tunnels)
    assert ids == ["a", "b", "c"]
    assert keeps_new_tunnel("a", ids, POLICY)
    assert not keeps_new_tunnel("b", ids, POLICY)
    assert keeps_new_tunnel("b", ids, TunnelPolicy(max_open_tunnels_per_thing=2))
    assert keeps_new_tunnel("not-listed-yet", ids, POLICY)


def test_thing_groups_restrict_when_configured() -> None:
    check_thing_groups("sensor-1", [], POLICY)
    policy = TunnelPolicy(thing_groups=("production",))
    check_thing_groups("sensor-1", ["eu-sites", "production"], policy)
    with pytest.raises(
        TunnelRuleError,
        match="thing: 'sensor-1' is in none of the thing groups allowed tunnels; allowed: things in production",
    ) as caught:
        check_thing_groups("sensor-1", ["lab"], policy)
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allowed_services": ()}, r"allowed_services: \[\] is empty"),
        ({"allowed_services": ("S S",)}, "allowed_services: 'S S' is not a service name"),
        ({"max_lifetime_minutes": 721}, r"max_lifetime_minutes: 721 is outside 1\.\.720"),
        ({"max_lifetime_minutes": "60"}, "max_lifetime_minutes: '60' is not a whole number"),
        (
            {"default_lifetime_minutes": 90, "max_lifetime_minutes": 60},
            r"default_lifetime_minutes: 90 is outside 1\.\.60",
        ),
        ({"connect_grace_minutes": 0}, "connect_grace_minutes: 0 is outside"),
        (
            {"max_open_tunnels_per_thing": 0},
            "max_open_tunnels_per_thing: 0 is not allowed; allowed: a whole number from 1 to 10",
        ),
        ({"thing_groups": ("a/b",)}, "thing_groups: 'a/b' is not a thing group name"),
        ({"thing_name_pattern": "("}, "thing_name_pattern: '\\(' is not a regular expression"),
    ],
)
def test_policy_refuses_bad_settings_naming_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TunnelPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_travels_as_json() -> None:
    policy = TunnelPolicy(
        allowed_services=("SSH", "VNC"),
        thing_groups=("prod",),
        max_lifetime_minutes=240,
        connect_grace_minutes=5,
    )
    assert TunnelPolicy.from_json(policy.to_json()) == policy
    assert json.loads(policy.to_json())["allowed_services"] == ["SSH", "VNC"]


def _state(
    *,
    created: datetime,
    minutes: int = 60,
    source: str = "DISCONNECTED",
    source_changed: datetime | None = None,
    expires: str | None = None,
    status: str = "OPEN",
) -> TunnelState:
    tags = [{"key": TAG_EXPIRES_AT, "value": expires}] if expires else []
    return TunnelState.from_description(
        {
            "tunnelId": "t-1",
            "status": status,
            "destinationConfig": {"thingName": "sensor-1", "services": ["SSH"]},
            "timeoutConfig": {"maxLifetimeTimeoutMinutes": minutes},
            "sourceConnectionState": {"status": source, "lastUpdatedAt": source_changed or created},
            "createdAt": created,
            "tags": tags,
        }
    )


def test_sweeper_closes_past_the_expiry_tag() -> None:
    state = _state(
        created=NOW - timedelta(minutes=31), source="CONNECTED", expires="2026-11-25T11:59:00Z"
    )
    assert close_reason(state, NOW, POLICY) == CLOSE_LIFETIME_EXCEEDED


def test_sweeper_closes_past_aws_timeout_or_deployment_maximum_without_tags() -> None:
    aws_timeout = _state(created=NOW - timedelta(minutes=61), minutes=60, source="CONNECTED")
    assert close_reason(aws_timeout, NOW, POLICY) == CLOSE_LIFETIME_EXCEEDED
    # Opened around the broker with AWS's 12 hours: the deployment's 2 hours apply.
    around = _state(created=NOW - timedelta(minutes=121), minutes=720, source="CONNECTED")
    strict = TunnelPolicy(max_lifetime_minutes=120)
    assert close_reason(around, NOW, strict) == CLOSE_LIFETIME_EXCEEDED
    assert close_reason(around, NOW, POLICY) is None


def test_sweeper_closes_tunnels_whose_source_never_connected_within_grace() -> None:
    never = _state(created=NOW - timedelta(minutes=15), minutes=60)
    assert close_reason(never, NOW, POLICY) == CLOSE_SOURCE_NOT_CONNECTED
    young = _state(created=NOW - timedelta(minutes=14), minutes=60)
    assert close_reason(young, NOW, POLICY) is None
    # Left 5 minutes ago: it may still come back; closed once away for the grace period.
    left = _state(created=NOW - timedelta(minutes=40), source_changed=NOW - timedelta(minutes=5))
    assert close_reason(left, NOW, POLICY) is None
    gone = _state(created=NOW - timedelta(minutes=40), source_changed=NOW - timedelta(minutes=16))
    assert close_reason(gone, NOW, POLICY) == CLOSE_SOURCE_NOT_CONNECTED


def test_sweeper_leaves_connected_tunnels_within_lifetime_and_closed_ones() -> None:
    connected = _state(
        created=NOW - timedelta(minutes=50), source="CONNECTED", expires="2026-11-25T12:10:00Z"
    )
    assert close_reason(connected, NOW, POLICY) is None
    closed = _state(created=NOW - timedelta(days=1), status="CLOSED")
    assert close_reason(closed, NOW, POLICY) is None


def test_tunnel_ids_and_error_statuses() -> None:
    assert validate_tunnel_id("2b0c9c5e-5b7e-4c39-8a43-7c2a7a4c3f10")
    with pytest.raises(TunnelRuleError, match="tunnel-id: 'a b' is not a tunnel id"):
        validate_tunnel_id("a b")
    assert aws_error_status("ThrottlingException") == 503
    assert aws_error_status("LimitExceededException") == 503
    assert aws_error_status("AccessDeniedException") == 502
