"""The GCP command service against the Pub/Sub emulator: every bad input of issue 15.

Sends publish to the real emulator (topology by the real plan + deploy, commands on);
responses are fed as the bridge publishes them (the ``thing`` attribute from the MQTT
topic, hex correlation data) and also through the emulator's responses subscription.
Each refusal names its field, is audited, and leaves every other execution unchanged.
"""

from __future__ import annotations

import itertools
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import pubsub_v1

from iot_remote_access.core.command_store import ExecutionStore
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    ResponseMessage,
)
from iot_remote_access.core.tree import Root
from iot_remote_access.pubsub.command_service import GcpCommandService, PubsubNames
from iot_remote_access.pubsub.deploy import deploy
from iot_remote_access.pubsub.plan import plan
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks.gcp_pubsub_stack import GcpPubsubStack
from tests.gcp.conftest import GCP_SETTINGS
from tests.support.processes import PubsubEmulator

OPERATOR = "serviceAccount:operator@fleet.iam.gserviceaccount.com"
OTHER = "user:someone@example.com"
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="diagnostics",
            purpose="maintenance",
            senders=(OPERATOR,),
            arguments={
                "type": "object",
                "properties": {
                    "level": {"type": "string", "enum": ["basic", "full"], "maxLength": 5}
                },
                "required": ["level"],
                "additionalProperties": False,
            },
            result={
                "type": "object",
                "properties": {"uptime": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
            timeout_seconds=20,
            things="temp-[0-9]+",
        ),
        CommandSpec(name="dump-occupancy", purpose="occupancy-analytics", senders=(OTHER,)),
    )
)
_projects = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def names(emulator: PubsubEmulator) -> PubsubNames:
    project = f"cmd-svc-{os.getpid()}-{next(_projects)}"
    fleet = FleetSettings.parse({"gcp": GCP_SETTINGS})
    assert fleet.gcp is not None
    stack = GcpPubsubStack(Root(), "PubSub", project=project, settings=fleet.gcp, commands=True)
    desired = stack.desired_state()
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    deploy(plan(desired, publisher, subscriber), desired, publisher, subscriber)
    pubsub = fleet.gcp.pubsub
    return PubsubNames.of(project, pubsub.commands_topic, pubsub.responses_subscription)


def service(names: PubsubNames, clock: Clock, requester: str = OPERATOR) -> GcpCommandService:
    return GcpCommandService(
        catalogue=CATALOGUE,
        names=names,
        publisher=pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        ),
        subscriber=pubsub_v1.SubscriberClient(),
        store=ExecutionStore(":memory:"),
        requester=requester,
        clock=clock,
    )


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "thing": "temp-1",
        "name": "diagnostics",
        "arguments": {"level": "full"},
        "reason": "INC-7",
        "purpose": "maintenance",
        **overrides,
    }


def attributes(thing: str, command_id: str | None = None) -> dict[str, str]:
    found = {"thing": thing, "mqttTopic": f"cmd/{thing}/responses"}
    if command_id is not None:
        found["correlationData"] = command_id.encode().hex()
    return found


BAD_REQUESTS = [
    (body(name="reboot-all"), "name", 404),
    (body(name="Reboot"), "name", 400),
    (body(arguments={"level": "everything"}), "arguments.level", 400),
    (body(arguments={"level": "full", "x": 1}), "arguments.x", 400),
    (body(name="dump-occupancy", purpose="occupancy-analytics"), "name", 403),
    (body(purpose="occupancy-analytics"), "purpose", 403),
    (body(thing="cmd/+/x"), "thing", 400),
    (body(thing=""), "thing", 400),
    (body(thing="hvac-1"), "thing", 403),  # not a device diagnostics is for
    (body(reason=""), "reason", 400),
    (body(reason="x" * 300), "reason", 400),
    (body(extra=1), "extra", 400),
    (body(clientToken="a b"), "clientToken", 400),
    (body(reason="r" * 200, arguments={"level": "full", "pad": "x" * 9000}), "body", 413),
]


@pytest.mark.parametrize(("request_body", "field", "status"), BAD_REQUESTS)
def test_each_bad_request_is_refused_naming_its_field_and_sends_nothing(
    names: PubsubNames,
    request_body: dict[str, Any],
    field: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    svc = service(names, Clock())
    with pytest.raises(CommandRuleError) as caught:
        svc.send(request_body)
    assert (caught.value.field, caught.value.status) == (field, status)
    assert svc.store.list(thing=None, status=None, limit=10, now=Clock()()) == []
    (audit,) = [r.audit for r in caplog.records if hasattr(r, "audit")]  # type: ignore[attr-defined]
    assert (audit["decision"], audit["field"], audit["requester"]) == ("refused", field, OPERATOR)


def test_a_caller_not_among_the_senders_is_403_and_reads_nothing(names: PubsubNames) -> None:
    clock = Clock()
    operator = service(names, clock)
    sent = operator.send(body())
    stranger = service(names, clock, requester=OTHER)
    stranger.store = operator.store
    with pytest.raises(CommandRuleError) as caught:
        stranger.send(body())
    assert (caught.value.field, caught.value.status) == ("name", 403)
    with pytest.raises(CommandRuleError) as read:
        stranger.get(sent["id"])
    assert read.value.status == 404  # not even its existence
    assert stranger.list(thing=None, status=None, limit=10) == []


def test_a_retried_client_token_is_not_sent_again_and_other_arguments_are_409(
    names: PubsubNames,
) -> None:
    svc = service(names, Clock())
    first = svc.send(body(clientToken="ticket-7"))
    again = svc.send(body(clientToken="ticket-7"))
    assert again["id"] == first["id"]
    with pytest.raises(CommandRuleError) as caught:
        svc.send(body(clientToken="ticket-7", arguments={"level": "basic"}))
    assert (caught.value.field, caught.value.status) == ("clientToken", 409)
    assert len(svc.store.list(thing=None, status=None, limit=10, now=Clock()())) == 1


def test_responses_that_may_not_complete_a_record_change_nothing(names: PubsubNames) -> None:
    clock = Clock()
    svc = service(names, clock)
    one = svc.send(body())
    two = svc.send(body(thing="temp-2"))

    def answer(command_id: str, thing: str, **fields: Any) -> bytes:
        response = ResponseMessage(command_id, thing, fields.pop("status", "succeeded"), **fields)
        return response.payload()

    # A device answering another thing's command id, on its own topic.
    assert svc.handle_response(answer(one["id"], "temp-2"), attributes("temp-2", one["id"])) == {
        "refused": "wrong-thing"
    }
    # A payload naming another thing than the topic's.
    assert svc.handle_response(answer(one["id"], "temp-1"), attributes("temp-2")) == {
        "refused": "thing"
    }
    # Correlation data for another command.
    assert svc.handle_response(answer(one["id"], "temp-1"), attributes("temp-1", two["id"])) == {
        "refused": "id"
    }
    # Malformed: not JSON, unknown field, no thing attribute, bad hex, a result off-schema.
    assert svc.handle_response(b"{", attributes("temp-1")) == {"refused": "response"}
    assert svc.handle_response(b'{"v":1,"x":2}', attributes("temp-1")) == {"refused": "x"}
    assert svc.handle_response(answer(one["id"], "temp-1"), {}) == {"refused": "thing"}
    bad_hex = {**attributes("temp-1"), "correlationData": "zz"}
    assert svc.handle_response(answer(one["id"], "temp-1"), bad_hex) == {
        "refused": "correlationData"
    }
    off_schema = answer(one["id"], "temp-1", result={"uptime": -1})
    assert svc.handle_response(off_schema, attributes("temp-1")) == {"refused": "result"}
    # Oversized (over 16 KiB), whatever it says.
    assert svc.handle_response(b" " * (16 * 1024 + 1), attributes("temp-1")) == {
        "refused": "response"
    }
    # An unknown id.
    assert svc.handle_response(answer(str(_uuid()), "temp-1"), attributes("temp-1")) == {
        "refused": "unknown-id"
    }
    assert [svc.get(x["id"])["status"] for x in (one, two)] == ["pending", "pending"]
    # The right answer completes only its own record; a second answer is refused.
    good = answer(one["id"], "temp-1", result={"uptime": 5})
    assert svc.handle_response(good, attributes("temp-1", one["id"]))["status"] == "succeeded"
    assert svc.handle_response(good, attributes("temp-1")) == {"refused": "already-completed"}
    # After the timeout: late, and the record reads timed-out.
    clock.now += timedelta(seconds=21)
    assert svc.handle_response(answer(two["id"], "temp-2"), attributes("temp-2")) == {
        "refused": "late"
    }
    assert [svc.get(x["id"])["status"] for x in (one, two)] == ["succeeded", "timed-out"]


def test_responses_arrive_through_the_responses_subscription(names: PubsubNames) -> None:
    svc = service(names, Clock())
    sent = svc.send(body())
    publisher = pubsub_v1.PublisherClient()
    topic = names.responses_subscription.replace("/subscriptions/", "/topics/").removesuffix(
        "-service"
    )
    payload = ResponseMessage(sent["id"], "temp-1", "failed", error="disk full").payload()
    publisher.publish(topic, payload, **attributes("temp-1", sent["id"])).result(timeout=30)
    for _ in range(10):
        if svc.get(sent["id"])["status"] != "pending":
            break
    record = svc.get(sent["id"])
    assert (record["status"], record["error"]) == ("failed", "disk full")


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def test_a_response_for_another_collector_s_command_is_handed_back_not_lost(
    names: PubsubNames,
) -> None:
    clock = Clock()
    mine, theirs = service(names, clock), service(names, clock)  # two stores, one subscription
    sent = mine.send(body())
    topic = names.responses_subscription.replace("/subscriptions/", "/topics/").removesuffix(
        "-service"
    )
    payload = ResponseMessage(sent["id"], "temp-1", "succeeded", {"uptime": 1}).payload()
    pubsub_v1.PublisherClient().publish(topic, payload, **attributes("temp-1")).result(timeout=30)
    handled = 0
    for _ in range(10):
        handled = theirs.collect()
        if handled:
            break
    assert handled == 1  # theirs saw it, does not know the id, and handed it back
    for _ in range(20):
        if mine.get(sent["id"])["status"] != "pending":
            break
    assert mine.get(sent["id"])["status"] == "succeeded"


class _Creds:
    def __init__(self, **attributes: str) -> None:
        self.__dict__.update(attributes)


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (
            _Creds(service_account_email="ops@fleet.iam.gserviceaccount.com"),
            "serviceAccount:ops@fleet.iam.gserviceaccount.com",
        ),
        (_Creds(account="alice@example.com"), "user:alice@example.com"),
    ],
)
def test_the_caller_is_the_principal_of_application_default_credentials(
    monkeypatch: pytest.MonkeyPatch, credentials: _Creds, expected: str
) -> None:
    import google.auth

    from iot_remote_access.cli import command_gcp

    monkeypatch.setattr(google.auth, "default", lambda: (credentials, "fleet"))
    assert command_gcp.principal(None) == expected


def test_a_stated_principal_is_refused_outside_the_emulator_and_credentials_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.auth

    from iot_remote_access.cli import command_gcp
    from iot_remote_access.cli.errors import InputError

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    with pytest.raises(InputError, match="only against the Pub/Sub emulator"):
        command_gcp.principal(OPERATOR)
    monkeypatch.setattr(google.auth, "default", lambda: (_Creds(), "fleet"))
    with pytest.raises(InputError, match="name no account"):
        command_gcp.principal(None)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    with pytest.raises(InputError, match=r"principal: 'group:ops@example\.com'"):
        command_gcp.principal("group:ops@example.com")
