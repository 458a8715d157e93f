"""The tunnel broker under hostile input (issue 14, defects 3 and 5).

moto for things, a STUBBED Secure Tunneling API (moto has none; see
tests/support/tunneling_stub.py). The token test drives botocore's real HTTP
response path instead of the Stubber: a ``before-send`` hook (botocore's own
extension point, the one moto uses) answers OpenTunnel with the JSON body the
real API returns, so botocore parses and DEBUG-logs it as it would in Lambda.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from iot_remote_access.core.log_safety import REDACTED, TOKEN_FIELDS, json_for_logs, redaction
from iot_remote_access.lambdas.tunnel_broker import handler as broker
from tests.support.tunneling_stub import (
    DESTINATION_TOKEN_PREFIX,
    REGION,
    SOURCE_TOKEN_PREFIX,
    json_event,
    tunnel_arn,
    url_event,
)
from tests.test_tunnel_broker import THING, Broker, _body, stack  # noqa: F401 - the fixture

# -- defect 3: the refusal's audit record survives any text ------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "INC-1 \ud800"),
        ("thing", "\udfff"),
        ("reason", "\ud83d"),  # half of an emoji
        ("service", "SSH\udc80"),
        ("reason", "INC-1\u2028forged record"),  # a line separator for str.splitlines
        ("reason", "INC-1\x85\u202eforged"),  # NEL and a bidi override
    ],
)
def test_hostile_characters_are_refused_and_their_audit_record_is_written(
    stack: Broker,  # noqa: F811
    field: str,
    value: str,
) -> None:
    # json.dumps writes the surrogate as \\udXXX: valid JSON that decodes back to it.
    status, body, _ = stack.call(json_event(_body(**{field: value})))
    assert status == 400, body
    assert body["field"] == field
    (audit,) = stack.audits()
    assert (audit["decision"], audit["status"], audit["field"]) == ("refused", 400, field)
    assert audit[field] == value  # escaped in the log line, not dropped nor replaced
    assert stack.tunneling.count("OpenTunnel") == 0


def test_json_for_logs_escapes_what_utf8_cannot_encode() -> None:
    text = json_for_logs({"reason": "caf\u00e9 \ud800 \u202e"})
    text.encode("utf-8")  # would raise UnicodeEncodeError before the fix
    assert json.loads(text) == {"reason": "caf\u00e9 \ud800 \u202e"}
    assert "caf\u00e9" in text  # readable text stays readable


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("arrays", "[" * 2000 + "]" * 2000),
        ("objects", '{"a":' * 600 + "1" + "}" * 600),
        ("in a field", '{"thing": ' + "[" * 1500 + "]" * 1500 + "}"),
        ("unclosed", "[" * 4000),
    ],
    ids=["arrays", "objects", "in a field", "unclosed"],
)
def test_deeply_nested_json_is_a_400_not_a_500(
    stack: Broker,  # noqa: F811
    name: str,
    raw: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(raw.encode()) <= broker.MAX_BODY_BYTES
    status, body, _ = stack.call(url_event(raw))
    assert status == 400, (name, body)
    assert body["field"] == "body"
    assert f"levels deep; allowed: at most {broker.MAX_BODY_DEPTH}" in body["message"]
    everything = stack.log.getvalue() + caplog.text
    assert "Traceback" not in everything and "RecursionError" not in everything
    (audit,) = stack.audits()
    assert (audit["decision"], audit["status"]) == ("refused", 400)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('{"thing":"busy-1","thing":"sensor-1","reason":"INC-1"}', "thing"),
        ('{"thing":"sensor-1","reason":"INC-1","minutes":5,"minutes":720}', "minutes"),
        ('{"thing":"sensor-1","reason":"a","reason":"b"}', "reason"),
    ],
)
def test_duplicate_keys_are_refused_naming_the_key(
    stack: Broker,  # noqa: F811
    raw: str,
    key: str,
) -> None:
    status, body, _ = stack.call(url_event(raw))
    assert status == 400, body
    assert body == {
        "field": key,
        "message": f"{key}: appears more than once in one object; allowed: each field once",
    }
    assert stack.tunneling.count("OpenTunnel") == 0
    assert stack.tunneling.count("ListTunnels") == 0
    (audit,) = stack.audits()
    assert (audit["decision"], audit["field"]) == ("refused", key)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(stack: Broker, constant: str) -> None:  # noqa: F811
    status, body, _ = stack.call(
        url_event(f'{{"thing":"sensor-1","reason":"x","minutes":{constant}}}')
    )
    assert (status, body["field"]) == (400, "body")
    assert f"{constant} is not a JSON number" in body["message"]


# -- defect 5: tokens never reach a log, whatever botocore's level -----------------------


def _open_tunnel_over_http(client: Any) -> list[str]:
    """Answer OpenTunnel through botocore's HTTP response path with the real API's body."""
    tunnel_id = str(uuid.uuid4())
    tokens = [
        f"{SOURCE_TOKEN_PREFIX}{uuid.uuid4().hex}",
        f"{DESTINATION_TOKEN_PREFIX}{uuid.uuid4().hex}",
    ]
    payload = json.dumps(
        {
            "tunnelId": tunnel_id,
            "tunnelArn": tunnel_arn(tunnel_id),
            "sourceAccessToken": tokens[0],
            "destinationAccessToken": tokens[1],
        }
    ).encode()

    def answer(request: Any, **_: Any) -> AWSResponse:
        raw = _RawBody(payload)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, raw)

    client.meta.events.register_first("before-send.iotsecuretunneling.OpenTunnel", answer)
    return tokens


class _RawBody(io.BytesIO):
    """What AWSResponse reads its body from (urllib3's response has .stream())."""

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.getvalue()


@pytest.fixture
def debug_everything(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """botocore, boto3, urllib3 and the root logger at DEBUG, as a careless deployment would."""
    loggers = [logging.getLogger(name) for name in ("", "botocore", "boto3", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def test_with_botocore_at_debug_no_token_reaches_any_log(
    stack: Broker,  # noqa: F811
    debug_everything: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = boto3.client("iotsecuretunneling", region_name=REGION)
    stack.monkeypatch.setattr(broker, "_clients", broker.Clients(iot=stack.iot, tunneling=client))
    # ListTunnels before and after: botocore's real path too (no tunnels, then ours).
    listed = iter([[], None])

    def list_answer(request: Any, **_: Any) -> AWSResponse:
        summaries = next(listed)
        body = {"tunnelSummaries": summaries if summaries is not None else []}
        return AWSResponse(request.url, 200, {}, _RawBody(json.dumps(body).encode()))

    client.meta.events.register_first("before-send.iotsecuretunneling.ListTunnels", list_answer)
    tokens = _open_tunnel_over_http(client)

    status, body, _ = stack.call(json_event(_body()))

    assert status == 201, body
    assert body["sourceAccessToken"] == tokens[0]  # the caller gets it; no log does
    everything = "\n".join(
        [
            stack.log.getvalue(),
            debug_everything.text,
            "\n".join(r.getMessage() for r in debug_everything.records),
            *capsys.readouterr(),
        ]
    )
    # botocore really logged the response body (else this test would prove nothing).
    assert any(
        r.name.startswith("botocore") and "Response body" in r.getMessage()
        for r in debug_everything.records
    )
    assert REDACTED in everything
    for token in tokens:
        assert token not in everything
        assert token[len(SOURCE_TOKEN_PREFIX) :] not in everything


@pytest.mark.parametrize(
    "line",
    [
        'b\'{"sourceAccessToken":"SECRETVALUE1","tunnelId":"t"}\'',  # botocore's repr(body)
        "{'destinationAccessToken': 'SECRETVALUE1'}",  # a dict's repr
        '{\\"clientAccessToken\\":\\"SECRETVALUE1\\"}',  # JSON inside JSON
        "AWSIOT_TUNNEL_ACCESS_TOKEN=SECRETVALUE1 localproxy",  # a shell line
        "source_access_token: SECRETVALUE1",
    ],
)
def test_every_shape_of_a_token_field_is_redacted_at_every_level(line: str) -> None:
    logger = logging.getLogger("iot_remote_access.tests.redaction")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            logger.log(level, "answer: %s", line)
    finally:
        logger.removeHandler(keep)
    assert len(records) == 4
    for record in records:
        assert "SECRETVALUE1" not in record.getMessage()
        assert REDACTED in record.getMessage()


def test_structured_extras_are_redacted_and_known_token_values_too() -> None:
    assert set(TOKEN_FIELDS) == {"sourceAccessToken", "destinationAccessToken", "clientAccessToken"}
    redaction.remember("opaque-token-value-without-a-key")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.detail = {
        "tunnel": {"sourceAccessToken": "abc"},
        "note": "opaque-token-value-without-a-key",
    }
    assert redaction.filter(record) is True  # redacted, never dropped
    assert record.detail == {"tunnel": {"sourceAccessToken": REDACTED}, "note": REDACTED}


def test_a_message_that_cannot_be_formatted_is_logged_not_raised() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s and %d", (Hostile(), "x"), None)
    assert redaction.filter(record) is True
    assert record.getMessage() == "(a log message that could not be formatted, from x)"


@pytest.mark.parametrize(
    "payload",
    [
        {"thing": ["\x00" * 236], "reason": "INC-1"},  # found by the long fuzz run
        {"k" * 3000: 1},
        {"\u202e" * 50: 1},
    ],
    ids=["list thing", "long unknown key", "bidi unknown key"],
)
def test_refusals_quote_values_and_keys_shortened(
    stack: Broker,  # noqa: F811
    payload: dict[str, Any],
) -> None:
    status, body, _ = stack.call(json_event(payload))
    assert status == 400, body
    assert len(body["field"]) <= 42 and len(body["message"]) < 300, body
    assert body["field"].isprintable()
