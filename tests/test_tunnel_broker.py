"""The tunnel broker Lambda: moto for things and thing groups, a STUBBED Secure Tunneling API.

moto has no Secure Tunneling API, so ``StubbedSecureTunneling`` (a botocore
Stubber with the real API's request and response shapes) stands in for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from iot_remote_access.core.tunnel_rules import TunnelPolicy
from iot_remote_access.lambdas.tunnel_broker import handler as broker
from tests.support.tunneling_stub import (
    OPERATOR_ARN,
    REGION,
    LambdaContext,
    StubbedSecureTunneling,
    captured_powertools_log,
    json_event,
    log_records,
    summary,
    url_event,
)

THING = "sensor-1"


@dataclass
class Broker:
    tunneling: StubbedSecureTunneling
    iot: Any
    log: Any
    monkeypatch: pytest.MonkeyPatch

    def policy(self, **kwargs: Any) -> None:
        self.monkeypatch.setenv(broker.POLICY_VARIABLE, TunnelPolicy(**kwargs).to_json())

    def call(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        result = broker.handler(event, LambdaContext())
        return result["statusCode"], json.loads(result["body"]), result["headers"]

    def audits(self) -> list[dict[str, Any]]:
        return [r["audit"] for r in log_records(self.log) if "audit" in r]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing(thingName=THING)
        tunneling = StubbedSecureTunneling()
        monkeypatch.setattr(broker, "_clients", broker.Clients(iot=iot, tunneling=tunneling.client))
        monkeypatch.delenv(broker.POLICY_VARIABLE, raising=False)
        with captured_powertools_log(broker.logger) as log:
            yield Broker(tunneling, iot, log, monkeypatch)


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "thing": THING,
        "service": "SSH",
        "minutes": 30,
        "reason": "INC-1234 inspect logs",
        **fields,
    }


def test_opens_tags_and_returns_the_token_to_the_caller_only(stack: Broker) -> None:
    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=30, reason="INC-1234 inspect logs")
    stack.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    before = datetime.now(UTC).replace(microsecond=0)

    status, body, headers = stack.call(json_event(_body()))

    assert status == 201, body
    assert headers["Cache-Control"] == "no-store"
    assert body["tunnelId"] == tunnel_id
    assert body["sourceAccessToken"] == stack.tunneling.tokens[0]
    assert "destinationAccessToken" not in body  # AWS delivers it to the device
    assert (body["thing"], body["service"], body["minutes"], body["region"]) == (
        THING,
        "SSH",
        30,
        REGION,
    )
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=30) <= expires - before <= timedelta(minutes=30, seconds=5)
    (sent,) = stack.tunneling.sent("OpenTunnel")
    assert {t["key"]: t["value"] for t in sent["tags"]} == {
        "iot-remote-access:requester": OPERATOR_ARN,
        "iot-remote-access:reason": "INC-1234 inspect logs",
        "iot-remote-access:expires-at": body["expiresAt"],
    }
    stack.tunneling.stubber.assert_no_pending_responses()
    (audit,) = stack.audits()
    assert audit == {
        "event": "tunnel.open",
        "decision": "allowed",
        "requester": OPERATOR_ARN,
        "thing": THING,
        "service": "SSH",
        "minutes": 30,
        "reason": "INC-1234 inspect logs",
        "tunnelId": tunnel_id,
        "expiresAt": body["expiresAt"],
        "at": audit["at"],
    }


def test_default_lifetime_and_service_come_from_the_deployment(stack: Broker) -> None:
    stack.policy(default_lifetime_minutes=45, max_lifetime_minutes=120)
    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=45)
    stack.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    status, body, _ = stack.call(json_event({"thing": THING, "reason": "INC-9"}))
    assert (status, body["minutes"], body["service"]) == (201, 45, "SSH")


# Every bad input of the issue, with the status and the message it gets. None opens a tunnel.
BAD_INPUTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("minutes 0", json_event(_body(minutes=0)), 400, "minutes", r"minutes: 0 is outside 1\.\.720"),
    (
        "minutes 721",
        json_event(_body(minutes=721)),
        400,
        "minutes",
        r"minutes: 721 is outside 1\.\.720",
    ),
    ("minutes negative", json_event(_body(minutes=-1)), 400, "minutes", r"minutes: -1 is outside"),
    (
        "minutes non-numeric",
        json_event(_body(minutes="thirty")),
        400,
        "minutes",
        "minutes: 'thirty' is not a whole number",
    ),
    (
        "minutes fractional",
        json_event(_body(minutes=1.5)),
        400,
        "minutes",
        r"minutes: 1\.5 is not a whole number",
    ),
    (
        "unknown thing",
        json_event(_body(thing="ghost-7")),
        404,
        "thing",
        "thing: 'ghost-7' does not exist in this account and region",
    ),
    (
        "thing with /",
        json_event(_body(thing="dt/sensor-1")),
        400,
        "thing",
        "thing: 'dt/sensor-1' is not a valid thing name",
    ),
    ("thing with +", json_event(_body(thing="sensor+")), 400, "thing", "is not a valid thing name"),
    ("thing with #", json_event(_body(thing="#")), 400, "thing", "is not a valid thing name"),
    (
        "thing with *",
        json_event(_body(thing="sensor-*")),
        400,
        "thing",
        "is not a valid thing name",
    ),
    (
        "thing over 128",
        json_event(_body(thing="s" * 129)),
        400,
        "thing",
        "is not a valid thing name",
    ),
    ("thing missing", json_event({"reason": "INC-1"}), 400, "thing", "thing: missing"),
    (
        "service not allowed",
        json_event(_body(service="RDP")),
        403,
        "service",
        "service: 'RDP' is not on the allowlist; allowed: SSH",
    ),
    (
        "service malformed",
        json_event(_body(service="ssh;reboot")),
        400,
        "service",
        "is not a service name",
    ),
    (
        "reason missing",
        json_event({"thing": THING, "minutes": 30}),
        400,
        "reason",
        "reason: missing; allowed: 1 to 256 printable characters",
    ),
    ("reason empty", json_event(_body(reason="")), 400, "reason", "reason: '' is empty"),
    ("reason blank", json_event(_body(reason="  ")), 400, "reason", "is empty"),
    (
        "reason over-long",
        json_event(_body(reason="r" * 257)),
        400,
        "reason",
        "reason: is 257 characters long; allowed: 1 to 256",
    ),
    (
        "reason control character",
        json_event(_body(reason="INC-1\r\nforged")),
        400,
        "reason",
        r"U\+000D",
    ),
    ("malformed JSON", url_event('{"thing": "sensor-1",'), 400, "body", "body: not valid JSON"),
    (
        "JSON not an object",
        url_event('["sensor-1"]'),
        400,
        "body",
        "body: a JSON list is not an object",
    ),
    ("no body", url_event(None), 400, "body", "body: not valid JSON"),
    ("binary body", url_event(b"\xff\xfe", base64_body=True), 400, "body", "body: not UTF-8 text"),
    (
        "body too large",
        json_event(_body(reason="r" * 5000)),
        413,
        "body",
        "body: 5.* bytes; allowed: at most 4096",
    ),
    ("unknown field", json_event(_body(delete=True)), 400, "delete", "delete: unknown field"),
    (
        "wrong path",
        json_event(_body(), path="/admin"),
        404,
        "route",
        "route: POST /admin is not served",
    ),
    (
        "wrong method",
        url_event(None, method="GET"),
        405,
        "route",
        "route: GET /tunnels is not served; allowed: POST /tunnels",
    ),
    (
        "unsigned",
        json_event(_body(), user_arn=None),
        403,
        "requester",
        "requester: the request carries no IAM identity",
    ),
]


@pytest.mark.parametrize(
    ("event", "status", "field", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_every_bad_input_gets_a_4xx_naming_the_field_and_opens_nothing(
    stack: Broker, event: dict[str, Any], status: int, field: str, message: str
) -> None:
    got_status, body, headers = stack.call(event)

    assert got_status == status, body
    assert headers["Content-Type"] == "application/json"
    assert body["field"] == field
    assert body["message"].startswith(f"{field}: ")
    assert re.search(message, body["message"]), body["message"]
    assert stack.tunneling.count("OpenTunnel") == 0
    (audit,) = stack.audits()
    assert (audit["decision"], audit["status"], audit["field"]) == ("refused", status, field)
    assert audit["message"] == body["message"]


def test_too_many_tunnels_for_the_thing_is_refused(stack: Broker) -> None:
    stack.tunneling.expect_list([summary("t-open"), summary("t-old", status="CLOSED")], thing=THING)
    status, body, _ = stack.call(json_event(_body()))
    assert status == 409
    assert body == {
        "field": "thing",
        "message": "thing: 'sensor-1' already has 1 open tunnel(s) "
        "(t-open); allowed: at most 1 per thing; close one first",
    }
    assert stack.tunneling.count("OpenTunnel") == 0
    assert stack.audits()[0]["decision"] == "refused"


def test_thing_groups_allow_members_and_members_of_subgroups(stack: Broker) -> None:
    stack.iot.create_thing_group(thingGroupName="production")
    stack.iot.create_thing_group(thingGroupName="eu-sites", parentGroupName="production")
    stack.iot.add_thing_to_thing_group(thingGroupName="eu-sites", thingName=THING)
    stack.iot.create_thing(thingName="lab-1")
    stack.iot.create_thing_group(thingGroupName="lab")
    stack.iot.add_thing_to_thing_group(thingGroupName="lab", thingName="lab-1")
    stack.policy(thing_groups=("production",))

    status, body, _ = stack.call(json_event(_body(thing="lab-1")))
    assert (status, body["field"]) == (403, "thing")
    assert body["message"] == (
        "thing: 'lab-1' is in none of the thing groups allowed tunnels; "
        "allowed: things in production"
    )
    assert stack.tunneling.count("OpenTunnel") == 0

    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=30)
    stack.tunneling.expect_list([summary(tunnel_id)], thing=THING)
    status, body, _ = stack.call(json_event(_body()))
    assert status == 201, body


@pytest.mark.parametrize(
    "code",
    [
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalFailureException",
        "LimitExceededException",
    ],
)
def test_open_tunnel_failure_is_a_503_and_nothing_is_half_done(stack: Broker, code: str) -> None:
    stack.tunneling.expect_list([], thing=THING)
    stack.tunneling.expect_error("open_tunnel", code, 429 if "Throttl" in code else 500)
    status, body, headers = stack.call(json_event(_body()))
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert body == {
        "field": "aws",
        "message": f"aws: OpenTunnel failed ({code}); no tunnel was handed out, try again",
    }
    stack.tunneling.stubber.assert_no_pending_responses()  # nothing after the failed call


def test_listing_failure_before_opening_is_a_503_and_opens_nothing(stack: Broker) -> None:
    stack.tunneling.expect_error("list_tunnels", "ThrottlingException", 429)
    status, body, _ = stack.call(json_event(_body()))
    assert (status, body["message"]) == (
        503,
        "aws: ListTunnels failed (ThrottlingException); no tunnel was handed out, try again",
    )
    assert stack.tunneling.count("OpenTunnel") == 0


def test_iot_failure_on_describe_thing_is_a_503(stack: Broker) -> None:
    iot = boto3.client("iot", region_name=REGION)
    with Stubber(iot) as stubbed_iot:
        stubbed_iot.add_client_error("describe_thing", "ThrottlingException", http_status_code=429)
        stack.monkeypatch.setattr(
            broker, "_clients", broker.Clients(iot=iot, tunneling=stack.tunneling.client)
        )
        status, body, _ = stack.call(json_event(_body()))
    assert (status, body["field"]) == (503, "aws")
    assert "DescribeThing failed (ThrottlingException)" in body["message"]
    assert stack.tunneling.count("OpenTunnel") == 0


def test_concurrent_request_for_the_same_thing_rolls_the_younger_tunnel_back(stack: Broker) -> None:
    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=30)
    now = datetime.now(UTC)
    # Another request's tunnel was created a moment earlier: ours must go.
    stack.tunneling.expect_list(
        [summary(tunnel_id, created=now), summary("a-winner", created=now - timedelta(seconds=1))],
        thing=THING,
    )
    stack.tunneling.expect_close(tunnel_id)
    status, body, _ = stack.call(json_event(_body()))
    assert status == 409
    assert (
        body["message"]
        == "thing: 'sensor-1' got another tunnel at the same moment; allowed: at most 1 per thing"
    )
    assert "sourceAccessToken" not in body
    stack.tunneling.stubber.assert_no_pending_responses()


def test_failure_after_opening_closes_the_tunnel_before_answering(stack: Broker) -> None:
    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=30)
    stack.tunneling.expect_error("list_tunnels", "ServiceUnavailableException", 503)
    stack.tunneling.expect_close(tunnel_id)
    status, body, _ = stack.call(json_event(_body()))
    assert status == 503
    assert "sourceAccessToken" not in body
    assert stack.tunneling.sent("CloseTunnel") == [{"tunnelId": tunnel_id, "delete": False}]


def test_a_rollback_that_fails_leaves_the_tunnel_to_the_sweeper_and_hands_out_nothing(
    stack: Broker,
) -> None:
    stack.tunneling.expect_list([], thing=THING)
    tunnel_id = stack.tunneling.expect_open(thing=THING, minutes=30)
    stack.tunneling.expect_error("list_tunnels", "ServiceUnavailableException", 503)
    stack.tunneling.expect_error("close_tunnel", "ServiceUnavailableException", 503)
    status, body, _ = stack.call(json_event(_body()))
    assert status == 503
    assert "sourceAccessToken" not in body
    errors = [r for r in log_records(stack.log) if r.get("level") == "ERROR"]
    assert errors and errors[0]["tunnelId"] == tunnel_id


def test_an_internal_error_is_a_500_with_an_audit_record_and_no_tunnel(
    stack: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(broker, "parse_request", broken)
    status, body, _ = stack.call(json_event(_body()))
    assert (status, body) == (
        500,
        {"field": "broker", "message": "broker: internal error; no tunnel was handed out"},
    )
    (audit,) = stack.audits()
    assert (audit["decision"], audit["status"]) == ("refused", 500)
    assert any(
        r["level"] == "ERROR" and "simulated bug" in r.get("exception", "")
        for r in log_records(stack.log)
    )
    assert stack.tunneling.count("OpenTunnel") == 0


def test_no_token_appears_in_any_log_line_or_metric(
    stack: Broker, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Allowed, rolled-back and failed requests, with every logger at DEBUG."""
    caplog.set_level("DEBUG")
    stack.monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    # allowed
    stack.tunneling.expect_list([], thing=THING)
    first = stack.tunneling.expect_open(thing=THING, minutes=30)
    stack.tunneling.expect_list([summary(first)], thing=THING)
    assert stack.call(json_event(_body()))[0] == 201
    # rolled back (concurrent request)
    stack.tunneling.expect_list([], thing=THING)
    second = stack.tunneling.expect_open(thing=THING, minutes=30)
    now = datetime.now(UTC)
    stack.tunneling.expect_list(
        [summary(second, created=now), summary("a-winner", created=now - timedelta(seconds=1))],
        thing=THING,
    )
    stack.tunneling.expect_error("close_tunnel", "InternalFailureException", 500)
    assert stack.call(json_event(_body()))[0] == 409
    # refused
    assert stack.call(json_event(_body(minutes=0)))[0] == 400

    captured = capsys.readouterr()
    everything = "\n".join([stack.log.getvalue(), caplog.text, captured.out, captured.err])
    assert len(stack.audits()) == 3
    assert "TunnelsOpened" in captured.out  # the EMF metrics were captured too
    assert len(stack.tunneling.tokens) == 4
    for token in stack.tunneling.tokens:
        assert token not in everything
