"""The SQLite execution store of the GCP and Azure paths: the DynamoDB rules, kept."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.core.command_executions import execution_item
from iot_remote_access.core.command_store import ExecutionStore, replayed
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandRuleError,
    CommandSpec,
    command_id_for,
    new_command,
    parse_send_request,
)

SA = "serviceAccount:ops@fleet-proj.iam.gserviceaccount.com"
CATALOGUE = CommandCatalogue(
    (CommandSpec(name="reboot", purpose="maintenance", senders=(SA,), timeout_seconds=10),)
)
NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)


def _item(
    thing: str = "temp-1", *, token: str | None = None, now: datetime = NOW
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "thing": thing,
        "name": "reboot",
        "reason": "r",
        "purpose": "maintenance",
    }
    if token:
        body["clientToken"] = token
    request = parse_send_request(body, CATALOGUE, requester=SA)
    command_id = command_id_for(SA, token) if token else None
    command = new_command(request, now=now, command_id=command_id)
    return execution_item(request, command, requester=SA)


def test_a_record_completes_once_for_its_thing_while_pending_and_in_time(tmp_path: Path) -> None:
    store = ExecutionStore(tmp_path / "records.sqlite")
    item = _item()
    assert store.insert(item) is None
    done = {"status": "succeeded", "completedAt": "x"}
    assert not store.complete(item["id"], thing="temp-2", values=done, now=NOW)  # wrong thing
    late = NOW + timedelta(seconds=11)
    assert not store.complete(item["id"], thing="temp-1", values=done, now=late)
    assert store.get(item["id"])["status"] == "pending"
    assert store.complete(item["id"], thing="temp-1", values=done, now=NOW)
    assert not store.complete(item["id"], thing="temp-1", values={"status": "failed"}, now=NOW)
    assert store.get(item["id"])["status"] == "succeeded"


def test_racing_answers_one_wins(tmp_path: Path) -> None:
    store = ExecutionStore(tmp_path / "records.sqlite")
    item = _item()
    store.insert(item)
    wins: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda s=status: wins.append(
                store.complete(item["id"], thing="temp-1", values={"status": s}, now=NOW)
            )
        )
        for status in ("succeeded", "failed") * 8
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 15 + [True]


def test_insert_of_an_existing_id_returns_it_and_changes_nothing(tmp_path: Path) -> None:
    store = ExecutionStore(":memory:")
    first = _item(token="t-1")
    assert store.insert(first) is None
    again = _item(token="t-1", now=NOW + timedelta(seconds=5))
    assert again["id"] == first["id"]
    assert store.insert(again) == first


def test_a_reused_client_token_for_other_arguments_is_409() -> None:
    first = _item(token="t-1")
    other = parse_send_request(
        {"thing": "temp-2", "name": "reboot", "reason": "r", "purpose": "maintenance"},
        CATALOGUE,
        requester=SA,
    )
    with pytest.raises(CommandRuleError) as caught:
        replayed(first, other)
    assert (caught.value.field, caught.value.status) == ("clientToken", 409)


def test_sweep_and_list(tmp_path: Path) -> None:
    store = ExecutionStore(tmp_path / "records.sqlite")
    items = [_item(thing, now=NOW + timedelta(seconds=n)) for n, thing in enumerate("abca")]
    for item in items:
        store.insert(item)
    later = NOW + timedelta(seconds=12)
    # Read: pending past expiry shows timed-out before any sweep.
    assert {i["status"] for i in store.list(thing=None, status=None, limit=10, now=later)} == {
        "timed-out",
        "pending",
    }
    assert [i["thing"] for i in store.list(thing="a", status=None, limit=10, now=NOW)] == ["a", "a"]
    assert store.list(thing=None, status=None, limit=2, now=NOW)[0]["id"] == items[3]["id"]
    assert store.sweep(now=later) == 2
    assert store.get(items[0]["id"])["status"] == "timed-out"
    assert store.get(items[3]["id"])["status"] == "pending"
    with pytest.raises(CommandRuleError):
        store.list(thing=None, status=None, limit=0, now=NOW)
