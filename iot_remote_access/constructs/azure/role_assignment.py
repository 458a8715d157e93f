"""RoleAssignment: an Azure RBAC role for a managed identity on one resource (generic ARM PUT)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iot_remote_access.arm.clients import ResourceGroupRef
from iot_remote_access.arm.diff import KNOWN_AFTER_DEPLOY
from iot_remote_access.arm.generic import GenericArmResource
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct

RESOURCE_TYPE = "Microsoft.Authorization/roleAssignments"
API_VERSION = "2022-04-01"


class RoleAssignment(GenericArmResource):
    """``role_definition`` (a built-in role's GUID) for ``principal`` on ``target``.

    The principal is a callable because it is usually a managed identity that
    exists only once its resource is deployed; plan shows it as known after
    deploy. The assignment's name is derived from scope, role and principal, so
    a re-run finds it instead of adding a second one. ``principalType`` is set
    so that a freshly created identity is accepted before Entra ID has
    replicated it.
    """

    kind = "role assignment"
    waiting_for = "the principal"

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
        super().__init__(
            scope,
            construct_id,
            label_name=description,
            target=target,
            resource_type=RESOURCE_TYPE,
            api_version=API_VERSION,
            resource_name=self._assignment_name,
            properties=self._assignment_properties,
        )
        self.resource_group = resource_group
        self.role_definition = role_definition
        self.principal = principal

    @property
    def role_definition_id(self) -> str:
        return (
            f"/subscriptions/{self.resource_group.subscription_id}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{self.role_definition}"
        )

    def _assignment_name(self) -> str | None:
        principal = self.principal()
        target = self.target.resource_id
        if principal is None or target is None:
            return None
        return azure_rules.role_assignment_name(target, self.role_definition, principal)

    def _assignment_properties(self) -> dict[str, Any]:
        return {
            "roleDefinitionId": self.role_definition_id,
            "principalId": self.principal() or KNOWN_AFTER_DEPLOY,
            "principalType": "ServicePrincipal",
        }
