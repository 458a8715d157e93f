"""Runs the tunnel-metrics handler in-process over moto's DynamoDB, for tests and the benchmark.

moto has no Secure Tunneling API, so DescribeTunnel goes to a botocore Stubber
(``tunneling_stubber``): a stand-in with the real response shape, not AWS.
"""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
from botocore.stub import Stubber

from iot_remote_access.core.aws_schema import (
    OPEN_INDEX,
    OPEN_INDEX_KEY,
    OPEN_INDEX_SORT,
)
from iot_remote_access.core.aws_schema import TUNNEL_STATE_KEY as KEY
from iot_remote_access.core.aws_schema import TUNNEL_STATE_TTL_ATTRIBUTE as TTL_ATTRIBUTE
from iot_remote_access.lambdas.tunnel_metrics import handler as handler_module
from iot_remote_access.lambdas.tunnel_metrics.handler import TunnelMetricsApp
from tests.support.secure_tunneling_events import REGION

TABLE = "tunnel-state"


def create_state_table(client: Any, name: str = TABLE) -> None:
    """The same key schema and index as the TunnelAlarms construct's table."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": KEY, "AttributeType": "S"},
            {"AttributeName": OPEN_INDEX_KEY, "AttributeType": "S"},
            {"AttributeName": OPEN_INDEX_SORT, "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": OPEN_INDEX_KEY, "KeyType": "HASH"},
                    {"AttributeName": OPEN_INDEX_SORT, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": ["thingName", "openedAt"],
                },
            }
        ],
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


@dataclass
class FakeLambdaContext:
    function_name: str = "tunnel-metrics"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:tunnel-metrics"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Invocation:
    result: dict[str, Any]
    emf: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    stdout: str


@dataclass
class CallCounter:
    calls: dict[str, int] = field(default_factory=dict)

    def __call__(self, event_name: str, **_: Any) -> None:
        operation = event_name.split(".")[-1]
        self.calls[operation] = self.calls.get(operation, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class Harness:
    """One TunnelMetricsApp over a moto table and a Stubber for Secure Tunneling."""

    def __init__(self, renewal_window: timedelta = timedelta(minutes=15)) -> None:
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_state_table(self.dynamodb)
        self.tunneling = boto3.client("iotsecuretunneling", region_name=REGION)
        self.tunneling_stubber = Stubber(self.tunneling)
        self.tunneling_stubber.activate()
        self.dynamodb_calls = CallCounter()
        self.dynamodb.meta.events.register("before-call.dynamodb.*", self.dynamodb_calls)
        self.app = TunnelMetricsApp(
            table_name=TABLE,
            dynamodb=self.dynamodb,
            tunneling=self.tunneling,
            renewal_window=renewal_window,
        )
        self.context = FakeLambdaContext()

    def invoke(self, event: object, *, entry_point: bool = False) -> Invocation:
        """Run one event; ``entry_point`` goes through the module's decorated ``handler``."""
        stdout = io.StringIO()
        log_handler = handler_module.logger.registered_handler
        assert isinstance(log_handler, logging.StreamHandler)
        previous = log_handler.setStream(stdout)
        try:
            with redirect_stdout(stdout):
                if entry_point:
                    result = handler_module.handler(event, self.context)  # type: ignore[arg-type]
                else:
                    result = self.app.process(event, self.context)
        finally:
            log_handler.setStream(previous)
        text = stdout.getvalue()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return Invocation(
            result=result,
            emf=[line for line in lines if "_aws" in line],
            logs=[line for line in lines if "_aws" not in line],
            stdout=text,
        )

    def scan(self) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=TABLE)["Items"])

    def thing_item(self, thing: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(TableName=TABLE, Key={KEY: {"S": f"thing#{thing}"}})
        return dict(item.get("Item", {}))
