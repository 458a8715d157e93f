"""`audit` reads policies from a bounded pool of threads, in a deterministic order."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from iot_remote_access.guard.audit import PAGE_SIZE, PolicySummary, fetch_policies, list_policies
from tests.support.cli_runner import run_cli

STAR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
}
OK = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:eu-west-1:1:topic/x"}
    ],
}


@pytest.fixture
def account() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("iot", region_name="eu-west-1")
        names = [f"policy-{i:03d}" for i in range(90)]
        random.Random(7).shuffle(names)
        for index, name in enumerate(names):
            client.create_policy(
                policyName=name, policyDocument=json.dumps(STAR if index % 3 else OK)
            )
        yield client


def test_reports_are_the_same_whatever_the_concurrency(account: Any) -> None:
    """moto's IoT: one thread and sixteen give byte-identical reports."""
    one = run_cli("audit", "--region", "eu-west-1", "-f", "json", "--concurrency", "1")
    many = run_cli("audit", "--region", "eu-west-1", "-f", "json", "--concurrency", "16")
    assert one.code == many.code == 1
    assert one.stdout == many.stdout
    assert json.loads(many.stdout)["policiesChecked"] == 90


class SlowClient:
    """A stand-in for the IoT client (not AWS): random latency, counts requests in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.rng = random.Random(3)

    def get_policy(self, policyName: str) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            delay = self.rng.uniform(0, 0.01)
        time.sleep(delay)
        with self.lock:
            self.in_flight -= 1
        return {"policyDocument": json.dumps({"name": policyName})}


def test_bounded_in_flight_order_kept_and_progress_reported() -> None:
    client = SlowClient()
    summaries = [PolicySummary(f"p{i}", f"arn:p{i}") for i in range(60)]
    ticks: list[int] = []
    sources = fetch_policies(client, summaries, concurrency=5, done=lambda: ticks.append(1))
    assert [s.name for s in sources] == [s.name for s in summaries]
    assert [json.loads(s.document)["name"] for s in sources] == [s.name for s in summaries]
    assert 1 < client.most <= 5 and len(ticks) == 60


def test_the_first_error_is_raised() -> None:
    client = SlowClient()
    real = client.get_policy

    def failing(policyName: str) -> dict[str, Any]:
        if policyName == "p7":
            raise RuntimeError("denied")
        return real(policyName)

    client.get_policy = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="denied"):
        fetch_policies(client, [PolicySummary(f"p{i}", "a") for i in range(20)], concurrency=4)
    with pytest.raises(ValueError, match=r"concurrency: 0; allowed: 1\.\.64"):
        fetch_policies(client, [], concurrency=0)


def test_pages_are_asked_at_the_largest_size(account: Any) -> None:
    paginate = mock.MagicMock(return_value=[{"policies": [{"policyName": "a"}]}])
    with mock.patch.object(account, "get_paginator") as get_paginator:
        get_paginator.return_value.paginate = paginate
        assert list_policies(account) == [PolicySummary("a", "a")]
    paginate.assert_called_once_with(PaginationConfig={"PageSize": PAGE_SIZE})


def test_client_retries_throttling_adaptively(account: Any) -> None:
    made: list[Any] = []
    real = boto3.Session.client

    def client(self: boto3.Session, service: str, **kwargs: Any) -> Any:
        made.append(kwargs.get("config"))
        return real(self, service, **kwargs)

    with mock.patch.object(boto3.Session, "client", client):
        result = run_cli("audit", "--region", "eu-west-1", "--concurrency", "4", "-f", "json")
    assert result.code == 1
    (config,) = made
    assert config.retries["mode"] == "adaptive"  # botocore keeps max_attempts as total_max_attempts
    assert config.max_pool_connections >= 4


def test_bad_concurrency_is_one_line_exit_2() -> None:
    result = run_cli("audit", "--region", "eu-west-1", "--concurrency", "0")
    assert result.code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--concurrency'") and "1<=x<=64" in line
