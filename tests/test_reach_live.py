"""`reach --live`: each witness asked of AWS IoT's TestAuthorization.

moto does not implement TestAuthorization, so the IoT API here is a botocore
``Stubber`` (a stand-in) holding the real request and response shapes; the test
asserts the exact requests the command sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.support.cli_runner import run_cli

CERT = "arn:aws:iot:eu-west-1:123456789012:cert/" + "a" * 64
PREFIX = "arn:aws:iot:eu-west-1:123456789012:"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{PREFIX}client/${{iot:Connection.Thing.ThingName}}",
        },
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{PREFIX}topic/dt/*"},
    ],
}


@pytest.fixture
def stubbed_iot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client(
        "iot", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    monkeypatch.setattr(boto3.Session, "client", lambda self, *a, **k: client)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def _expect(stubber: Stubber, decision: str) -> None:
    stubber.add_response(
        "get_policy",
        {
            "policyName": "fleet",
            "policyArn": f"{PREFIX}policy/fleet",
            "policyDocument": json.dumps(POLICY),
        },
        {"policyName": "fleet"},
    )
    request: dict[str, Any] = {
        "principal": CERT,
        "clientId": "sensor-1",
        "policyNamesToAdd": ["fleet"],
        "authInfos": [
            {"actionType": "PUBLISH", "resources": [f"{PREFIX}topic/dt/device-b/telemetry"]}
        ],
    }
    stubber.add_response(
        "test_authorization",
        {"authResults": [{"authInfo": request["authInfos"][0], "authDecision": decision}]},
        request,
    )


def test_a_witness_allowed_by_aws_is_reported_confirmed(stubbed_iot: Stubber) -> None:
    _expect(stubbed_iot, "ALLOWED")
    result = run_cli(
        "reach",
        "--live",
        "--principal",
        CERT,
        "--attacker",
        "sensor-1",
        "--region",
        "eu-west-1",
        "fleet",
    )
    assert result.code == 1, result.stderr
    assert (
        "can publish 'dt/device-b/telemetry' of 'device-b' [TestAuthorization: ALLOWED (confirmed)]"
        in result.stdout
    )


def test_a_witness_aws_denies_is_reported_not_confirmed(stubbed_iot: Stubber) -> None:
    _expect(stubbed_iot, "EXPLICIT_DENY")
    result = run_cli(
        "reach",
        "--live",
        "--principal",
        CERT,
        "--attacker",
        "sensor-1",
        "--region",
        "eu-west-1",
        "fleet",
        "--format",
        "json",
    )
    (report,) = json.loads(result.stdout)
    assert report["findings"][0]["note"] == "TestAuthorization: EXPLICIT_DENY (not confirmed)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--live", "fleet"), "--principal: required with --live"),
        (
            ("--live", "--principal", "arn:aws:iot:eu-west-1:1:cert/zz", "fleet"),
            "--principal: 'arn:aws:iot:eu-west-1:1:cert/zz'",
        ),
    ],
)
def test_bad_live_options_are_one_line_and_exit_2(args: tuple[str, ...], expected: str) -> None:
    result = run_cli("reach", *args)
    assert result.code == 2
    assert expected in result.stderr and result.stderr.count("\n") == 1
