"""Remote commands on Azure as IoT Hub direct methods, against the service STAND-IN.

tests/support/iot_hub_service_standin.py stands in for IoT Hub's service API (no
emulator exists); behind it runs the real device module (``device/commands.py``). The
client is the real azure-core pipeline with a bearer-token policy over HTTPS. Each test
asserts the exact request the hub received and the record and audit it leaves.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.core.credentials import AccessToken
from click.testing import CliRunner

from iot_remote_access.cli import command_azure
from iot_remote_access.cli.errors import InputError
from iot_remote_access.core.command_backend import CommandBackend, CommandBackendError
from iot_remote_access.core.commands import CommandRuleError
from iot_remote_access.device.commands import CommandDevice
from iot_remote_access.settings import FleetSettings
from tests.support.command_cli import command_group
from tests.support.iot_hub_service_standin import IotHubServiceStandIn
from tests.support.paths import REPO_ROOT
from tests.support.pki import TestCa

OID = "5f0c3c1e-8d7a-4b0e-9a51-2b3c4d5e6f70"
OPERATOR = f"objectId:{OID}"
STRANGER_OID = "11111111-2222-4333-8444-555555555555"
CATALOGUE = [
    {
        "name": "diagnostics",
        "purpose": "maintenance",
        "senders": [OPERATOR],
        "timeoutSeconds": 20,
        "things": "temp-[0-9]+",
        "arguments": {
            "type": "object",
            "properties": {"level": {"type": "string", "enum": ["basic", "full"], "maxLength": 5}},
            "required": ["level"],
            "additionalProperties": False,
        },
        "result": {
            "type": "object",
            "properties": {"level": {"type": "string", "maxLength": 5}},
            "additionalProperties": False,
        },
    },
    {"name": "slow", "purpose": "maintenance", "senders": [OPERATOR], "timeoutSeconds": 2},
    {"name": "long", "purpose": "maintenance", "senders": [OPERATOR], "timeoutSeconds": 900},
    {"name": "dump-occupancy", "purpose": "occupancy-analytics", "senders": [OPERATOR]},
]


class Credential:
    """A TokenCredential handing out an Entra-shaped (unsigned) token naming ``oid``."""

    def __init__(self, oid: str | None = OID) -> None:
        claims = {"aud": "https://iothubs.azure.net", **({"oid": oid} if oid else {})}
        part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        self.token = f"eyJhbGciOiJub25lIn0.{part}.sig"
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    document = yaml.safe_load((REPO_ROOT / "examples" / "azure-settings.yaml").read_text())
    document["azure"]["caCertificate"]["file"] = str(REPO_ROOT / "examples" / "azure-fleet-ca.pem")
    document["commands"] = {"enabled": True, "catalogue": CATALOGUE}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IotHubServiceStandIn]:
    ca = TestCa(tmp_path / "pki")
    with IotHubServiceStandIn(ca) as standin:
        monkeypatch.setenv(command_azure.ENDPOINT_VARIABLE, standin.endpoint)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(standin.ca_file))
        yield standin


def backend_for(
    settings_file: Path, tmp_path: Path, credential: Credential | None = None, **options: Any
) -> CommandBackend:
    return command_azure.backend(
        FleetSettings.from_file(settings_file),
        {"credential": credential or Credential(), "records": tmp_path / "r.sqlite", **options},
    )


def device(hub: IotHubServiceStandIn, thing: str, settings_file: Path) -> CommandDevice:
    settings = FleetSettings.from_file(settings_file)
    made = CommandDevice(
        thing=thing,
        catalogue=settings.commands.command_catalogue(),
        handlers={"diagnostics": lambda args: {"level": args["level"]}},
        send=hub.device_send(thing),
    )
    hub.connect(made)
    return made


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "thing": "temp-1",
        "name": "diagnostics",
        "arguments": {"level": "full"},
        "reason": "INC-9",
        "purpose": "maintenance",
        **overrides,
    }


def audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.audit for r in caplog.records if hasattr(r, "audit")]  # type: ignore[attr-defined]


def test_a_command_is_one_direct_method_and_its_answer_completes_the_record(
    hub: IotHubServiceStandIn,
    settings_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    device(hub, "temp-1", settings_file)
    credential = Credential()
    backend = backend_for(settings_file, tmp_path, credential)
    record = backend.send(body())
    assert (record["status"], record["requester"]) == ("succeeded", OPERATOR)
    (call,) = hub.requests
    assert (call.method, call.path, call.query) == (
        "POST",
        "/twins/temp-1/methods",
        {"api-version": "2021-04-12"},
    )
    assert call.headers["Authorization"] == f"Bearer {credential.token}"
    assert ("https://iothubs.azure.net/.default",) in credential.scopes
    assert call.body["methodName"] == "diagnostics"
    assert call.body["responseTimeoutInSeconds"] == 20
    assert call.body["connectTimeoutInSeconds"] == 0
    envelope = call.body["payload"]
    assert sorted(envelope) == ["arguments", "expiresAt", "id", "issuedAt", "name", "thing", "v"]
    assert (envelope["id"], envelope["thing"], envelope["arguments"]) == (
        record["id"],
        "temp-1",
        {"level": "full"},
    )
    events = [(a["event"], a["decision"]) for a in audits(caplog)]
    assert events == [("command.send", "allowed"), ("command.response", "recorded")]
    assert backend.get(record["id"])["status"] == "succeeded"
    assert [r["id"] for r in backend.list(thing="temp-1", status=None, limit=10)] == [record["id"]]


def test_a_short_timeout_is_raised_to_the_hub_s_minimum_and_a_silent_device_times_out(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    # A device module that runs the command but whose answers never reach the hub.
    release = threading.Event()
    silent = CommandDevice(
        thing="temp-2",
        catalogue=FleetSettings.from_file(settings_file).commands.command_catalogue(),
        handlers={"slow": lambda args: release.wait(10) and {}},
        send=lambda *_: None,
    )
    hub.connect(silent)
    started = time.monotonic()
    try:
        record = backend_for(settings_file, tmp_path).send(
            body(thing="temp-2", name="slow", arguments={})
        )
    finally:
        release.set()
        silent.close()
    assert hub.requests[-1].body["responseTimeoutInSeconds"] == 5  # slow says 2; hub min 5
    assert record["status"] == "timed-out"
    assert 5 <= time.monotonic() - started < 15


def test_an_offline_device_fails_and_the_connect_timeout_is_passed_on(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    hub.register("temp-3")
    record = backend_for(settings_file, tmp_path, connect_timeout=30).send(body(thing="temp-3"))
    assert (record["status"], record["error"]) == ("failed", "device-not-online")
    assert hub.requests[-1].body["connectTimeoutInSeconds"] == 30
    with pytest.raises(InputError, match="connect-timeout: '301'"):
        backend_for(settings_file, tmp_path, connect_timeout=301)


def test_an_unregistered_device_is_404_on_thing(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    backend = backend_for(settings_file, tmp_path)
    with pytest.raises(CommandRuleError) as caught:
        backend.send(body(thing="temp-404"))
    assert (caught.value.field, caught.value.status) == ("thing", 404)
    (record,) = backend.list(thing="temp-404", status=None, limit=5)
    assert (record["status"], record["error"]) == ("failed", "not sent")


BAD_REQUESTS = [
    (body(name="reboot-all"), "name", 404),
    (body(arguments={"level": "everything"}), "arguments.level", 400),
    (body(name="dump-occupancy", purpose="maintenance"), "purpose", 403),
    (body(thing="temp/+"), "thing", 400),
    (body(thing="hvac-1"), "thing", 403),
    (body(reason=" "), "reason", 400),
    (body(arguments={"level": "full", "pad": "x" * 9000}), "body", 413),
    (body(name="long", arguments={}), "timeoutSeconds", 400),  # over IoT Hub's 300 s
]


@pytest.mark.parametrize(("request_body", "field", "status"), BAD_REQUESTS)
def test_each_bad_request_is_refused_before_any_call_to_the_hub(
    hub: IotHubServiceStandIn,
    settings_file: Path,
    tmp_path: Path,
    request_body: dict[str, Any],
    field: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    backend = backend_for(settings_file, tmp_path)
    with pytest.raises(CommandRuleError) as caught:
        backend.send(request_body)
    assert (caught.value.field, caught.value.status) == (field, status)
    assert hub.requests == []
    (audit,) = audits(caplog)
    assert (audit["decision"], audit["field"], audit["cloud"]) == ("refused", field, "azure")


def test_a_caller_not_among_the_senders_is_403_and_reads_nothing(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    device(hub, "temp-1", settings_file)
    sent = backend_for(settings_file, tmp_path).send(body())
    stranger = backend_for(settings_file, tmp_path, Credential(STRANGER_OID))
    with pytest.raises(CommandRuleError) as caught:
        stranger.send(body())
    assert caught.value.status == 403
    with pytest.raises(CommandRuleError) as read:
        stranger.get(sent["id"])
    assert read.value.status == 404
    assert len(hub.requests) == 1


def test_a_token_without_an_object_id_is_refused(settings_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="names no object id"):
        backend_for(settings_file, tmp_path, Credential(oid=None))


def test_a_retried_client_token_is_not_sent_again_and_other_arguments_are_409(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    device(hub, "temp-1", settings_file)
    backend = backend_for(settings_file, tmp_path)
    first = backend.send(body(clientToken="T-1"))
    again = backend.send(body(clientToken="T-1"))
    assert (again["id"], again["status"]) == (first["id"], "succeeded")
    with pytest.raises(CommandRuleError) as caught:
        backend.send(body(clientToken="T-1", arguments={"level": "basic"}))
    assert (caught.value.field, caught.value.status) == ("clientToken", 409)
    assert len(hub.requests) == 1


def _forged(**changes: Any) -> Any:
    def answer(payload: dict[str, Any]) -> tuple[int, Any]:
        response = {
            "v": 1,
            "id": payload["id"],
            "thing": payload["thing"],
            "status": "succeeded",
            "result": {"level": "full"},
        }
        response.update(changes)
        return 200, response

    return answer


@pytest.mark.parametrize(
    ("answer", "refused", "field"),
    [
        (_forged(thing="temp-8"), "malformed", "thing"),  # answering as another thing
        (_forged(id="0b6f2a8e-5c3d-4f1e-9a7b-2d4c6e8f1a3b"), "wrong-id", "id"),
        (_forged(result={"level": "x" * 50}), "malformed", "result.level"),
        (_forged(status="done"), "malformed", "status"),
        (_forged(extra=1), "malformed", "extra"),
        (lambda payload: (200, "not an object"), "malformed", "response"),
        (_forged(error="x" * (17 * 1024)), "malformed", "response"),  # over 16 KiB
    ],
)
def test_a_malformed_or_misaddressed_answer_changes_nothing(
    hub: IotHubServiceStandIn,
    settings_file: Path,
    tmp_path: Path,
    answer: Any,
    refused: str,
    field: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="iot_remote_access.audit")
    hub.answer_with("temp-1", answer)
    record = backend_for(settings_file, tmp_path).send(body())
    assert record["status"] == "pending"  # reads timed-out after its expiry
    outcome = [a for a in audits(caplog) if a["event"] == "command.response"]
    assert [(a["decision"], a["refused"], a["field"]) for a in outcome] == [
        ("refused", refused, field)
    ]


def test_hub_refusals_are_one_line_without_the_token(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    hub.register("temp-1")
    backend = backend_for(settings_file, tmp_path)
    backend.client.endpoint = backend.client.endpoint + "/nowhere"  # type: ignore[attr-defined]
    with pytest.raises(CommandBackendError) as caught:
        backend.send(body())
    assert "404" in str(caught.value) and Credential().token not in str(caught.value)
    (record,) = backend.list(thing="temp-1", status=None, limit=5)
    assert record["status"] == "failed"


def test_through_the_click_wrapper(
    hub: IotHubServiceStandIn, settings_file: Path, tmp_path: Path
) -> None:
    device(hub, "temp-1", settings_file)
    group = command_group(
        command_azure.backend, {"credential": Credential(), "records": tmp_path / "w.sqlite"}
    )
    runner = CliRunner()
    base = ["--settings", str(settings_file), "send", "--thing", "temp-1", "--reason", "r"]
    ok = runner.invoke(
        group,
        [*base, "--name", "diagnostics", "--purpose", "maintenance", "--args", '{"level":"basic"}'],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == "succeeded"
    bad = runner.invoke(
        group, [*base, "--name", "diagnostics", "--purpose", "maintenance", "--args", '{"level":1}']
    )
    assert bad.exit_code == 2 and bad.stderr.startswith("error: arguments.level:")
    offline = runner.invoke(
        group,
        [
            *("--settings", str(settings_file), "send", "--thing", "temp-7", "--reason", "r"),
            *("--name", "diagnostics", "--purpose", "maintenance", "--args", '{"level":"basic"}'),
        ],
    )
    assert offline.exit_code == 1 and "thing" in offline.stderr


def test_an_unreachable_hub_is_not_sent_and_the_record_says_so(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(command_azure.ENDPOINT_VARIABLE, "https://127.0.0.1:9")  # nothing listens
    backend = backend_for(settings_file, tmp_path)
    with pytest.raises(CommandBackendError) as caught:
        backend.send(body())
    assert "ServiceRequestError" in str(caught.value)
    (record,) = backend.list(thing="temp-1", status=None, limit=5)
    assert (record["status"], record["error"]) == ("failed", "not sent")
