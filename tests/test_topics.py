"""The topic model: template rules, thing names, rendering and per-device grants."""

from __future__ import annotations

import pytest

from iot_remote_access.core.topics import (
    Access,
    DeviceAccess,
    TopicModel,
    TopicModelError,
    render_topic,
    thing_from_topic,
    validate_thing_name,
    validate_topic_template,
)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("dt/+/telemetry", r"'dt/\+/telemetry' contains '\+'; allowed: literal topic levels"),
        ("dt/{thing}/#", r"contains '#'"),
        ("dt/{thing}/*", r"contains '\*'"),
        ("dt/{thing}/?", r"contains '\?'"),
        ("dt/${iot:ClientId}/x", r"contains '\$\{'"),
        ("dt/telemetry", r"has no \{thing\}"),
        ("$aws/things/{thing}/shadow", r"starts with '\$'.*reserved"),
        ("/dt/{thing}", r"empty topic level"),
        ("dt/{thing}/", r"empty topic level"),
        ("dt//{thing}", r"empty topic level"),
        ("", r"is empty"),
        ("dt/x{thing}/t", r"\{thing\} as a whole topic level"),
        ("dt/{thing}/{other}", r"placeholder other than"),
        ("a/b/c/d/e/f/g/{thing}/h", r"has 8 '/'; AWS IoT allows at most 7"),
        ("d" * 126 + "/{thing}/t", r"renders to 257 bytes .* at most 256"),
        ("dt/{thing}/\x00", r"control character"),
    ],
)
def test_bad_templates_name_field_value_and_rule(template: str, message: str) -> None:
    with pytest.raises(TopicModelError, match=rf"^telemetry: .*{message}"):
        validate_topic_template(template, field_name="telemetry")


def test_longest_allowed_template_passes() -> None:
    template = "d" * 125 + "/{thing}/t"  # 125 + 1 + 128 + 2 = 256 bytes: the limit
    assert validate_topic_template(template, field_name="t") == template


@pytest.mark.parametrize("name", ["a", "sensor-01", "gw:eu_1", "x" * 128])
def test_valid_thing_names(name: str) -> None:
    assert validate_thing_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a+b", "a#", "a*", "x" * 129, "dévice", "a b", 7])
def test_invalid_thing_names_are_refused(name: object) -> None:
    with pytest.raises(TopicModelError, match=r"^thing: .*allowed: \[a-zA-Z0-9:_-\]\{1,128\}"):
        validate_thing_name(name)


def test_render_and_parse_back() -> None:
    assert render_topic("dt/{thing}/telemetry", "s-1") == "dt/s-1/telemetry"
    assert thing_from_topic("dt/{thing}/telemetry", "dt/s-1/telemetry") == "s-1"
    assert thing_from_topic("dt/{thing}/telemetry", "dt/s-1/other") is None
    assert thing_from_topic("dt/{thing}/telemetry", "dt/a/b/telemetry") is None
    assert thing_from_topic("dt/{thing}/telemetry", "dt/+/telemetry") is None


def test_render_refuses_a_wildcard_thing() -> None:
    with pytest.raises(TopicModelError):
        render_topic("cmd/{thing}/commands", "#")


def test_topic_model_refuses_two_purposes_on_one_topic() -> None:
    with pytest.raises(
        TopicModelError, match=r"^commands: 'dt/\{thing\}/x' is also used for telemetry"
    ):
        TopicModel(telemetry="dt/{thing}/x", commands="dt/{thing}/x")


def test_default_grants_are_exactly_telemetry_and_commands() -> None:
    grants = DeviceAccess().grants()
    assert [(g.access, g.template) for g in grants] == [
        (Access.PUBLISH, "dt/{thing}/telemetry"),
        (Access.SUBSCRIBE, "cmd/{thing}/commands"),
    ]


def test_switches_add_exact_per_thing_topics() -> None:
    access = DeviceAccess(tunneling=True, rotation=True, jobs=True, job_ids=("rotate-1",))
    templates = {g.template for g in access.grants()}
    assert "$aws/things/{thing}/tunnels/notify" in templates
    assert {"rot/{thing}/csr", "rot/{thing}/certificate", "rot/{thing}/confirm"} <= templates
    assert "$aws/things/{thing}/jobs/rotate-1/update" in templates
    assert all("{thing}" in t for t in templates)
    assert not any(ch in t for t in templates for ch in "+#*")
    assert not any(
        t.startswith("$") for t in (g.template for g in access.grants(include_aws_reserved=False))
    )


def test_allows_is_exact() -> None:
    access = DeviceAccess()
    assert access.allows(Access.PUBLISH, "s1", "dt/s1/telemetry")
    assert not access.allows(Access.PUBLISH, "s1", "dt/s2/telemetry")
    assert not access.allows(Access.SUBSCRIBE, "s1", "cmd/+/commands")
    assert not access.allows(Access.SUBSCRIBE, "s1", "dt/s1/telemetry")


def test_job_ids_are_validated_and_need_jobs_on() -> None:
    with pytest.raises(TopicModelError, match=r"^job_ids: 'a/\+' is not a job id"):
        DeviceAccess(jobs=True, job_ids=("a/+",))
    with pytest.raises(TopicModelError, match=r"^job_ids: given while jobs is off"):
        DeviceAccess(job_ids=("a",))
