"""Fleet fan-out to 10,000 things: API calls per target, and time to dispatch at a rate.

The real dispatcher (``lambdas/command_fanout``) sends a command to every thing of a
thing group, wave after wave, against STAND-INS (not AWS, not moto): an in-memory
DynamoDB (``tests/support/dynamodb_standin.InMemoryDynamoDB`` behind a small Table
adapter), and counting stand-ins for ``ListThingsInThingGroup`` (paged like AWS: at most
``maxResults`` per page), ``iot-data`` Publish and SQS SendMessage. Then the real
responses function completes every target (``--no-responses`` skips it).

Time is a SIMULATED CLOCK, handed to the dispatcher: it advances by each SQS delay
and by an assumed latency per API call (``--latency-ms``, default 15 ms: an
assumption, not a measurement; one dispatcher makes its calls one after the other).
The dispatcher deducts a wave's own sending time from the delay before the next.
The CPU time of the handler on the stand-ins is measured and printed too.

    python benchmarks/command_fanout.py                  # 10,000 things at 10 and 100 per s
    python benchmarks/command_fanout.py --things 1000 --rates 5
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "benchmark")
os.environ.setdefault("AWS_REGION", "eu-west-1")

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # noqa: E402

from iot_remote_access.core.command_fanout import (  # noqa: E402
    FanoutRequest,
    fanout_item,
    target_id,
    wave_plan,
)
from iot_remote_access.core.commands import (  # noqa: E402
    CommandCatalogue,
    CommandSpec,
    ResponseMessage,
    correlation_data,
)
from iot_remote_access.core.topics import TopicModel  # noqa: E402
from iot_remote_access.lambdas.command_broker.handler import Clients  # noqa: E402
from iot_remote_access.lambdas.command_fanout import handler as dispatcher  # noqa: E402
from iot_remote_access.lambdas.command_responses import handler as responses  # noqa: E402
from tests.support.dynamodb_standin import InMemoryDynamoDB  # noqa: E402

OPERATOR = "arn:aws:sts::123456789012:assumed-role/iot-operators/alice"
SPEC = CommandSpec(
    name="reload",
    purpose="maintenance",
    senders=("arn:aws:iam::123456789012:role/iot-operators",),
    timeout_seconds=3600,
)
CATALOGUE = CommandCatalogue((SPEC,))


class Table:
    """The boto3 Table calls the functions make, over the low-level DynamoDB stand-in."""

    def __init__(self, client: InMemoryDynamoDB) -> None:
        self.client = client
        self.serialize = TypeSerializer().serialize
        self.deserialize = TypeDeserializer().deserialize

    def _low(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = dict(kwargs)
        for field in ("Key", "Item"):
            if field in out:
                out[field] = {k: self.serialize(v) for k, v in out[field].items()}
        if "ExpressionAttributeValues" in out:
            values = out["ExpressionAttributeValues"].items()
            out["ExpressionAttributeValues"] = {k: self.serialize(v) for k, v in values}
        out.pop("ConsistentRead", None)
        return out

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        found = self.client.get_item(**self._low(kwargs))
        if "Item" not in found:
            return {}
        return {"Item": {k: self.deserialize(v) for k, v in found["Item"].items()}}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.client.put_item(**self._low(kwargs))

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        return self.client.update_item(**self._low(kwargs))


class GroupStandIn:
    """STAND-IN for ListThingsInThingGroup: one group, pages of at most ``maxResults``."""

    def __init__(self, things: int) -> None:
        self.things = [f"sensor-{i:06d}" for i in range(things)]
        self.calls: Counter[str] = Counter()

    def list_things_in_thing_group(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["ListThingsInThingGroup"] += 1
        start = int(kwargs.get("nextToken") or 0)
        end = start + int(kwargs["maxResults"])
        page: dict[str, Any] = {"things": self.things[start:end]}
        if end < len(self.things):
            page["nextToken"] = str(end)
        return page


class PublishStandIn:
    """STAND-IN for iot-data Publish: counts, keeps nothing."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["Publish"] += 1
        return {}


class QueueStandIn:
    """STAND-IN for SQS SendMessage: keeps the last message (the next wave) and its delay."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls["SendMessage"] += 1
        self.last = kwargs
        return {}


def run(things: int, rate: int, latency: float, answer: bool) -> dict[str, Any]:
    dynamodb = InMemoryDynamoDB(key="id")
    table = Table(dynamodb)
    group, iot_data, queue = GroupStandIn(things), PublishStandIn(), QueueStandIn()
    aws = Clients(iot=group, iot_data=iot_data, executions=table, sqs=queue)
    start = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    request = FanoutRequest(SPEC, {}, "CHG-1", "maintenance", thing_group="g", rate_per_second=rate)
    # What the broker does on POST /fanouts: one PutItem and one SendMessage.
    table.put_item(Item=fanout_item("f", request, requester=OPERATOR, now=start, ttl=0))
    queue.send_message(MessageBody="first wave")
    clock = {"base": 0.0}

    def simulated_clock() -> float:
        """Seconds on the SIMULATED CLOCK: delays waited, plus every API call's latency."""
        return clock["base"] + _calls(dynamodb, group, iot_data, queue) * latency

    run_ = dispatcher.Dispatcher(CATALOGUE, TopicModel(), "", aws, "queue", simulated_clock).run
    waves, cpu, cursor = 0, 0.0, None
    while True:
        began = time.process_time()
        outcome = run_("f", cursor, now=start + timedelta(seconds=simulated_clock()))
        cpu += time.process_time() - began
        waves += 1
        if outcome != "next":
            break
        cursor = json.loads(queue.last["MessageBody"])["cursor"]
        clock["base"] += int(queue.last["DelaySeconds"])
    simulated = simulated_clock()
    dispatch_calls = Counter(dynamodb.calls) + group.calls + iot_data.calls + queue.calls
    response_calls: Counter[str] = Counter()
    if answer:
        before_answers = Counter(dynamodb.calls)
        responder = responses.Responder(CATALOGUE, "cmd/{thing}/responses", table)
        for thing in group.things:
            command_id = target_id("f", thing)
            payload = ResponseMessage(command_id, thing, "succeeded", {}).payload()
            responder.handle(
                {
                    "topic": f"cmd/{thing}/responses",
                    "payload": base64.b64encode(payload).decode(),
                    "correlation": base64.b64encode(correlation_data(command_id)).decode(),
                },
                now=start + timedelta(seconds=simulated),
            )
        response_calls = Counter(dynamodb.calls) - before_answers
    final = table.get_item(Key={"id": "f"})["Item"]
    return {
        "waves": waves,
        "simulated": simulated,
        "cpu": cpu,
        "dispatch": dispatch_calls,
        "responses": response_calls,
        "final": final,
    }


def _calls(dynamodb: InMemoryDynamoDB, *others: Any) -> int:
    return sum(dynamodb.calls.values()) + sum(sum(o.calls.values()) for o in others)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument("--rates", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--latency-ms", type=float, default=15.0)
    parser.add_argument("--no-responses", action="store_true")
    args = parser.parse_args()
    for rate in args.rates:
        with contextlib.redirect_stdout(io.StringIO()):  # EMF metrics and audit lines
            for log in (dispatcher.logger, responses.logger):
                log.registered_handler.setStream(io.StringIO())
            result = run(args.things, rate, args.latency_ms / 1000, not args.no_responses)
        _report(args.things, rate, args.latency_ms, result)


def _report(things: int, rate: int, latency_ms: float, result: dict[str, Any]) -> None:
    size, delay = wave_plan(rate)
    final = result["final"]
    ideal = things / rate
    print(f"\n== {things:,} things, thing group, rate {rate}/s (waves of {size}, {delay} s apart)")
    print(
        f"dispatched {int(final['dispatched']):,}, refused {int(final['refused'])}, "
        f"status {final['status']}; waves {result['waves']}"
    )
    dispatch = result["dispatch"]
    total = sum(dispatch.values())
    per_api = ", ".join(f"{k} {v / things:.3f}" for k, v in sorted(dispatch.items()))
    print(f"dispatch API calls per target: {total / things:.3f} ({per_api})")
    if result["responses"]:
        answers = result["responses"]
        per = ", ".join(f"{k} {v / things:.3f}" for k, v in sorted(answers.items()))
        print(f"response API calls per target: {sum(answers.values()) / things:.3f} ({per})")
        print(f"counters after the answers: succeeded {int(final['succeeded']):,}")
    print(
        f"SIMULATED time to dispatch: {result['simulated']:.0f} s "
        f"(ideal at the rate: {ideal:.0f} s; assumed {latency_ms:g} ms per API call, sequential)"
    )
    print(
        f"dispatcher CPU on the stand-ins: {result['cpu']:.2f} s "
        f"({result['cpu'] / things * 1e3:.2f} ms per target)"
    )


if __name__ == "__main__":
    main()
