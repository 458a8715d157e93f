"""The device module's rules, in-process (the MQTT path is tests/test_commands_mosquitto.py)."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    ResponseMessage,
    new_command,
    parse_send_request,
)
from iot_remote_access.device.commands import CommandDevice

OPERATORS = "arn:aws:iam::123456789012:role/iot-operators"
ALICE = "arn:aws:sts::123456789012:assumed-role/iot-operators/alice"
RESULT = {
    "type": "object",
    "properties": {"uptime": {"type": "integer", "minimum": 0}},
    "required": ["uptime"],
    "additionalProperties": False,
}
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(name="diagnostics", purpose="maintenance", senders=(OPERATORS,), result=RESULT),
        CommandSpec(name="slow", purpose="maintenance", senders=(OPERATORS,), timeout_seconds=1),
        CommandSpec(name="unhandled", purpose="maintenance", senders=(OPERATORS,)),
    )
)


class Device:
    """A CommandDevice whose answers land in a queue."""

    def __init__(self, handlers: dict[str, Any], **kwargs: Any) -> None:
        self.answers: queue.Queue[ResponseMessage] = queue.Queue()
        self.device = CommandDevice(
            thing="temp-1",
            catalogue=CATALOGUE,
            handlers=handlers,
            send=lambda response, _correlation: self.answers.put(response),
            **kwargs,
        )

    def next(self, timeout: float = 5) -> ResponseMessage:
        return self.answers.get(timeout=timeout)


def _payload(name: str = "diagnostics", **change: Any) -> tuple[str, bytes]:
    request = parse_send_request(
        {"thing": "temp-1", "name": name, "reason": "INC-1", "purpose": "maintenance"},
        CATALOGUE,
        requester=ALICE,
    )
    command = new_command(request, now=datetime.now(UTC))
    document = {**json.loads(command.payload()), **change}
    return command.id, json.dumps(document).encode()


def test_runs_the_registered_handler_and_answers_with_its_result() -> None:
    device = Device({"diagnostics": lambda arguments: {"uptime": 42}})
    command_id, payload = _payload()
    assert device.device.receive(payload) is None  # the answer follows from the worker
    assert device.next() == ResponseMessage(command_id, "temp-1", "succeeded", {"uptime": 42})
    assert device.device.receive(payload) is None  # a QoS 1 redelivery does not run twice
    with pytest.raises(queue.Empty):
        device.next(timeout=0.3)


def test_refusals_are_answered_when_the_command_has_an_id() -> None:
    device = Device({"diagnostics": lambda arguments: {"uptime": 1}})
    command_id, payload = _payload(arguments={"rm": "-rf"})
    answer = device.device.receive(payload)
    assert answer is not None and (answer.id, answer.status) == (command_id, "rejected")
    assert answer.error is not None and answer.error.startswith("arguments.rm:")
    _, payload = _payload(thing="temp-2")
    answer = device.device.receive(payload)
    assert answer is not None and answer.error is not None and answer.error.startswith("thing:")
    assert device.device.receive(b'{"id": "not-a-uuid", "shell": "reboot"}') is None
    assert device.device.receive(b"\xff" * 100) is None
    command_id, payload = _payload("unhandled")
    answer = device.device.receive(payload)
    assert answer is not None and answer.error == "name: 'unhandled' has no handler on this device"


def test_handler_errors_and_bad_results_fail_without_a_traceback() -> None:
    def broken(arguments: dict[str, Any]) -> dict[str, Any]:
        raise OSError("disk /dev/secret-volume unreadable")

    device = Device({"diagnostics": broken})
    device.device.receive(_payload()[1])
    answer = device.next()
    assert (answer.status, answer.error) == (
        "failed",
        "OSError: disk /dev/secret-volume unreadable",
    )
    device = Device({"diagnostics": lambda arguments: {"uptime": "forever"}})
    device.device.receive(_payload()[1])
    answer = device.next()
    assert answer.status == "failed" and (answer.error or "").startswith("result.uptime:")


def test_a_handler_past_its_timeout_is_answered_failed_and_blocks_its_slot() -> None:
    release = threading.Event()

    def slow(arguments: dict[str, Any]) -> dict[str, Any]:
        release.wait(10)
        return {}

    device = Device({"slow": slow})
    started = time.monotonic()
    command_id, payload = _payload("slow")
    device.device.receive(payload)
    answer = device.next()
    assert (answer.id, answer.status) == (command_id, "failed")
    assert (answer.error or "").startswith("timeout:") and time.monotonic() - started < 3
    busy = device.device.receive(_payload("slow")[1])  # the slot is still taken
    assert busy is not None and busy.status == "rejected" and (busy.error or "").startswith("busy")
    release.set()
    with pytest.raises(queue.Empty):  # the late result is not sent: one answer per command
        device.next(timeout=0.5)


def test_handlers_must_be_in_the_catalogue() -> None:
    with pytest.raises(CommandRuleError, match="'reboot' is not in the catalogue"):
        Device({"reboot": lambda arguments: {}})
