"""The reachability analysis on AWS IoT policies: the library's own, and known mistakes.

Every policy the library renders (every capability combination) reaches no other
device; each classic mistake is found with a concrete witness that says what the
attacker does. AWS's semantics asserted here come from its documentation: ``+``/``#``
are literal in policies (also in a Deny), ``*`` crosses '/', a filter starting with a
wildcard does not match '$' topics, and ``${iot:Connection.Thing.ThingName}`` only
resolves for the thing attached to the certificate.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from iot_remote_access.core.aws_policy import device_policy_document, plain_arn
from iot_remote_access.core.reach import Operation, Severity
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.topics import DeviceAccess

ARN = "arn:aws:iot:eu-west-1:123456789012:"
THING = "${iot:Connection.Thing.ThingName}"
CONNECT_SELF = {
    "Effect": "Allow",
    "Action": "iot:Connect",
    "Resource": f"{ARN}client/{THING}",
    "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
}


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [CONNECT_SELF, *statements]}


def _allow(action: str | list[str], resource: str | list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    "flags",
    list(itertools.product((False, True), repeat=4)),
    ids=lambda f: "".join("01"[x] for x in f),
)
def test_every_policy_the_library_renders_reaches_no_other_device(flags: tuple[bool, ...]) -> None:
    tunneling, rotation, jobs, responses = flags
    access = DeviceAccess(
        tunneling=tunneling,
        rotation=rotation,
        jobs=jobs,
        job_ids=("ota-1",) if jobs else (),
        command_responses=responses,
    )
    report = analyze_policy(device_policy_document(access, plain_arn()))
    assert report.findings == ()


def test_a_topic_wildcard_reaches_another_devices_commands() -> None:
    report = analyze_policy(
        _policy(_allow(["iot:Subscribe", "iot:Receive"], f"{ARN}topicfilter/cmd/*"))
    )
    (found,) = report.lateral
    assert found.operation is Operation.SUBSCRIBE
    assert found.witness == "cmd/#"  # '*' allows this filter, which matches B's commands
    assert found.victim_topic.startswith("cmd/device-b/") and found.victim == "device-b"
    # No Receive on topic/..., so nothing is delivered: the subscription is the finding.
    assert Operation.RECEIVE not in {f.operation for f in report.findings}


def test_mqtt_wildcards_are_literal_in_a_policy() -> None:
    """Allow topicfilter/cmd/+/commands grants the filter 'cmd/+/commands' itself."""
    report = analyze_policy(
        _policy(
            _allow("iot:Subscribe", f"{ARN}topicfilter/cmd/+/commands"),
            _allow("iot:Receive", f"{ARN}topic/cmd/*"),
        )
    )
    by_op = {f.operation: f for f in report.lateral}
    assert by_op[Operation.SUBSCRIBE].witness == "cmd/+/commands"
    assert by_op[Operation.RECEIVE].witness == "cmd/device-b/commands"


def test_a_deny_with_mqtt_wildcards_denies_only_that_literal_filter() -> None:
    report = analyze_policy(
        _policy(
            _allow("iot:Subscribe", f"{ARN}topicfilter/*"),
            {"Effect": "Deny", "Action": "iot:Subscribe", "Resource": f"{ARN}topicfilter/#"},
        )
    )
    (found,) = report.lateral
    assert found.witness != "#" and found.victim == "device-b"


def test_a_leading_wildcard_does_not_reach_dollar_topics() -> None:
    """'#' never matches $aws/things/B/...: only the exact '$aws/...' filter would."""
    filters_only_wild = _policy(
        _allow("iot:Subscribe", [f"{ARN}topicfilter/#", f"{ARN}topicfilter/+/#"]),
        _allow("iot:Receive", f"{ARN}topic/$aws/*"),
    )
    report = analyze_policy(filters_only_wild)
    assert Operation.RECEIVE not in {f.operation for f in report.lateral}


def test_a_client_id_wildcard_lets_a_device_connect_as_another() -> None:
    report = analyze_policy(
        {
            "Statement": [
                _allow("iot:Connect", f"{ARN}client/*"),
                _allow("iot:Publish", f"{ARN}topic/dt/${{iot:ClientId}}/telemetry"),
            ]
        }
    )
    by_op = {f.operation: f for f in report.lateral}
    assert by_op[Operation.CONNECT].witness == "device-b"
    publish = by_op[Operation.PUBLISH]
    assert (publish.witness, publish.client_id) == ("dt/device-b/telemetry", "device-b")


def test_thing_name_binding_is_kept_under_another_client_id() -> None:
    """Connect on client/* but topics on ThingName: the thing name does not follow the id."""
    report = analyze_policy(
        {
            "Statement": [
                _allow("iot:Connect", f"{ARN}client/*"),
                _allow("iot:Publish", f"{ARN}topic/dt/{THING}/telemetry"),
            ]
        }
    )
    assert [f.operation for f in report.lateral] == [Operation.CONNECT]


def test_a_wildcard_inside_the_own_namespace_is_low() -> None:
    report = analyze_policy(_policy(_allow("iot:Publish", f"{ARN}topic/dt/{THING}/*")))
    assert report.lateral == ()
    (low,) = report.findings
    assert (low.severity, low.operation) == (Severity.LOW, Operation.PUBLISH)


def test_an_unmodelled_condition_is_noted_and_counts_as_possible() -> None:
    report = analyze_policy(
        _policy(
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{ARN}topic/*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        )
    )
    assert report.lateral and report.notes
