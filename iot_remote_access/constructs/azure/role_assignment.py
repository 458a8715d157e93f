"""RoleAssignment: an Azure RBAC role for a managed identity on one resource (generic ARM PUT)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from constructs import Construct

from iot_remote_access.arm.clients import ResourceGroupRef, read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import KNOWN_AFTER_DEPLOY
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules

API_VERSION = "2022-04-01"


class RoleAssignment(ArmResource):
    """``role_definition`` (a built-in role's GUID) for ``principal`` on ``target``.

    The principal is a callable because it is usually a managed identity that
    exists only once its resource is deployed; plan shows it as known after
    deploy. The assignment's name is derived from scope, role and principal, so
    a re-run finds it instead of adding a second one. ``principalType`` is set
    so that a freshly created identity is accepted before Entra ID has
    replicated it.
    """

    kind = "role assignment"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_group: ResourceGroupRef,
        target: ArmResource,
        role_definition: str,
        principal: Callable[[], str | None],
        description: str,
    ) -> None:
        super().__init__(scope, construct_id, name=description)
        self.resource_group = resource_group
        self.target = target
        self.role_definition = role_definition
        self.principal = principal

    @property
    def role_definition_id(self) -> str:
        return (
            f"/subscriptions/{self.resource_group.subscription_id}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{self.role_definition}"
        )

    @property
    def resource_id(self) -> str | None:
        principal = self.principal()
        target = self.target.resource_id
        if principal is None or target is None:
            return None
        name = azure_rules.role_assignment_name(target, self.role_definition, principal)
        return f"{target}/providers/Microsoft.Authorization/roleAssignments/{name}"

    def desired_state(self) -> dict[str, Any]:
        return {
            "properties": {
                "roleDefinitionId": self.role_definition_id,
                "principalId": self.principal() or KNOWN_AFTER_DEPLOY,
                "principalType": "ServicePrincipal",
            }
        }

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        resource_id = self.resource_id
        if resource_id is None:
            return None
        client = ctx.clients.resources()
        return read_or_none(
            self.label,
            client.resources.get_by_id,
            resource_id,
            api_version=API_VERSION,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        from azure.mgmt.resource.resources.models import GenericResource

        resource_id = self.resource_id
        if resource_id is None:
            raise ValueError(f"{self.label}: the principal is not deployed yet")
        poller = ctx.clients.resources().resources.begin_create_or_update_by_id(
            resource_id,
            GenericResource(properties=self.desired_state()["properties"]),
            api_version=API_VERSION,
        )
        ctx.progress.wait(poller, f"assigning {self.label}")
