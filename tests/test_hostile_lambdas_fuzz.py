"""Fuzz: every Lambda entry point against hostile input (issue 14), one contract each.

API-style handlers (broker, signer, confirm, planner, security handlers) answer a
4xx JSON body; event handlers (worker, sweeper, tunnel metrics) refuse cleanly or
report a partial-batch failure. Always: no traceback in the logs, bounded time and
memory, the audit record written, nothing half-done (no tunnel opened, no
certificate issued or changed).

Real parts: the handlers as Lambda runs them (Powertools), moto for IoT, DynamoDB,
ACM Private CA, SQS, EventBridge; the STUBBED Secure Tunneling API of
tests/support/tunneling_stub.py for the broker (moto has none); for the sweeper a
named stand-in client (``HostileTunnelingStandIn``) returns hostile but well-typed
DescribeTunnel answers, as botocore would after parsing.

``IRA_FUZZ_EXAMPLES`` sets the examples per entry point (default 25; CI is
derandomized by the ``ci`` profile in tests/conftest.py). The long run and its
figures are in docs/hostile-lambdas.md.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from iot_remote_access.core.security_detections import AlarmRoute, Detection, DetectionConfig
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.core.tunnel_rules import TunnelPolicy
from iot_remote_access.lambdas.cert_confirm import handler as confirm_handler
from iot_remote_access.lambdas.cert_planner import handler as planner_handler
from iot_remote_access.lambdas.cert_signer import handler as signer_handler
from iot_remote_access.lambdas.cert_worker import handler as worker_handler
from iot_remote_access.lambdas.certs import runtime as runtime_module
from iot_remote_access.lambdas.tunnel_sweeper import handler as sweeper
from tests.support import security_fixtures as fx
from tests.support.hostile import (
    FUZZ,
    TALLY,
    hostile_body,
    hostile_bytes,
    hostile_json,
    hostile_scalar,
    hostile_text,
    measured,
    no_traceback,
    within_bounds,
)
from tests.support.tunneling_stub import Utf8Stream, log_records, url_event
from tests.test_cert_handlers import LambdaContextStandIn, deployed  # noqa: F401 - fixture
from tests.test_tunnel_broker import Broker, stack  # noqa: F401 - fixture

CLIENT_ERRORS = range(400, 500)
ANOMALY_ALARM = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:Ref-PublishRateAnomaly"


def _records_since(stream: Utf8Stream, offset: int) -> list[dict[str, Any]]:
    """The JSON records written after ``offset`` (each must be exactly one line)."""
    text = stream.getvalue()[offset:]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def print_tally() -> Iterator[None]:
    yield
    print("\nhostile inputs tried per entry point:", json.dumps(TALLY.counts, sort_keys=True))


# -- tunnel broker ---------------------------------------------------------------------


@FUZZ
@given(
    body=st.one_of(hostile_body, hostile_bytes),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "post", "DELETE"]),
    path=st.one_of(st.just("/tunnels"), st.just("/tunnels"), hostile_text),
)
def test_broker_refuses_hostile_requests(
    stack: Broker,  # noqa: F811
    body: str | bytes,
    method: str,
    path: str,
) -> None:
    offset = len(stack.log.getvalue())
    run = measured(lambda: stack.call(url_event(body, method=method, path=path)))
    TALLY.add("tunnel_broker")
    assert run.error is None, run.error
    status, answer, headers = run.result
    within_bounds(run, body)
    assert headers["Content-Type"] == "application/json"
    assert status in CLIENT_ERRORS or (status == 503 and answer["field"] == "aws"), answer
    assert isinstance(answer["field"], str) and isinstance(answer["message"], str)
    assert answer["message"].startswith(f"{answer['field']}: ")
    assert len(answer["message"]) < 1000
    assert stack.tunneling.count("OpenTunnel") == 0
    audits = [r["audit"] for r in _records_since(stack.log, offset) if "audit" in r]
    assert [a["decision"] for a in audits] == ["refused"]
    no_traceback(stack.log.getvalue()[offset:])


# -- certificate rotation (signer, confirm, planner, worker) ------------------------------


@dataclass
class Rotation:
    deployed: dict[str, Any]
    log: Utf8Stream
    issue_requests: list[dict[str, Any]] = field(default_factory=list)

    def certificates(self) -> list[tuple[str, str]]:
        iot = self.deployed["session"].client("iot")
        return sorted(
            (c["certificateId"], c["status"]) for c in iot.list_certificates()["certificates"]
        )


@pytest.fixture
def rotation(deployed: dict[str, Any]) -> Iterator[Rotation]:  # noqa: F811
    stream = Utf8Stream()
    handlers = [
        module.logger.registered_handler
        for module in (signer_handler, confirm_handler, planner_handler, worker_handler)
    ]
    previous = [h.setStream(stream) for h in handlers]  # type: ignore[attr-defined]
    state = Rotation(deployed, stream)

    def record(params: dict[str, Any], **_: Any) -> None:
        state.issue_requests.append(dict(params))

    runtime_module.runtime().rotation.clients.pca.meta.events.register(
        "provide-client-params.acm-pca.IssueCertificate", record
    )
    # Warm up (clients load their service models on first use): the bound is for
    # what an input costs, not for a cold start.
    for warm_up in ({"topic": "rot/sensor-1/csr"}, {"topic": "rot/sensor-1/confirm"}):
        signer_handler.handler(warm_up, LambdaContextStandIn())
        confirm_handler.handler(warm_up, LambdaContextStandIn())
    try:
        yield state
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            handler.setStream(old)  # type: ignore[attr-defined]


def _device_event(topics: list[str]) -> st.SearchStrategy[Any]:
    keys = st.fixed_dictionaries(
        {},
        optional={
            "topic": st.one_of(st.sampled_from(topics), hostile_text, hostile_scalar),
            "csr": st.one_of(
                hostile_text,
                hostile_scalar,
                hostile_text.map(
                    lambda body: (
                        "-----BEGIN CERTIFICATE REQUEST-----\n"
                        + body
                        + "\n-----END CERTIFICATE REQUEST-----"
                    )
                ),
            ),
            "principal": st.one_of(hostile_text, hostile_scalar, st.just("REAL")),
        },
    )
    return st.one_of(keys, hostile_json)


def _with_principal(event: Any, rotation: Rotation) -> Any:
    if isinstance(event, dict) and event.get("principal") == "REAL":
        return {**event, "principal": rotation.deployed["device"].certificate_id}
    return event


@FUZZ
@given(event=_device_event(["rot/sensor-1/csr", "rot/ghost/csr"]))
def test_signer_refuses_hostile_csr_events(rotation: Rotation, event: Any) -> None:
    before = rotation.certificates()
    offset = len(rotation.log.getvalue())
    event = _with_principal(event, rotation)
    run = measured(lambda: signer_handler.handler(event, LambdaContextStandIn()))
    TALLY.add("cert_signer")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert run.result["statusCode"] in CLIENT_ERRORS
    assert json.loads(run.result["body"])["status"] == "rejected"
    assert rotation.issue_requests == [] and rotation.certificates() == before
    (last,) = (r for r in _records_since(rotation.log, offset) if "audit" in r)
    assert last["audit"]["event"] == "certificate.sign" and last["audit"]["decision"] == "refused"
    no_traceback(rotation.log.getvalue()[offset:])


@FUZZ
@given(event=_device_event(["rot/sensor-1/confirm", "rot/ghost/confirm"]))
def test_confirm_refuses_hostile_confirmations(rotation: Rotation, event: Any) -> None:
    before = rotation.certificates()
    offset = len(rotation.log.getvalue())
    event = _with_principal(event, rotation)
    run = measured(lambda: confirm_handler.handler(event, LambdaContextStandIn()))
    TALLY.add("cert_confirm")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert run.result["statusCode"] in CLIENT_ERRORS, run.result
    assert rotation.certificates() == before  # the old certificate stays ACTIVE
    (last,) = (r for r in _records_since(rotation.log, offset) if "audit" in r)
    assert last["audit"]["event"] == "certificate.confirm"
    no_traceback(rotation.log.getvalue()[offset:])


@FUZZ
@given(event=st.one_of(hostile_json, st.fixed_dictionaries({"action": hostile_json})))
def test_planner_refuses_hostile_schedules(rotation: Rotation, event: Any) -> None:
    valid = isinstance(event, dict) and event.get("action") in planner_handler.ACTIONS
    offset = len(rotation.log.getvalue())
    run = measured(lambda: planner_handler.handler(event, LambdaContextStandIn()))
    TALLY.add("cert_planner")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert run.result["statusCode"] in ((200, 207) if valid else (400,))
    assert rotation.issue_requests == []
    no_traceback(rotation.log.getvalue()[offset:])


def _sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "r",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:work",
        "awsRegion": "eu-west-1",
    }


@FUZZ
@given(
    bodies=st.lists(st.one_of(hostile_body, hostile_json.map(json.dumps)), min_size=1, max_size=4)
)
def test_worker_reports_hostile_messages_as_batch_failures(
    rotation: Rotation, bodies: list[str]
) -> None:
    event = {"Records": [_sqs_record(f"m{i}", body) for i, body in enumerate(bodies)]}
    before = rotation.certificates()
    run = measured(lambda: worker_handler.handler(event, LambdaContextStandIn()))
    TALLY.add("cert_worker")
    assert run.error is None, run.error
    within_bounds(run, bodies)
    assert set(run.result) == {"batchItemFailures"}
    failed = {f["itemIdentifier"] for f in run.result["batchItemFailures"]}
    assert failed <= {f"m{i}" for i in range(len(bodies))}
    assert rotation.issue_requests == [] and rotation.certificates() == before


# -- tunnel sweeper ----------------------------------------------------------------------


@dataclass
class HostileTunnelingStandIn:
    """A STAND-IN for the Secure Tunneling client: hostile but well-typed answers."""

    tunnels: list[dict[str, Any]]
    closed: list[str] = field(default_factory=list)

    def list_tunnels(self, **_: Any) -> dict[str, Any]:
        return {
            "tunnelSummaries": [{"tunnelId": t["tunnelId"], "status": "OPEN"} for t in self.tunnels]
        }

    def describe_tunnel(self, tunnelId: str) -> dict[str, Any]:
        return {"tunnel": next(t for t in self.tunnels if t["tunnelId"] == tunnelId)}

    def close_tunnel(self, tunnelId: str, delete: bool) -> dict[str, Any]:
        self.closed.append(tunnelId)
        return {}


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
hostile_tag = st.fixed_dictionaries(
    {
        "key": st.one_of(
            st.sampled_from(
                ["iot-remote-access:expires-at", "iot-remote-access:requester", "other"]
            ),
            hostile_text.map(lambda t: t[:128]),
        ),
        "value": hostile_text.map(lambda t: t[:256]),
    }
)
hostile_tunnel = st.fixed_dictionaries(
    {
        "tunnelId": st.uuids().map(str),
        "status": st.sampled_from(["OPEN", "CLOSED", "open", ""]),
        "description": hostile_text.map(lambda t: t[:2048]),
        "createdAt": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
        "timeoutConfig": st.fixed_dictionaries({"maxLifetimeTimeoutMinutes": st.integers(1, 720)}),
        "destinationConfig": st.fixed_dictionaries(
            {"thingName": hostile_text.map(lambda t: t[:128]), "services": st.just(["SSH"])}
        ),
        "sourceConnectionState": st.fixed_dictionaries(
            {"status": st.sampled_from(["CONNECTED", "DISCONNECTED"])}
        ),
        "tags": st.lists(hostile_tag, max_size=5),
    }
)


@FUZZ
@given(tunnels=st.lists(hostile_tunnel, max_size=5, unique_by=lambda t: t["tunnelId"]))
def test_sweeper_survives_hostile_tunnel_descriptions(tunnels: list[dict[str, Any]]) -> None:
    client = HostileTunnelingStandIn(tunnels)
    stream = Utf8Stream()
    handler = sweeper.logger.registered_handler
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        with redirect_stdout(io.StringIO()):
            run = measured(lambda: sweeper.sweep(client, TunnelPolicy(), now=NOW))
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    TALLY.add("tunnel_sweeper")
    assert run.error is None, run.error
    within_bounds(run, tunnels)
    assert run.result["closed"] == client.closed
    closes = [r["audit"] for r in log_records(stream) if "audit" in r]
    assert [a["tunnelId"] for a in closes] == client.closed  # every close is audited
    no_traceback(stream.getvalue())


# -- security detections and alarm events -------------------------------------------------


@pytest.fixture
def security(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    with mock_aws():
        monkeypatch.setenv("EVENT_BUS_NAME", "default")
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "iot-remote-access-test")
        monkeypatch.setenv(
            "DETECTION_CONFIG", DetectionConfig(access=DeviceAccess(tunneling=True)).to_json()
        )
        # The anomaly alarm only: the per-device alarm asks Contributor Insights (no moto).
        routes = {ANOMALY_ALARM: AlarmRoute(Detection.PUBLISH_RATE_ANOMALY).to_dict()}
        monkeypatch.setenv("ALARM_ROUTES", json.dumps(routes))
        modules = {
            name: importlib.reload(
                importlib.import_module(f"iot_remote_access.lambdas.{name}.handler")
            )
            for name in ("security_detections", "security_alarm_events")
        }
        yield modules


def _invoke(module: ModuleType, event: Any) -> tuple[Any, str]:
    stream = Utf8Stream()
    handler = module.logger.registered_handler
    previous = handler.setStream(stream)
    try:
        with redirect_stdout(io.StringIO()):
            run = measured(lambda: module.handler(event, LambdaContextStandIn()))
    finally:
        handler.setStream(previous)
    return run, stream.getvalue()


def _lifecycle(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(sorted(base)), hostile_json, max_size=4).map(
        lambda changes: {**base, **changes}
    )


@FUZZ
@given(
    event=st.one_of(
        _lifecycle(fx.SUBSCRIBED),
        _lifecycle(fx.CONNECTED),
        hostile_json,
        st.lists(st.one_of(hostile_text, hostile_json.map(json.dumps)), max_size=4).map(
            fx.cloudwatch_logs_subscription_event
        ),
    )
)
def test_security_detections_refuse_hostile_events(
    security: dict[str, ModuleType], event: Any
) -> None:
    run, logs = _invoke(security["security_detections"], event)
    TALLY.add("security_detections")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert run.result["statusCode"] in (200, 400)
    json.loads(run.result["body"])
    no_traceback(logs)


@FUZZ
@given(
    event=st.one_of(
        hostile_json,
        st.dictionaries(
            st.sampled_from(["resources", "detail", "time", "source"]), hostile_json, max_size=3
        ).map(lambda changes: {**fx.alarm_state_change(ANOMALY_ALARM), **changes}),
    )
)
def test_alarm_events_refuse_hostile_events(security: dict[str, ModuleType], event: Any) -> None:
    run, logs = _invoke(security["security_alarm_events"], event)
    TALLY.add("security_alarm_events")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert run.result["statusCode"] in (200, 400)
    no_traceback(logs)


# -- tunnel metrics (tests only: its code belongs to the performance work) ---------------------


@pytest.fixture
def metrics_harness() -> Iterator[Any]:
    from tests.support.tunnel_metrics_harness import Harness

    with mock_aws():
        yield Harness()


def _cloudtrail(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iot",
        "time": (NOW - timedelta(minutes=1)).isoformat(),
        "detail": detail,
    }


@FUZZ
@given(
    event=st.one_of(
        hostile_json,
        st.dictionaries(
            st.sampled_from(
                [
                    "eventSource",
                    "eventName",
                    "eventID",
                    "requestParameters",
                    "responseElements",
                    "eventTime",
                ]
            ),
            hostile_json,
            max_size=6,
        ).map(_cloudtrail),
    )
)
def test_tunnel_metrics_handler_refuses_hostile_events(metrics_harness: Any, event: Any) -> None:
    run = measured(lambda: metrics_harness.invoke(event))
    TALLY.add("tunnel_metrics")
    assert run.error is None, run.error
    within_bounds(run, event)
    assert isinstance(run.result.result, dict)
    no_traceback(run.result.stdout)
