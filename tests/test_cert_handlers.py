"""The four rotation handlers as Lambda runs them (Powertools, environment), against moto.

The Lambda context is a plain stand-in object with the attributes Powertools reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from moto import mock_aws

from iot_remote_access.lambdas.cert_confirm import handler as confirm_handler
from iot_remote_access.lambdas.cert_planner import handler as planner_handler
from iot_remote_access.lambdas.cert_signer import handler as signer_handler
from iot_remote_access.lambdas.cert_worker import handler as worker_handler
from iot_remote_access.lambdas.certs import runtime as runtime_module
from iot_remote_access.lambdas.certs.config import ConfigError, RotationConfig
from tests.test_cert_rotation_moto import POLICY, Device, create_active_ca, create_inventory_table


@dataclass
class LambdaContextStandIn:
    function_name: str = "cert-handler"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:cert-handler"
    aws_request_id: str = "req-1"


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        create_inventory_table(session, "inv")
        ca_arn = create_active_ca(session)
        iot = session.client("iot")
        iot.create_policy(
            policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        queue_url = session.client("sqs").create_queue(QueueName="work")["QueueUrl"]
        for key, value in {
            "INVENTORY_TABLE": "inv",
            "CA_ARN": ca_arn,
            "DEVICE_POLICY_NAME": POLICY,
            "WORK_QUEUE_URL": queue_url,
            "INLINE_LIMIT": "0",
            "POWERTOOLS_METRICS_NAMESPACE": "IotRemoteAccess",
            "POWERTOOLS_SERVICE_NAME": "test",
        }.items():
            monkeypatch.setenv(key, value)
        runtime_module.runtime.cache_clear()
        # Lambda sets these before the module is imported; the test imported it earlier.
        for module in (planner_handler, signer_handler, confirm_handler):
            monkeypatch.setattr(module.metrics.provider, "namespace", "IotRemoteAccess")
        iot.create_thing(thingName="sensor-1")
        cert = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_thing_principal(thingName="sensor-1", principal=cert["certificateArn"])
        runtime_module.runtime().inventory.enroll(
            "sensor-1",
            certificate_id=cert["certificateId"],
            not_after=datetime.now(UTC) + timedelta(days=20),
            now=datetime.now(UTC),
        )
        yield {
            "session": session,
            "queue_url": queue_url,
            "device": Device("sensor-1", cert["certificateId"]),
        }
        runtime_module.runtime.cache_clear()


def drain_through_worker(sqs: Any, queue_url: str, context: LambdaContextStandIn) -> dict[str, Any]:
    """Hand the queued messages to the worker handler as Lambda's SQS event source would."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:work",
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }
    for m in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    result: dict[str, Any] = worker_handler.handler(event, context)
    return result


def test_handlers_rotate_a_device_through_sqs_fan_out_without_logging_key_material(
    deployed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    context = LambdaContextStandIn()
    sqs = deployed["session"].client("sqs")
    device: Device = deployed["device"]

    planned = planner_handler.handler({"action": "plan"}, context)
    assert planned["statusCode"] == 200 and json.loads(planned["body"])["queued"] == 1
    assert drain_through_worker(sqs, deployed["queue_url"], context) == {"batchItemFailures": []}
    item = runtime_module.runtime().inventory.get("sensor-1")
    assert item is not None and item["rotationState"] == "SCHEDULED"
    slot = datetime.strptime(item["slotHour"], "%Y-%m-%dT%H").replace(tzinfo=UTC)
    dispatched = runtime_module.runtime().sweep.dispatch(slot)  # the hourly run at the slot's hour
    assert dispatched.body["queued"] == 1
    assert drain_through_worker(sqs, deployed["queue_url"], context) == {"batchItemFailures": []}

    signed = signer_handler.handler(device.csr_event(device.csr()), context)
    assert signed["statusCode"] == 200
    device.certificate_id = json.loads(signed["body"])["certificateId"]
    confirmed = confirm_handler.handler(device.confirm_event(), context)
    assert confirmed["statusCode"] == 200 and json.loads(confirmed["body"])["status"] == "confirmed"

    logs = capsys.readouterr().out
    key_pem = device.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert "PRIVATE KEY" not in logs and key_pem.splitlines()[1] not in logs
    emitted = [json.loads(line) for line in logs.splitlines() if line.startswith('{"_aws"')]
    names = {
        m["Name"] for e in emitted for d in e["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    }
    assert {
        "RotationsPending",
        "ExpiringWithin30Days",
        "CertificatesIssued",
        "RotationSucceeded",
    } <= names


def test_signer_rejection_is_a_4xx_json_body(deployed: dict[str, Any]) -> None:
    device: Device = deployed["device"]
    response = signer_handler.handler(device.csr_event("garbage"), LambdaContextStandIn())
    assert response["statusCode"] == 400
    assert json.loads(response["body"]) == {
        "status": "rejected",
        "reason": "csr: no PEM 'CERTIFICATE REQUEST' blocks; allowed: exactly one PEM "
        "'CERTIFICATE REQUEST' block",
    }


@pytest.mark.parametrize("event", [{"action": "explode"}, {}, {"action": None}])
def test_planner_refuses_unknown_actions_with_400(
    deployed: dict[str, Any], event: dict[str, Any]
) -> None:
    response = planner_handler.handler(event, LambdaContextStandIn())
    assert response["statusCode"] == 400
    assert "is not allowed; allowed: plan, dispatch" in json.loads(response["body"])["error"]


def test_worker_reports_a_bad_message_as_a_batch_item_failure(deployed: dict[str, Any]) -> None:
    event = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "r",
                "body": json.dumps([{"kind": "explode", "thing": "x"}]),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:work",
                "awsRegion": "eu-west-1",
            }
        ]
    }
    assert worker_handler.handler(event, LambdaContextStandIn()) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]
    }


def test_missing_environment_is_named() -> None:
    with pytest.raises(ConfigError, match="environment variable INVENTORY_TABLE is not set"):
        RotationConfig.from_env({})
    with pytest.raises(
        ConfigError, match="environment variable LEAD_DAYS: 'soon' is not an integer"
    ):
        RotationConfig.from_env({"INVENTORY_TABLE": "t", "LEAD_DAYS": "soon"})
