"""The IoT policy checker: each rule fails and passes, intrinsics, malformed input, fuzzing."""

from __future__ import annotations

import json
from itertools import product
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.core.aws_policy import device_policy_document, plain_arn
from iot_remote_access.core.policy_check import (
    RULES,
    THING_NAME_VARIABLE,
    PolicyDocumentError,
    check_policy,
)
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.topics import DeviceAccess, TopicModel, TopicModelError
from iot_remote_access.settings import FleetSettings, SettingsError

ARN = "arn:aws:iot:eu-west-1:123456789012"
THING = "${iot:Connection.Thing.ThingName}"
ATTACHED = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}],
    }


def rules_of(document: Any) -> set[str]:
    return {finding.rule_id for finding in check_policy(document)}


# Each rule: a document that triggers it and the closest document that does not.
RULE_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "IRA001": (
        allow("iot:*", f"{ARN}:topic/dt/{THING}/telemetry"),
        allow("iot:Publish", f"{ARN}:topic/dt/{THING}/telemetry"),
    ),
    "IRA002": (
        allow("iot:Subscribe", f"{ARN}:topicfilter/cmd/+/commands"),
        allow("iot:Subscribe", f"{ARN}:topicfilter/cmd/{THING}/commands"),
    ),
    "IRA003": (
        allow("iot:Connect", f"{ARN}:client/*", Condition=ATTACHED),
        allow("iot:Connect", f"{ARN}:client/{THING}", Condition=ATTACHED),
    ),
    "IRA004": (
        allow("iot:Connect", f"{ARN}:client/${{iot:ClientId}}", Condition=ATTACHED),
        allow("iot:Connect", f"{ARN}:client/{THING}", Condition=ATTACHED),
    ),
    "IRA005": (
        allow("iot:Connect", f"{ARN}:client/{THING}"),
        allow("iot:Connect", f"{ARN}:client/{THING}", Condition=ATTACHED),
    ),
    "IRA006": (
        allow("iot:UpdateThingShadow", f"{ARN}:thing/*"),
        allow("iot:UpdateThingShadow", f"{ARN}:thing/{THING}"),
    ),
    "IRA007": (
        {"Statement": [{"Effect": "Allow", "NotAction": "iot:Connect", "Resource": "*"}]},
        {"Statement": [{"Effect": "Deny", "NotAction": "iot:Connect", "Resource": "*"}]},
    ),
    "IRA008": (
        allow("iot:Publish", "*"),
        allow("iot:Publish", f"{ARN}:topic/dt/{THING}/telemetry"),
    ),
    "IRA009": (
        allow("iot:Publish", {"Fn::Join": ["", [f"{ARN}:topic/", {"Ref": "Topic"}]]}),
        allow("iot:Publish", {"Fn::Join": ["", [f"{ARN}:topic/", "dt/", THING, "/t"]]}),
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(RULE_CASES) == set(RULES)


@pytest.mark.parametrize("rule_id", sorted(RULE_CASES))
def test_rule_fails_on_its_case(rule_id: str) -> None:
    failing, _ = RULE_CASES[rule_id]
    assert rule_id in rules_of(failing)


@pytest.mark.parametrize("rule_id", sorted(RULE_CASES))
def test_rule_passes_on_the_fixed_case(rule_id: str) -> None:
    _, passing = RULE_CASES[rule_id]
    assert check_policy(passing) == []


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("iot:Publish", f"{ARN}:topic/$aws/things/*/shadow/update"),
        ("iot:Publish", f"{ARN}:topic/dt/#"),
        ("iot:Receive", f"{ARN}:topic/cmd/?/x"),
        ("iot:Subscribe", f"{ARN}:topicfilter/$aws/things/*"),
        ("iot:Subscribe", f"{ARN}:topicfilter/#"),
    ],
)
def test_topic_wildcards_of_device_defender_are_found(action: str, resource: str) -> None:
    assert rules_of(allow(action, resource)) == {"IRA002"}


def test_wildcard_in_region_or_account_is_found() -> None:
    assert rules_of(allow("iot:Publish", "arn:aws:iot:*:*:topic/dt/x/t")) == {"IRA008"}


def test_job_action_on_any_thing_is_found() -> None:
    document = allow(["iot:GetPendingJobExecutions", "iot:DescribeJobExecution"], f"{ARN}:thing/*")
    findings = check_policy(document)
    assert {(f.rule_id, f.action) for f in findings} == {
        ("IRA006", "iot:getpendingjobexecutions"),
        ("IRA006", "iot:describejobexecution"),
    }


def test_deny_statements_are_never_findings() -> None:
    document = {
        "Statement": [
            {"Effect": "Deny", "Action": "iot:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/#"},
        ]
    }
    assert check_policy(document) == []


def test_finding_names_statement_action_resource_and_why() -> None:
    document = {
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/dt/{THING}/t"},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/dt/+/t"},
        ]
    }
    (finding,) = check_policy(json.dumps(document))
    assert (finding.rule_id, finding.statement, finding.action) == ("IRA002", 1, "iot:subscribe")
    assert finding.resource == f"{ARN}:topicfilter/dt/+/t"
    assert "contains '+'" in finding.message
    assert finding.severity == "high"


def test_intrinsics_are_resolved_before_checking() -> None:
    partition = {"Ref": "AWS::Partition"}
    joined = {"Fn::Join": ["", ["arn:", partition, ":iot:eu-west-1:1:topicfilter/dt/+/t"]]}
    subbed = {
        "Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
        "topicfilter/cmd/${!iot:Connection.Thing.ThingName}/c"
    }
    assert rules_of(allow("iot:Subscribe", joined)) == {"IRA002"}
    assert rules_of(allow("iot:Subscribe", subbed)) == set()


def test_both_branches_of_fn_if_are_checked() -> None:
    resource = {"Fn::If": ["Prod", f"{ARN}:topic/dt/{THING}/t", f"{ARN}:topic/dt/#"]}
    assert rules_of(allow("iot:Publish", resource)) == {"IRA002"}
    assert rules_of(allow("iot:Publish", [resource])) == {"IRA002"}


def test_a_wildcard_before_an_unknown_part_is_still_found() -> None:
    resource = {"Fn::Join": ["", [f"{ARN}:topicfilter/#/", {"Fn::GetAtt": ["Thing", "Name"]}]]}
    assert rules_of(allow("iot:Subscribe", resource)) == {"IRA002", "IRA009"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", r"^not valid JSON"),
        ("[]", r"expected a JSON object, got list"),
        ({}, r"no 'Statement'"),
        ({"Statement": "x"}, r"Statement: expected an object or a list, got str"),
        ({"Statement": [1]}, r"Statement\[0\]: expected an object, got int"),
        (
            {"Statement": [{"Effect": "Alow", "Action": "a", "Resource": "r"}]},
            r"Statement\[0\]\.Effect: 'Alow'; allowed: 'Allow' or 'Deny'",
        ),
        ({"Statement": [{"Effect": "Allow", "Resource": "r"}]}, r"Statement\[0\]: no 'Action'"),
        ({"Statement": [{"Effect": "Allow", "Action": "a"}]}, r"Statement\[0\]: no 'Resource'"),
        (
            {"Statement": [{"Effect": "Allow", "Action": 3, "Resource": "r"}]},
            r"Statement\[0\]\.Action: expected a string or a list, got int",
        ),
    ],
)
def test_malformed_documents_get_a_clear_error(document: Any, message: str) -> None:
    with pytest.raises(PolicyDocumentError, match=message):
        check_policy(document)


@pytest.mark.parametrize(("tunneling", "rotation", "jobs"), list(product([False, True], repeat=3)))
def test_rendered_device_policy_is_clean_with_every_switch(
    tunneling: bool, rotation: bool, jobs: bool
) -> None:
    access = DeviceAccess(
        tunneling=tunneling, rotation=rotation, jobs=jobs, job_ids=("rotate",) if jobs else ()
    )
    document = device_policy_document(access, plain_arn())
    # Jobs answers fold into "$aws/things/<own thing>/jobs/*" to fit AWS's 2,048
    # characters (core/aws_policy.py): the pattern rule IRA002 sees that '*', the
    # reachability analysis proves it stays inside the device's own namespace (LOW).
    own_jobs = f"$aws/things/{THING_NAME_VARIABLE}/jobs/*"
    findings = check_policy(document)
    assert all(f.rule_id == "IRA002" and f.resource.endswith(own_jobs) for f in findings)
    assert bool(findings) is jobs
    assert not analyze_policy(document).lateral
    text = json.dumps(document).replace(own_jobs, "")
    assert "*" not in text and "+" not in text and "#" not in text


# -- fuzzing ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
fragments = st.sampled_from(
    [
        "iot:Publish",
        "iot:Subscribe",
        "iot:Connect",
        "iot:Receive",
        "iot:*",
        "*",
        "iot:Pub*",
        f"{ARN}:topic/",
        f"{ARN}:topicfilter/",
        f"{ARN}:client/",
        f"{ARN}:thing/",
        "dt/",
        "+",
        "#",
        THING,
        "${iot:ClientId}",
        "/t",
        "arn:aws:iot:*:*:",
        "?",
    ]
)
strings = st.lists(fragments, min_size=1, max_size=5).map("".join)
intrinsic = st.one_of(
    strings,
    st.builds(lambda parts: {"Fn::Join": ["", parts]}, st.lists(strings, max_size=3)),
    st.builds(lambda s: {"Fn::Sub": s}, strings),
    st.builds(lambda a, b: {"Fn::If": ["C", a, b]}, strings, strings),
    st.builds(
        lambda name: {"Ref": name}, st.sampled_from(["AWS::Region", "Param", "AWS::NoValue"])
    ),
    json_values,
)
statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny", "Maybe"]),
        "Action": st.one_of(intrinsic, st.lists(intrinsic, max_size=3)),
        "Resource": st.one_of(intrinsic, st.lists(intrinsic, max_size=3)),
    },
    optional={"Condition": st.one_of(st.just(ATTACHED), json_values)},
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"Statement": st.one_of(statements, st.lists(statements, max_size=4))}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_fuzzed_documents_get_findings_or_a_clear_error(document: Any) -> None:
    try:
        findings = check_policy(document)
    except PolicyDocumentError as error:
        assert str(error)
    else:
        for finding in findings:
            assert finding.rule_id in RULES
            assert finding.message


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["telemetryTopic", "commandsTopic", "rotationCsrTopic", "thingNamePattern"]
        ),
        st.one_of(
            strings,
            st.text(max_size=40),
            st.lists(st.sampled_from(["dt", "{thing}", "x", "", "$aws", "+"]), max_size=9).map(
                "/".join
            ),
        ),
    )
)
def test_fuzzed_settings_are_valid_or_rejected_and_never_render_a_wildcard(
    raw: dict[str, str],
) -> None:
    try:
        fleet = FleetSettings.parse(raw)
    except SettingsError as error:
        assert str(error).startswith("iot-remote-access")
        return
    try:
        access = DeviceAccess(topics=fleet.topic_model(), tunneling=True, rotation=True)
    except TopicModelError:  # pragma: no cover - parse() already ran the same checks
        pytest.fail("settings accepted a topic model that the model rejects")
    assert check_policy(device_policy_document(access, plain_arn())) == []


def test_topic_model_and_settings_agree() -> None:
    fleet = FleetSettings.parse({"telemetryTopic": "a/{thing}/b"})
    assert fleet.topic_model() == TopicModel(telemetry="a/{thing}/b")


def test_unknown_intrinsic_with_odd_argument_is_unverifiable_not_a_crash() -> None:
    """Found by the fuzzer: {'': 1} as a resource once raised TypeError."""
    document = {
        "Statement": {"Effect": "Allow", "Action": {"Ref": "AWS::Region"}, "Resource": {"": 1}}
    }
    assert check_policy(document) == []  # the action resolves to a non-iot name
    document["Statement"]["Action"] = "iot:Publish"  # type: ignore[index]
    assert rules_of(document) == {"IRA009"}
