"""`iot-remote-access command`: every bad input gets one line and the right exit code.

The console-script entry point runs in-process (tests/support/cli_runner.py) against a
loopback STAND-IN for the broker's function URL (tests/support/command_url_standin.py)
running the real broker handler with moto; iot-data is the STUBBED client of
tests/support/iot_data_stub.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

from iot_remote_access.cli import command as command_cli
from iot_remote_access.core.commands import CommandCatalogue, CommandSpec
from iot_remote_access.lambdas.command_broker import handler as broker
from tests.support.cli_runner import CliResult, run_cli
from tests.support.command_tables import create_executions_table
from tests.support.command_url_standin import BrokerUrl, broker_url
from tests.support.iot_data_stub import StubbedIotData
from tests.support.tunneling_stub import ACCOUNT, REGION

OPERATOR = Credentials("ASIAEXAMPLEOPERATOR", "operator-secret-key", "operator-session")
ANALYST = Credentials("ASIAEXAMPLEANALYST", "analyst-secret-key", "analyst-session")
CALLERS = {
    OPERATOR.access_key: (OPERATOR, f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice"),
    ANALYST.access_key: (ANALYST, f"arn:aws:sts::{ACCOUNT}:assumed-role/analytics/eve"),
}
LEVEL = {"type": "string", "enum": ["basic", "full"], "maxLength": 5}
CATALOGUE = CommandCatalogue(
    (
        CommandSpec(
            name="diagnostics",
            purpose="maintenance",
            senders=(f"arn:aws:iam::{ACCOUNT}:role/iot-operators",),
            arguments={
                "type": "object",
                "properties": {"level": LEVEL},
                "required": ["level"],
                "additionalProperties": False,
            },
            things="temp-[0-9]+",
        ),
    )
)
SETTINGS = {
    "commands": {
        "enabled": True,
        "catalogue": [
            {
                "name": "diagnostics",
                "purpose": "maintenance",
                "senders": [f"arn:aws:iam::{ACCOUNT}:role/iot-operators"],
                "arguments": CATALOGUE.commands[0].arguments,
            }
        ],
    }
}


@dataclass
class Aws:
    url: BrokerUrl
    iot_data: StubbedIotData

    def as_caller(self, monkeypatch: pytest.MonkeyPatch, credentials: Credentials) -> None:
        for name, value in zip(
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
            (credentials.access_key, credentials.secret_key, credentials.token),
            strict=True,
        ):
            monkeypatch.setenv(name, value)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with mock_aws():
        iot = boto3.client("iot", region_name=REGION)
        iot.create_thing(thingName="temp-1")
        table = create_executions_table(boto3.resource("dynamodb", region_name=REGION))
        iot_data = StubbedIotData()
        monkeypatch.setattr(
            broker, "_clients", broker.Clients(iot=iot, iot_data=iot_data.client, executions=table)
        )
        monkeypatch.setenv(broker.CATALOGUE_VARIABLE, CATALOGUE.to_json())
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.delenv(command_cli.CLOUD_VARIABLE, raising=False)
        with broker_url(CALLERS) as url:
            monkeypatch.setenv(command_cli.ENDPOINT_VARIABLE, url.url)
            state = Aws(url, iot_data)
            state.as_caller(monkeypatch, OPERATOR)  # after mock_aws, which sets its own
            yield state


def send(*args: str, thing: str = "temp-1", name: str = "diagnostics") -> CliResult:
    return run_cli(
        "command", "send", "--thing", thing, "--name", name, "--reason", "INC-5",
        "--purpose", "maintenance", "--output", "json", *args,
    )  # fmt: skip


def one_line(result: CliResult, code: int, pattern: str) -> None:
    assert result.code == code, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.search(pattern, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_an_accepted_command_exits_0_and_prints_its_id(aws: Aws) -> None:
    aws.iot_data.expect_publish()
    result = send("--args", '{"level":"full"}')
    assert result.code == 0, result
    assert json.loads(result.stdout)["status"] == "sent"
    assert aws.iot_data.published[0]["topic"] == "cmd/temp-1/commands"


@pytest.mark.parametrize(
    ("args", "kwargs", "code", "pattern"),
    [
        # unknown command: the broker's 404, a refusal (exit 1)
        ([], {"name": "reboot"}, 1, r"refused \(404\): --name: 'reboot' is not in the catalogue"),
        # arguments failing the schema: the broker's 400, bad input (exit 2)
        (["--args", '{"level":"huge"}'], {}, 2, r"--args \(arguments\.level\): .*'huge'"),
        (["--args", '{"level":"full","x":1}'], {}, 2, r"--args .*x"),
        # an unknown thing (registered nowhere) and one the command is not for
        (["--args", '{"level":"full"}'], {"thing": "temp-9"}, 1, r"refused \(404\): --thing"),
        (["--args", '{"level":"full"}'], {"thing": "door-1"}, 1, r"refused \(403\): --thing"),
        # malformed thing, args that are not an object, or too big: refused before sending
        (["--args", "{}"], {"thing": "temp/1"}, 2, r"^error: --thing: "),
        (["--args", "[1]"], {}, 2, r"--args: .* not a JSON object"),
        (["--args", '{"level":' * 20], {}, 2, r"--args: "),
        (["--args", json.dumps({"level": "x" * 9000})], {}, 2, r"--args: .*allowed"),
        (["--client-token", "no spaces"], {}, 2, r"--client-token: "),
        (["--rate", "5"], {}, 2, r"--rate: only for a fan-out"),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code_and_nothing_is_published(
    aws: Aws, args: list[str], kwargs: dict[str, str], code: int, pattern: str
) -> None:
    one_line(send(*args, **kwargs), code, pattern)
    assert aws.iot_data.published == []


def test_a_caller_not_among_the_senders_is_refused(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.as_caller(monkeypatch, ANALYST)
    one_line(send("--args", '{"level":"full"}'), 1, r"refused \(403\): --name: .* may not be sent")
    assert aws.iot_data.published == []


def test_a_client_token_reused_with_other_arguments_is_refused(aws: Aws) -> None:
    aws.iot_data.expect_publish()
    first = send("--args", '{"level":"full"}', "--client-token", "ticket-5")
    assert first.code == 0, first
    again = send("--args", '{"level":"full"}', "--client-token", "ticket-5")
    assert again.code == 0 and json.loads(again.stdout)["id"] == json.loads(first.stdout)["id"]
    other = send("--args", '{"level":"basic"}', "--client-token", "ticket-5")
    one_line(other, 1, r"refused \(409\): --client-token")
    assert len(aws.iot_data.published) == 1  # the retry was not sent again


def test_the_settings_catalogue_checks_locally_and_gives_the_purpose(
    aws: Aws, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    base = ["command", "send", "--thing", "temp-1", "--reason", "r", "--settings", str(settings)]
    one_line(run_cli(*base, "--name", "reboot"), 2, r"--name: 'reboot' is not in the catalogue")
    one_line(run_cli(*base, "--name", "diagnostics", "--args", "{}"), 2, r"--args: .*level")
    with_purpose = [*base, "--purpose", "maintenance", "--name", "diagnostics", "--args", "{}"]
    one_line(run_cli(*with_purpose), 2, r"--args: .*level")  # checked with --purpose too
    assert aws.url.requests == []  # nothing reached the broker
    aws.iot_data.expect_publish()
    sent = run_cli(*base, "--name", "diagnostics", "--args", '{"level":"basic"}')
    assert sent.code == 0, sent  # the purpose came from the catalogue
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"commands": {"enabled": True, "catalogue": []}}))
    one_line(run_cli(*base[:-1], str(bad), "--name", "x"), 2, r"invalid settings: .*catalogue")


def test_usage_errors_and_unreachable_brokers(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    one_line(
        run_cli("command", "send", "--thing", "temp-1", "--name", "diagnostics", "--reason", "r"),
        2,
        r"--purpose: missing",
    )
    one_line(run_cli("command", "get", "not-an-id"), 2, r"ID: 'not-an-id' is not a command id")
    one_line(run_cli("command", "list", "--limit", "0"), 2, r"--limit: '0'")
    one_line(run_cli("command", "list", "--thing", "a/b"), 2, r"--thing: ")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAUNKNOWN")  # AWS refuses the signature
    one_line(run_cli("command", "list"), 1, r"Forbidden \(is the operator policy attached")
    monkeypatch.setenv(command_cli.ENDPOINT_VARIABLE, "http://127.0.0.1:9")
    one_line(run_cli("command", "list"), 1, r"cannot reach the broker")
    monkeypatch.setenv(command_cli.ENDPOINT_VARIABLE, "ftp://example.com")
    one_line(run_cli("command", "list"), 2, r"--endpoint: .* not an https URL")


def test_get_and_list_show_what_the_broker_answers(aws: Aws) -> None:
    aws.iot_data.expect_publish()
    command_id = json.loads(send("--args", '{"level":"full"}').stdout)["id"]
    got = run_cli("command", "get", command_id)
    assert got.code == 0 and "pending" in got.stdout and command_id in got.stdout
    listed = run_cli("command", "list", "--status", "pending", "--output", "json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [command_id]
    unknown = run_cli("command", "get", "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    one_line(unknown, 1, r"refused \(404\): ID: ")
