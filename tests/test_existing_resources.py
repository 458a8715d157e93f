"""``from_*`` imports of what may already exist: a private CA, a CloudTrail trail, a topic.

aws-cdk-lib's conventions: a classmethod returns an interface, nothing is created,
and the constructs take the interface. The user-style compositions (explicit env,
cdk-nag clean) are cases of ``tests/support/aws_user_stacks.py``; these tests check
what the imports put into the template, and that wrong input fails at the call.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_acmpca as acmpca
from aws_cdk.assertions import Template

from iot_remote_access.constructs.aws import (
    AlarmTopic,
    AuditTrail,
    CertificateRotation,
    DevicePolicy,
    IAuditTrail,
    PrivateCa,
)
from iot_remote_access.settings import FleetSettings
from tests.support.aws_user_stacks import (
    CA_ARN,
    IMPORTED_TOPIC_ARN,
    IMPORTED_TRAIL_ARN,
    PINNED,
    PlatformStack,
)


def _stack() -> PlatformStack:
    return PlatformStack(cdk.App(), "Platform", env=PINNED, checks=False)


def _template(stack: cdk.Stack) -> dict[str, Any]:
    return Template.from_stack(stack).to_json()  # type: ignore[no-any-return]


def test_an_existing_ca_signs_and_no_ca_is_created() -> None:
    stack = _stack()
    existing = PrivateCa.from_certificate_authority_arn(stack, "OrgCa", CA_ARN)
    assert existing.certificate_authority_arn == CA_ARN
    rotation = CertificateRotation(
        stack,
        "Rotation",
        device_policy=DevicePolicy(stack, "Fleet"),
        certificate_authority=existing,
        audit=False,
    )
    assert rotation.ca.ca_arn == CA_ARN and rotation.ca.authority is None
    template = _template(stack)
    types = [r["Type"] for r in template["Resources"].values()]
    assert "AWS::ACMPCA::CertificateAuthority" not in types
    issue = [
        statement
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
        if "acm-pca:IssueCertificate" in json.dumps(statement["Action"])
    ]
    assert issue and all(statement["Resource"] == CA_ARN for statement in issue)


def test_a_private_ca_of_the_app_is_a_certificate_authority_too() -> None:
    stack = _stack()
    ca = PrivateCa(stack, "TeamCa", common_name="Team CA")
    CertificateRotation(
        stack, "Rotation", device_policy=DevicePolicy(stack, "Fleet"), certificate_authority=ca
    )
    authorities = [
        r
        for r in _template(stack)["Resources"].values()
        if r["Type"] == "AWS::ACMPCA::CertificateAuthority"
    ]
    assert len(authorities) == 1  # the team's, not a second one inside the rotation


def test_aws_cdk_libs_own_import_is_accepted() -> None:
    stack = _stack()
    imported = acmpca.CertificateAuthority.from_certificate_authority_arn(stack, "Ca", CA_ARN)
    rotation = CertificateRotation(
        stack,
        "Rotation",
        device_policy=DevicePolicy(stack, "Fleet"),
        certificate_authority=imported,
    )
    assert rotation.ca.ca_arn == CA_ARN


def test_a_ca_given_twice_is_refused() -> None:
    stack = _stack()
    settings = FleetSettings.parse({"certificates": {"caArn": CA_ARN}}).certificates
    with pytest.raises(ValueError, match=r"^certificate_authority: given with settings\.ca_arn"):
        CertificateRotation(
            stack,
            "Rotation",
            device_policy=DevicePolicy(stack, "Fleet"),
            settings=settings,
            certificate_authority=PrivateCa.from_certificate_authority_arn(stack, "Ca", CA_ARN),
        )


def test_an_existing_trail_creates_nothing_and_keeps_what_was_given() -> None:
    before = len(_template(_stack())["Resources"])
    stack = _stack()
    trail = AuditTrail.from_trail_attributes(
        stack, "OrgTrail", trail_arn=IMPORTED_TRAIL_ARN, key=stack.key
    )
    assert isinstance(trail, IAuditTrail)
    assert trail.trail_arn == IMPORTED_TRAIL_ARN and trail.key is stack.key
    assert trail.log_group is None
    assert len(_template(stack)["Resources"]) == before


def test_a_new_trail_is_an_audit_trail_interface_too() -> None:
    stack = _stack()
    trail = AuditTrail(stack, "Audit")
    assert isinstance(trail, IAuditTrail)
    assert stack.resolve(trail.trail_arn) == {
        "Fn::GetAtt": [stack.get_logical_id(trail.trail.node.default_child), "Arn"]
    }  # type: ignore[arg-type]


def test_an_existing_topic_is_an_sns_topic_interface() -> None:
    stack = _stack()
    topic = AlarmTopic.from_topic_arn(stack, "OnCall", IMPORTED_TOPIC_ARN)
    assert topic.topic_arn == IMPORTED_TOPIC_ARN
    assert stack.resolve(topic.topic_name) == "on-call"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda s: PrivateCa.from_certificate_authority_arn(s, "Ca", 42),
            TypeError,
            r"^PrivateCa\.from_certificate_authority_arn certificate_authority_arn: got int 42; allowed: str$",
        ),
        (
            lambda s: PrivateCa.from_certificate_authority_arn(
                s, "Ca", "arn:aws:kms:eu-central-1:123456789012:key/abc"
            ),
            ValueError,
            r"^certificate_authority_arn: 'arn:aws:kms:.*' is not an ACM Private CA ARN; allowed: ",
        ),
        (
            lambda s: AuditTrail.from_trail_attributes(s, "T", trail_arn=["arn"]),
            TypeError,
            r"^AuditTrail\.from_trail_attributes trail_arn: got list \['arn'\]; allowed: str$",
        ),
        (
            lambda s: AuditTrail.from_trail_attributes(s, "T", trail_arn="org-trail"),
            ValueError,
            r"^trail_arn: 'org-trail' is not a CloudTrail trail ARN; allowed: arn:aws:cloudtrail:",
        ),
        (
            lambda s: AuditTrail.from_trail_attributes(
                s, "T", trail_arn=IMPORTED_TRAIL_ARN, log_group="org-trail"
            ),
            TypeError,
            r"^AuditTrail\.from_trail_attributes log_group: got str 'org-trail'; allowed: logs\.ILogGroup or None$",
        ),
        (
            lambda s: AlarmTopic.from_topic_arn(s, "T", "on-call"),
            ValueError,
            r"^topic_arn: 'on-call' is not an SNS topic ARN; allowed: arn:aws:sns:",
        ),
        (
            lambda s: CertificateRotation(
                s, "R", device_policy=DevicePolicy(s, "F"), certificate_authority=CA_ARN
            ),
            TypeError,
            r"^CertificateRotation certificate_authority: got str 'arn:aws:acm-pca:.*; allowed: acmpca\.ICertificateAuthority or None$",
        ),
    ],
    ids=["ca-type", "ca-arn", "trail-type", "trail-arn", "trail-log-group", "topic-arn", "ca-prop"],
)
def test_wrong_input_fails_at_the_call_naming_the_parameter(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call(cdk.Stack(cdk.App(), "S"))


def test_a_token_arn_is_taken_as_is() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    arn = cdk.CfnParameter(stack, "CaArn").value_as_string
    assert (
        PrivateCa.from_certificate_authority_arn(stack, "Ca", arn).certificate_authority_arn == arn
    )
    trail = cdk.CfnParameter(stack, "TrailArn").value_as_string
    assert AuditTrail.from_trail_attributes(stack, "T", trail_arn=trail).trail_arn == trail
