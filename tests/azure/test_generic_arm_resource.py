"""GenericArmResource against the local ARM stand-in (not Azure): one read/apply/diff for
every extension resource, which DiagnosticSettings and RoleAssignment only configure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_remote_access.arm import deployment
from iot_remote_access.arm.deployment import Action
from iot_remote_access.arm.diff import KNOWN_AFTER_DEPLOY
from iot_remote_access.arm.generic import GenericArmResource
from iot_remote_access.constructs.azure import DiagnosticSettings, IotHub, RoleAssignment
from iot_remote_access.core.tree import Root
from tests.support.azure_arm_standin import ArmStandIn
from tests.support.azure_helpers import GROUP, HUB_ID, SUBSCRIPTION, WORKSPACE, context_for
from tests.support.azure_helpers import resource_group as group

DIAG_TYPE = "Microsoft.Insights/diagnosticSettings"
DIAG_API = "2021-05-01-preview"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[ArmStandIn]:
    with ArmStandIn(tmp_path) as server:
        server.add_resource_group(SUBSCRIPTION, GROUP)
        yield server


def hub(root: Root) -> IotHub:
    return IotHub(root, "Hub", resource_group=group(), name="fleet-hub", location="northeurope")


def test_subclasses_only_configure_the_generic_resource() -> None:
    for subclass in (DiagnosticSettings, RoleAssignment):
        assert issubclass(subclass, GenericArmResource)
        for method in ("read", "apply", "desired_state", "changes", "resource_id"):
            assert method not in vars(subclass), f"{subclass.__name__} overrides {method}"


def test_generic_resource_is_put_once_by_id_then_unchanged_standin(standin: ArmStandIn) -> None:
    root = Root("azure")
    target = hub(root)
    setting = GenericArmResource(
        root,
        "Audit",
        label_name="audit",
        target=target,
        resource_type=DIAG_TYPE,
        api_version=DIAG_API,
        resource_name="audit",
        properties={"workspaceId": WORKSPACE, "logs": [{"category": "Routes", "enabled": True}]},
    )
    ctx, _ = context_for(standin)

    first = deployment.plan(root, ctx)
    assert [r.action for r in first.resources] == [Action.CREATE, Action.CREATE]
    deployment.deploy(root, ctx)
    setting_id = f"{HUB_ID}/providers/{DIAG_TYPE}/audit"
    assert setting.resource_id == setting_id
    (put,) = standin.find("PUT", "/diagnosticSettings/audit")
    assert put.api_version == DIAG_API
    assert put.body == {"properties": setting.properties}
    assert standin.resource(setting_id) is not None

    writes = len(standin.writes())
    again = deployment.deploy(root, ctx)
    assert again.writes == 0 and len(standin.writes()) == writes


def test_a_name_known_only_after_deploy_plans_create_and_refuses_to_apply_standin(
    standin: ArmStandIn,
) -> None:
    root = Root()
    principal: list[str] = []
    waiting = GenericArmResource(
        root,
        "Later",
        label_name="later",
        target=hub(root),
        resource_type="Microsoft.Authorization/roleAssignments",
        api_version="2022-04-01",
        resource_name=lambda: principal[0] if principal else None,
        properties=lambda: {"principalId": principal[0] if principal else KNOWN_AFTER_DEPLOY},
    )
    ctx, _ = context_for(standin)
    step = next(r for r in deployment.plan(root, ctx).resources if r.resource is waiting)
    assert waiting.resource_id is None
    assert step.action is Action.CREATE
    assert [str(c) for c in step.changes] == ["+ properties.principalId: (known after deploy)"]
    assert standin.find("GET", "roleAssignments") == []  # no id yet: nothing to read
    with pytest.raises(ValueError, match="ARM resource later: the target is not deployed yet"):
        waiting.apply(ctx, None)


@pytest.mark.parametrize(
    ("resource_type", "api_version"), [("diagnosticSettings", DIAG_API), (DIAG_TYPE, "")]
)
def test_resource_type_and_api_version_are_checked(resource_type: str, api_version: str) -> None:
    root = Root()
    with pytest.raises(ValueError, match="allowed: Namespace/type and a non-empty API version"):
        GenericArmResource(
            root,
            "Bad",
            label_name="bad",
            target=hub(root),
            resource_type=resource_type,
            api_version=api_version,
            resource_name="x",
            properties={},
        )
