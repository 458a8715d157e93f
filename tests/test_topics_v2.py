"""Topic model v2: declared topics, Device Shadows and Jobs for any job id.

One model (``DeviceAccess``) feeds the AWS policy, the brokers and the security
monitoring; these tests show what each topic kind renders to, that the AWS
policy fits AWS IoT's 2,048 characters in the worst case (or the settings are
refused naming the field), and that the reachability analysis finds no reach
into another thing in any rendered policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_remote_access.constructs.aws import DevicePolicy
from iot_remote_access.core.aws_policy import (
    MAX_POLICY_CHARS,
    check_policy_size,
    device_policy_document,
    plain_arn,
    policy_size,
    worst_case_policy_size,
)
from iot_remote_access.core.hivemq_permissions import device_permissions, granted_topics
from iot_remote_access.core.mosquitto_acl import MosquittoAcl
from iot_remote_access.core.policy_check import THING_NAME_VARIABLE
from iot_remote_access.core.reach import Severity
from iot_remote_access.core.reach_aws import analyze_policy
from iot_remote_access.core.security_detections import (
    DetectionConfig,
    evaluate_lifecycle_event,
)
from iot_remote_access.core.topics import (
    Access,
    CustomTopic,
    DeviceAccess,
    ShadowOperation,
    Shadows,
    TopicModelError,
)
from iot_remote_access.guard.reach_scan import plain_document
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.aws_synth import synth_checked, validation_report
from tests.support.aws_user_stacks import PINNED, PlatformStack

OWN = f"$aws/things/{THING_NAME_VARIABLE}/"
HEALTH = CustomTopic("health", "dt/{thing}/health", Access.PUBLISH)
CONFIG = CustomTopic("config", "cfg/{thing}/desired", Access.SUBSCRIBE)

#: Configurations a fleet may choose, every one within AWS's limit in the worst case.
FITTING = {
    "default": DeviceAccess(),
    "jobs": DeviceAccess(jobs=True),
    "jobs-any-id": DeviceAccess(jobs=True, any_job_id=True),
    "every-switch": DeviceAccess(
        tunneling=True, rotation=True, jobs=True, any_job_id=True, command_responses=True
    ),
    "classic-shadow": DeviceAccess(shadows=Shadows(classic=True)),
    "two-named-shadows": DeviceAccess(shadows=Shadows(named=("config", "state"))),
    "classic-get-update+jobs-any+custom": DeviceAccess(
        jobs=True,
        any_job_id=True,
        shadows=Shadows(classic=True, operations=(ShadowOperation.GET, ShadowOperation.UPDATE)),
        custom=(HEALTH,),
    ),
    "named-shadow+custom+tunneling": DeviceAccess(
        tunneling=True, shadows=Shadows(named=("config",)), custom=(HEALTH, CONFIG)
    ),
}


def _resources(document: dict[str, Any], action: str) -> list[str]:
    return [
        resource
        for statement in document["Statement"]
        if action in statement["Action"]
        for resource in statement["Resource"]
    ]


# -- the model ---------------------------------------------------------------------------


def test_a_device_reading_its_own_shadow_raises_no_finding() -> None:
    """The issue's reproduction: `unexpected-subscription high` for the own shadow."""
    config = DetectionConfig(access=DeviceAccess(shadows=Shadows(classic=True)))

    def subscribed(client: str, topic: str) -> list[Any]:
        event = {
            "clientId": client,
            "eventType": "subscribed",
            "timestamp": 1460065214626,
            "topics": [topic],
        }
        return evaluate_lifecycle_event(event, config)

    assert subscribed("sensor-1", "$aws/things/sensor-1/shadow/update/accepted") == []
    (finding,) = subscribed("sensor-1", "$aws/things/sensor-2/shadow/update/accepted")
    assert finding.detection == "unexpected-subscription"
    assert finding.severity == "high"


def test_shadow_grants_follow_aws_topic_layout() -> None:
    access = DeviceAccess(
        shadows=Shadows(classic=True, named=("cfg",), operations=(ShadowOperation.UPDATE,))
    )
    grants = {(g.access, g.render("s-1")) for g in access.grants()}
    base = "$aws/things/s-1/shadow"
    update = {
        (Access.PUBLISH, f"{base}/update"),
        *((Access.SUBSCRIBE, f"{base}/update/{a}") for a in ("accepted", "rejected")),
        *((Access.SUBSCRIBE, f"{base}/update/{a}") for a in ("delta", "documents")),
    }
    named = {(a, t.replace(base, f"{base}/name/cfg")) for a, t in update}
    assert update | named <= grants
    assert not any("/get" in t or "/delete" in t for _, t in grants)
    # Shadows are AWS-only: the brokers get none of them.
    assert all("$aws" not in g.template for g in access.grants(include_aws_reserved=False))


def test_jobs_for_any_job_id_reach_only_the_own_thing() -> None:
    access = DeviceAccess(jobs=True, any_job_id=True)
    assert access.allows(Access.PUBLISH, "s-1", "$aws/things/s-1/jobs/fw-42/update")
    for other in (
        "$aws/things/s-2/jobs/fw-42/update",  # another thing
        "$aws/things/s-1/jobs/+/update",  # an MQTT wildcard as job id
        "$aws/things/s-1/jobs/a/b/update",  # more than one level
        "$aws/things/s-1/jobs//update",  # no job id
    ):
        assert not access.allows(Access.PUBLISH, "s-1", other), other
    document = device_policy_document(access, plain_arn())
    assert f"arn:aws:iot:eu-west-1:123456789012:topic/{OWN}jobs/*/update" in _resources(
        document, "iot:Publish"
    )
    report = analyze_policy(document)
    assert report.lateral == ()
    assert {f.severity for f in report.findings} == {Severity.LOW}
    assert all(f.witness.split("/", 1)[1].startswith(OWN) for f in report.findings)


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        (lambda: CustomTopic("h", "dt/+/x", Access.PUBLISH), "topics.custom.h.template", r"'\+'"),
        (lambda: CustomTopic("a b", "dt/{thing}/x", Access.PUBLISH), "topics.custom", "a b"),
        (lambda: Shadows(named=("a/b",)), "shadows.named", "not a shadow name"),
        (lambda: Shadows(classic=True, operations=()), "shadows.operations", "is empty"),
        (lambda: DeviceAccess(any_job_id=True), "jobs.anyJobId", "jobs is off"),
        (
            lambda: DeviceAccess(
                custom=(CustomTopic("t", "dt/{thing}/telemetry", Access.PUBLISH),)
            ),
            "topics.custom.t.template",
            "also used for telemetry",
        ),
        (lambda: DeviceAccess(custom=(HEALTH, HEALTH)), "topics.custom", "given twice"),
    ],
)
def test_bad_declarations_name_the_field(build: Any, field: str, message: str) -> None:
    with pytest.raises(TopicModelError, match=message) as caught:
        build()
    assert caught.value.field_name == field


# -- the AWS policy: size and reach ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FITTING))
def test_every_fitting_configuration_is_within_the_limit_and_reaches_no_other_thing(
    name: str,
) -> None:
    access = FITTING[name]
    assert check_policy_size(access) == worst_case_policy_size(access) <= MAX_POLICY_CHARS
    document = device_policy_document(access, plain_arn())
    assert policy_size(document) < worst_case_policy_size(access)
    report = analyze_policy(document)
    assert report.lateral == (), [f.describe() for f in report.lateral]
    # Every '*' in the document is a fold under the own thing's $aws/things/ namespace.
    for resource in (r for s in document["Statement"] for r in _strings(s["Resource"])):
        if "*" in resource:
            assert resource.split(":", 5)[5].split("/", 1)[1].startswith(OWN), resource


def _strings(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_the_old_rendering_was_over_the_limit_with_jobs() -> None:
    """Before v2, jobs on rendered 2,142 characters (eu-west-1); the folds fix that."""
    size = policy_size(device_policy_document(DeviceAccess(jobs=True), plain_arn()))
    assert size < MAX_POLICY_CHARS
    assert worst_case_policy_size(DeviceAccess(jobs=True)) < MAX_POLICY_CHARS


@pytest.mark.parametrize(
    ("access", "field"),
    [
        (DeviceAccess(shadows=Shadows(classic=True, named=("a", "b"))), "topics.shadows"),
        (
            DeviceAccess(
                custom=tuple(
                    CustomTopic(f"c{n}", f"x/{{thing}}/c{n}", Access.SUBSCRIBE) for n in range(9)
                )
            ),
            "topics.custom",
        ),
        (
            DeviceAccess(tunneling=True, jobs=True, any_job_id=True, shadows=Shadows(classic=True)),
            "topics.shadows",
        ),
    ],
)
def test_a_policy_over_the_limit_is_refused_naming_the_field(
    access: DeviceAccess, field: str
) -> None:
    with pytest.raises(TopicModelError, match="AWS IoT allows at most 2048") as caught:
        check_policy_size(access)
    assert caught.value.field_name == field


# -- settings ----------------------------------------------------------------------------


def test_settings_declare_topics_shadows_and_jobs() -> None:
    fleet = FleetSettings.parse(
        {
            "topics": {
                "custom": [
                    {"name": "health", "template": "dt/{thing}/health", "access": "publish"}
                ],
                "jobs": {"enabled": True, "anyJobId": True},
            }
        }
    )
    access = fleet.device_access()
    assert access.custom == (HEALTH,)
    assert access.jobs and access.any_job_id
    shadowed = FleetSettings.parse(
        {"topics": {"shadows": {"named": ["config"], "operations": ["get", "update"]}}}
    )
    assert shadowed.device_access().shadows == Shadows(
        named=("config",), operations=(ShadowOperation.GET, ShadowOperation.UPDATE)
    )


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        (
            {"custom": [{"name": "h", "template": "dt/#", "access": "publish"}]},
            r"topics\.custom\.0\.template: .*contains '#'",
        ),
        (
            {"custom": [{"name": "h", "template": "dt/{thing}/x", "access": "write"}]},
            r"topics\.custom\.0\.access",
        ),
        ({"jobs": {"anyJobId": True}}, r"topics\.jobs: .*enabled true"),
        ({"jobs": {"enabled": True, "jobIds": ["a/b"]}}, r"topics\.jobs\.jobIds: 'a/b'"),
        (
            {"shadows": {"classic": True, "named": ["a", "b"]}},
            r"topics\.shadows: the device policy",
        ),
    ],
)
def test_bad_topic_settings_name_the_field(topics: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse({"topics": topics})


def test_detection_config_carries_the_whole_model() -> None:
    access = FITTING["classic-get-update+jobs-any+custom"]
    config = DetectionConfig(access=access)
    assert DetectionConfig.from_json(config.to_json()).access == access


# -- the construct, synthesized with the guard and cdk-nag -------------------------------


def test_device_policy_with_jobs_and_shadows_synthesizes_within_the_limit(tmp_path: Path) -> None:
    access = FITTING["classic-get-update+jobs-any+custom"]

    def build(app: cdk.App) -> cdk.Stack:
        stack = PlatformStack(app, "Fleet", env=PINNED)
        DevicePolicy(stack, "Policy", access=access, policy_name="fleet")
        return stack

    _, template, _ = synth_checked(build, tmp_path)  # guard and cdk-nag pass
    (policy,) = template.find_resources("AWS::IoT::Policy").values()
    synthesized = plain_document(policy["Properties"]["PolicyDocument"])
    assert analyze_policy(synthesized).lateral == ()
    rendered = device_policy_document(access, plain_arn("eu-central-1"))
    assert [len(_strings(s["Resource"])) for s in synthesized["Statement"]] == [
        len(_strings(s["Resource"])) for s in rendered["Statement"]
    ]
    assert policy_size(rendered) <= worst_case_policy_size(access) <= MAX_POLICY_CHARS
    # The guard acknowledged its IRA002 for the own-thing folds only (reach proved them).
    report = validation_report(tmp_path)
    guard = [p for p in report["pluginReports"] if p["pluginName"] == "IotPolicyGuard"]
    assert all(not p["violations"] for p in guard)


def test_device_policy_refuses_a_change_over_the_limit(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "S", env=PINNED)
    policy = DevicePolicy(stack, "Policy")
    with pytest.raises(TopicModelError, match="2048") as caught:
        policy.enable_shadows(Shadows(classic=True, named=("a", "b")))
    assert caught.value.field_name == "topics.shadows"
    assert policy.access.shadows == Shadows()  # the policy is unchanged


# -- random models -----------------------------------------------------------------------

_LEVELS = st.sampled_from(["dt", "cmd", "cfg", "x", "fleet", "eu", "state", "up"])


@st.composite
def _models(draw: st.DrawFn) -> DeviceAccess:
    custom: list[CustomTopic] = []
    for n in range(draw(st.integers(0, 3))):
        before = draw(st.lists(_LEVELS, min_size=1, max_size=2))
        after = draw(st.lists(_LEVELS, min_size=0, max_size=2))
        template = "/".join([*before, "{thing}", *after, f"k{n}"])
        access = draw(st.sampled_from([Access.PUBLISH, Access.SUBSCRIBE]))
        custom.append(CustomTopic(f"c{n}", template, access))
    operations = draw(st.lists(st.sampled_from(list(ShadowOperation)), min_size=1, unique=True))
    jobs = draw(st.booleans())
    return DeviceAccess(
        tunneling=draw(st.booleans()),
        jobs=jobs,
        any_job_id=jobs and draw(st.booleans()),
        shadows=Shadows(
            classic=draw(st.booleans()),
            named=tuple(draw(st.lists(st.sampled_from(["cfg", "a:b", "s_1"]), unique=True))),
            operations=tuple(operations),
        ),
        custom=tuple(custom),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_models())
def test_random_models_render_alike_and_reach_no_other_thing(access: DeviceAccess) -> None:
    """Any model: the brokers agree, and its AWS policy (over the limit or not) reaches
    no other thing; over the limit, check_policy_size refuses it naming a field."""
    for thing in ("sensor-1", "gw:eu_7"):
        assert granted_topics(device_permissions(access), thing) == frozenset(
            (g.access, g.topic) for g in MosquittoAcl(access=access).grants(thing)
        )
    document = device_policy_document(access, plain_arn())
    report = analyze_policy(document)
    assert report.lateral == (), [f.describe() for f in report.lateral]
    if worst_case_policy_size(access) > MAX_POLICY_CHARS:
        with pytest.raises(TopicModelError) as caught:
            check_policy_size(access)
        assert caught.value.field_name.startswith(("topics", "tunneling"))
