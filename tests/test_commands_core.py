"""core/commands.py, core/argument_schema.py, core/strict_json.py: the command rules."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core import strict_json
from iot_remote_access.core.argument_schema import (
    MAX_SCHEMA_DEPTH,
    SchemaError,
    check_schema,
    validate,
)
from iot_remote_access.core.aws_policy import device_policy_document, plain_arn
from iot_remote_access.core.azure_rules import device_to_cloud_routes
from iot_remote_access.core.commands import (
    MAX_REQUEST_BYTES,
    CommandCatalogue,
    CommandMessage,
    CommandRuleError,
    CommandSpec,
    ResponseMessage,
    Routing,
    correlation_data,
    decode_request_body,
    new_command,
    parse_command,
    parse_response,
    parse_send_request,
    sender_matches,
)
from iot_remote_access.core.mosquitto_acl import render_mosquitto_acl
from iot_remote_access.core.topics import DeviceAccess, TopicModel, TopicModelError

ACCOUNT = "123456789012"
OPERATORS = f"arn:aws:iam::{ACCOUNT}:role/iot-operators"
ALICE = f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators/alice"
MALLORY = f"arn:aws:sts::{ACCOUNT}:assumed-role/analysts/mallory"
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)

DIAGNOSTICS = CommandSpec(
    name="diagnostics",
    purpose="maintenance",
    senders=(OPERATORS,),
    arguments={
        "type": "object",
        "properties": {
            "level": {"type": "string", "enum": ["basic", "full"], "maxLength": 8},
            "samples": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        "required": ["level"],
        "additionalProperties": False,
    },
    result={
        "type": "object",
        "properties": {"uptime": {"type": "integer", "minimum": 0}},
        "required": ["uptime"],
        "additionalProperties": False,
    },
    timeout_seconds=20,
    things="temp-[0-9]+",
)
OCCUPANCY = CommandSpec(
    name="dump-occupancy", purpose="occupancy-analytics", senders=(f"{OPERATORS}-analytics",)
)
CATALOGUE = CommandCatalogue((DIAGNOSTICS, OCCUPANCY))


def _request(**fields: Any) -> dict[str, Any]:
    return {
        "thing": "temp-1",
        "name": "diagnostics",
        "arguments": {"level": "full"},
        "reason": "INC-42 sensor drifts",
        "purpose": "maintenance",
        **fields,
    }


def _refusal(raw: object, requester: str = ALICE) -> CommandRuleError:
    with pytest.raises(CommandRuleError) as caught:
        parse_send_request(raw, CATALOGUE, requester=requester)
    return caught.value


# -- strict JSON ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_strict_json_round_trips_every_bounded_document(value: Any) -> None:
    text = strict_json.dumps(value)
    if strict_json.nesting_depth(text) <= strict_json.DEFAULT_MAX_DEPTH:
        assert strict_json.loads(text) == value


@given(st.binary(max_size=300))
def test_strict_json_refuses_garbage_with_its_own_error_only(data: bytes) -> None:
    try:
        strict_json.loads(data)
    except strict_json.StrictJsonError as error:
        assert error.problem


@settings(deadline=None)
@given(st.integers(min_value=9, max_value=50_000))
def test_deep_nesting_is_refused_before_parsing(depth: int) -> None:
    with pytest.raises(strict_json.StrictJsonError, match=f"nested {depth} levels deep"):
        strict_json.loads("[" * depth + "]" * depth, max_bytes=10**6)


def test_brackets_inside_strings_do_not_count_and_duplicates_are_refused() -> None:
    assert strict_json.loads('{"a": "[[[[[[[[[[[[\\"{{{{{{{{{{"}') == {
        "a": '[[[[[[[[[[[["{{{{{{{{{{'
    }
    with pytest.raises(strict_json.StrictJsonError, match="'name' appears twice"):
        strict_json.loads('{"name": "reboot", "name": "diagnostics"}')
    with pytest.raises(strict_json.StrictJsonError, match="NaN is not a JSON number"):
        strict_json.loads('{"a": NaN}')
    with pytest.raises(strict_json.StrictJsonError, match="20000 bytes; allowed: at most"):
        strict_json.loads(b" " * 20000)


# -- the argument schema subset agrees with JSON Schema -----------------------------------------

names = st.from_regex(r"\A[a-z][a-z0-9_]{0,5}\Z")


def _schemas(depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    string = st.fixed_dictionaries(
        {"type": st.just("string"), "maxLength": st.integers(0, 12)},
        optional={
            "minLength": st.integers(0, 3),
            "enum": st.lists(st.text(max_size=4), min_size=1, max_size=3),
            "pattern": st.sampled_from(["^a", "b$", "[0-9]", "^x-[a-z]{1,3}$"]),
        },
    ).filter(lambda s: s.get("minLength", 0) <= s["maxLength"])
    number = st.fixed_dictionaries(
        {"type": st.sampled_from(["integer", "number"])},
        optional={"minimum": st.integers(-5, 0), "maximum": st.integers(0, 5)},
    )
    scalar = string | number | st.just({"type": "boolean"})
    if depth >= MAX_SCHEMA_DEPTH - 1:
        return scalar
    inner = st.deferred(lambda: _schemas(depth + 1))
    array = st.fixed_dictionaries(
        {"type": st.just("array"), "items": inner, "maxItems": st.integers(0, 3)}
    )
    return scalar | array | _object_schemas(inner)


def _object_schemas(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        properties = draw(st.dictionaries(names, inner, max_size=3))
        required = (
            draw(st.lists(st.sampled_from(sorted(properties)), unique=True)) if properties else []
        )
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    return build()


# No deadline: jsonschema's own schema check is slow on a loaded, shared machine.
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_object_schemas(_schemas(2)), st.data())
def test_the_subset_accepts_exactly_what_json_schema_accepts(
    schema: dict[str, Any], data: st.DataObject
) -> None:
    check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    candidates = [
        data.draw(json_values),
        data.draw(
            st.dictionaries(
                st.sampled_from([*schema["properties"], "extra"]), json_values, max_size=4
            )
        ),
    ]
    for instance in candidates:
        try:
            validate(instance, schema)
            ours = True
        except SchemaError:
            ours = False
        assert ours == reference.is_valid(instance), (schema, instance)


@pytest.mark.parametrize(
    ("schema", "field", "allowed"),
    [
        ({"type": "object", "properties": {}}, "arguments.additionalProperties", "allowed: false"),
        (
            {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "additionalProperties": False,
            },
            "arguments.properties.x.maxLength",
            "mandatory",
        ),
        (
            {"type": "object", "additionalProperties": False, "oneOf": []},
            "arguments.oneOf",
            "is not supported for type object",
        ),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"p": {"type": "string", "maxLength": 9, "pattern": "(a+)+$"}},
            },
            "arguments.properties.p.pattern",
            "catastrophic backtracking",
        ),
        ({"type": "string", "maxLength": 3}, "arguments.type", "'object' at the top level"),
        (
            {"type": "object", "additionalProperties": False, "required": ["ghost"]},
            "arguments.required",
            "'ghost' is not among the properties",
        ),
    ],
)
def test_schemas_outside_the_subset_are_refused_naming_the_keyword(
    schema: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        check_schema(schema)
    assert caught.value.field == field
    assert allowed in caught.value.problem


def test_schema_depth_is_bounded() -> None:
    schema: dict[str, Any] = {"type": "boolean"}
    for _ in range(MAX_SCHEMA_DEPTH):
        schema = {"type": "array", "items": schema, "maxItems": 1}
    with pytest.raises(SchemaError, match="nests deeper than"):
        check_schema({"type": "object", "additionalProperties": False, "properties": {"a": schema}})


# -- the catalogue ----------------------------------------------------------------------------


def test_catalogue_round_trips_through_json() -> None:
    assert CommandCatalogue.from_json(CATALOGUE.to_json()) == CATALOGUE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [{"name": "Reboot!", "purpose": "x"}],
            "commands[0].name: 'Reboot!' is not a command name",
        ),
        (
            [{"name": "a", "purpose": "maintenance", "senders": ["arn:aws:iam::*:role/x"]}],
            "commands[0].senders: 'arn:aws:iam::*:role/x' is not an IAM role or user ARN",
        ),
        (
            [{"name": "a", "purpose": "m", "timeoutSeconds": 0}],
            "commands[0].timeoutSeconds: 0 is outside 1..3600",
        ),
        (
            [{"name": "a", "purpose": "m"}, {"name": "a", "purpose": "m"}],
            "commands[1].name: 'a' appears twice",
        ),
        ([{"name": "a", "purpose": "Not A Purpose"}], "commands[0].purpose: 'Not A Purpose'"),
        (
            [{"name": "a", "purpose": "m", "things": "("}],
            "commands[0].things: '(' is not a regular",
        ),
        ({"name": "a"}, "commands: {'name': 'a'} is not a list"),
    ],
)
def test_bad_catalogues_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(CommandRuleError) as caught:
        CommandCatalogue.parse(raw)
    assert str(caught.value).startswith(message)


@given(st.text(min_size=1, max_size=2000))
def test_error_messages_show_hostile_values_shortened(name: str) -> None:
    try:
        CommandCatalogue.parse([{"name": name, "purpose": "m"}])
    except CommandRuleError as error:
        assert len(str(error)) < 200


def test_a_role_covers_its_sessions_and_nothing_else() -> None:
    assert sender_matches(OPERATORS, ALICE)
    assert sender_matches(f"arn:aws:iam::{ACCOUNT}:role/team/iot-operators", ALICE)
    assert not sender_matches(OPERATORS, MALLORY)
    assert not sender_matches(OPERATORS, f"arn:aws:sts::{ACCOUNT}:assumed-role/iot-operators-x/a")
    assert not sender_matches(OPERATORS, "arn:aws:sts::999999999999:assumed-role/iot-operators/a")
    assert not sender_matches(OPERATORS, f"{ALICE}/extra")


# -- requests ---------------------------------------------------------------------------------


def test_a_good_request_is_accepted_with_its_arguments() -> None:
    request = parse_send_request(_request(), CATALOGUE, requester=ALICE)
    assert (request.thing, request.spec, request.arguments) == (
        "temp-1",
        DIAGNOSTICS,
        {"level": "full"},
    )
    assert request.reason == "INC-42 sensor drifts"


@pytest.mark.parametrize(
    ("raw", "status", "field", "text"),
    [
        (
            _request(name="reboot"),
            404,
            "name",
            "'reboot' is not in the catalogue; allowed: diagnostics, dump-occupancy",
        ),
        (_request(name={"$ne": 1}), 400, "name", "is not a command name"),
        (_request(thing="temp/1/#"), 400, "thing", "is not a valid thing name"),
        (_request(thing="door-7"), 403, "thing", "not a device 'diagnostics' is for"),
        (
            _request(arguments={"level": "all"}),
            400,
            "arguments.level",
            "'all'; allowed: one of basic, full",
        ),
        (
            _request(arguments={"level": "full", "samples": 1000}),
            400,
            "arguments.samples",
            "1000 is outside 1..100",
        ),
        (
            _request(arguments={"level": "full", "rm": "-rf"}),
            400,
            "arguments.rm",
            "is not an argument",
        ),
        (_request(arguments={}), 400, "arguments.level", "missing; required"),
        (_request(arguments="level=full"), 400, "arguments", "is not of type object"),
        (_request(reason="   "), 400, "reason", "missing or empty"),
        (_request(purpose="occupancy-analytics"), 403, "purpose", "purpose limitation"),
        (_request(purpose=None), 400, "purpose", "None is not a purpose"),
        (_request(token="x"), 400, "token", "is not a request field"),
        ([1, 2], 400, "body", "is not an object"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    raw: object, status: int, field: str, text: str
) -> None:
    error = _refusal(raw)
    assert (error.status, error.field) == (status, field), str(error)
    assert text in error.problem


def test_a_caller_not_among_the_senders_is_refused_even_with_the_right_purpose() -> None:
    error = _refusal(_request(), requester=MALLORY)
    assert (error.status, error.field) == (403, "name")
    # Allowed for diagnostics does not mean allowed for occupancy data.
    error = _refusal(_request(name="dump-occupancy", purpose="occupancy-analytics", arguments={}))
    assert error.status == 403 and "may not be sent by" in error.problem


def test_request_bodies_are_bounded_and_strict() -> None:
    with pytest.raises(CommandRuleError) as caught:
        decode_request_body(b"{" + b" " * MAX_REQUEST_BYTES + b"}")
    assert caught.value.status == 413
    with pytest.raises(CommandRuleError, match="body: the key 'name' appears twice"):
        decode_request_body('{"name": "diagnostics", "name": "dump-occupancy"}')


# -- commands and responses on the wire -------------------------------------------------------


def _command() -> CommandMessage:
    request = parse_send_request(_request(), CATALOGUE, requester=ALICE)
    return new_command(request, now=NOW)


def test_a_command_round_trips_to_the_device() -> None:
    command = _command()
    assert parse_command(command.payload(), CATALOGUE, thing="temp-1", now=NOW) == command
    assert command.expires_at - command.issued_at == timedelta(seconds=20)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"thing": "temp-2"}, "thing"),
        ({"name": "reboot"}, "name"),
        ({"arguments": {"level": "all"}}, "arguments.level"),
        ({"id": "1; rm -rf /"}, "id"),
        ({"v": 2}, "v"),
        ({"shell": "reboot"}, "shell"),
        ({"expiresAt": "2026-12-02T02:59:00Z"}, "expiresAt"),
        ({"expiresAt": "2026-12-02T09:00:00Z"}, "expiresAt"),
    ],
)
def test_the_device_refuses_commands_that_break_a_rule(change: dict[str, Any], field: str) -> None:
    document = {**json.loads(_command().payload()), **change}
    with pytest.raises(CommandRuleError) as caught:
        parse_command(json.dumps(document).encode(), CATALOGUE, thing="temp-1", now=NOW)
    assert caught.value.field == field


def test_responses_are_checked_against_topic_thing_correlation_and_result_schema() -> None:
    command = _command()
    good = ResponseMessage(command.id, "temp-1", "succeeded", {"uptime": 5})
    checked = parse_response(
        good.payload(), thing="temp-1", spec=DIAGNOSTICS, correlation=correlation_data(command.id)
    )
    assert checked == good
    with pytest.raises(CommandRuleError) as caught:  # a device answering for another thing
        parse_response(good.payload(), thing="temp-2", spec=DIAGNOSTICS)
    assert caught.value.field == "thing"
    with pytest.raises(CommandRuleError) as caught:
        parse_response(good.payload(), thing="temp-1", correlation=b"another-id")
    assert caught.value.field == "id"
    bad_result = ResponseMessage(command.id, "temp-1", "succeeded", {"uptime": "long"})
    with pytest.raises(CommandRuleError) as caught:
        parse_response(bad_result.payload(), thing="temp-1", spec=DIAGNOSTICS)
    assert caught.value.field == "result.uptime"
    failed = ResponseMessage(command.id, "temp-1", "failed", {}, "x" * 5000)
    assert len(parse_response(failed.payload(), thing="temp-1").error or "") == 512


@given(st.binary(max_size=400))
def test_hostile_responses_raise_only_rule_errors(payload: bytes) -> None:
    try:
        parse_response(payload, thing="temp-1", spec=DIAGNOSTICS)
    except CommandRuleError as error:
        assert error.field


# -- topics: the responses topic is exact and per thing ----------------------------------------


def test_routing_uses_exact_per_thing_topics() -> None:
    assert Routing.of(TopicModel(), "temp-1") == Routing(
        "cmd/temp-1/commands", "cmd/temp-1/responses"
    )
    with pytest.raises(TopicModelError, match=r"responses: 'cmd/\{thing\}/commands' is also used"):
        TopicModel(responses="cmd/{thing}/commands")
    with pytest.raises(TopicModelError, match="responses: 'cmd/\\+/responses' contains '\\+'"):
        TopicModel(responses="cmd/+/responses")


def test_device_policy_grants_exactly_the_responses_topic_when_commands_are_on() -> None:
    def publish(access: DeviceAccess) -> list[str]:
        document = device_policy_document(access, plain_arn())
        (statement,) = [s for s in document["Statement"] if s["Action"] == "iot:Publish"]
        return list(statement["Resource"])

    prefix = f"arn:aws:iot:eu-west-1:{ACCOUNT}:topic/"
    assert publish(DeviceAccess()) == [f"{prefix}dt/${{iot:Connection.Thing.ThingName}}/telemetry"]
    assert publish(DeviceAccess(command_responses=True)) == [
        f"{prefix}dt/${{iot:Connection.Thing.ThingName}}/telemetry",
        f"{prefix}cmd/${{iot:Connection.Thing.ThingName}}/responses",
    ]
    assert not any(
        re.search(r"[*+#]", arn) for arn in publish(DeviceAccess(command_responses=True))
    )


def test_every_renderer_follows_the_responses_switch() -> None:
    on, off = DeviceAccess(command_responses=True), DeviceAccess()
    assert ("command-responses", "topic = CONCAT('cmd/', $connectionDeviceId, '/responses')") in (
        device_to_cloud_routes(on)
    )
    assert all(name != "command-responses" for name, _ in device_to_cloud_routes(off))
    assert "pattern write cmd/%u/responses" in render_mosquitto_acl(on, bridge_identity=None)
    assert "responses" not in render_mosquitto_acl(off, bridge_identity=None)
