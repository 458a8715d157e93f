"""ProvisioningService: a Device Provisioning Service with a managed identity, no SAS policies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iot_remote_access.arm.clients import ResourceGroupRef, read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import overlay
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct

PROVIDER_TYPE = "Microsoft.Devices/provisioningServices"
_ALLOCATION_POLICIES = ("Hashed", "GeoLatency", "Static")


class ProvisioningService(ArmResource):
    """A DPS instance for zero-touch X.509 provisioning into the fleet's hub.

    Fixed, not settings: a system-assigned managed identity (the hub link uses
    it, never a connection string: the hub's local auth is off anyway), local
    auth disabled (enrollments are managed with Entra ID roles), no shared
    access policies. The hub link and the CA certificate are their own
    constructs (``DpsHubLink``, ``DpsCertificate``).

    :param allocation_policy: Default: ``Hashed``.
    :param units: S1 units. Default: 1.
    :param tags: Default: none (``managed-by: iot-remote-access`` is always added).
    """

    kind = "Device Provisioning Service"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_group: ResourceGroupRef,
        name: str,
        location: str,
        allocation_policy: str = "Hashed",
        units: int = 1,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id, name=azure_rules.check_dps_name(name))
        if allocation_policy not in _ALLOCATION_POLICIES:
            raise ValueError(
                f"allocation_policy {allocation_policy!r}; "
                f"allowed: {', '.join(_ALLOCATION_POLICIES)}"
            )
        if units < 1:
            raise ValueError(f"units {units}; allowed: 1 or more")
        from azure.mgmt.iothubprovisioningservices import models as m

        self.resource_group = resource_group
        self.location = azure_rules.check_location(location)
        #: The desired DPS as the SDK's ``ProvisioningServiceDescription``.
        self.description = m.ProvisioningServiceDescription(
            location=self.location,
            tags={**(tags or {}), "managed-by": "iot-remote-access"},
            sku=m.IotDpsSkuInfo(name="S1", capacity=units),
            identity=m.ManagedServiceIdentity(type="SystemAssigned"),
            properties=m.IotDpsPropertiesDescription(
                allocation_policy=allocation_policy,
                disable_local_auth=True,
                authorization_policies=[],
            ),
        )

    @property
    def resource_id(self) -> str:
        return self.resource_group.resource_id(PROVIDER_TYPE, self.name)

    @property
    def principal_id(self) -> str | None:
        """The managed identity's object id, once the DPS is live."""
        principal = ((self.live or {}).get("identity") or {}).get("principalId")
        return principal if isinstance(principal, str) else None

    def desired_state(self) -> dict[str, Any]:
        return self.description.as_dict(exclude_readonly=True)

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.dps()
        return read_or_none(
            self.label,
            client.iot_dps_resource.get,
            self.name,
            self.resource_group.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        from azure.mgmt.iothubprovisioningservices import models as m

        body = (
            self.description
            if live is None
            else m.ProvisioningServiceDescription(overlay(live, self.desired_state()))
        )
        poller = ctx.clients.dps().iot_dps_resource.begin_create_or_update(
            self.resource_group.name, self.name, body
        )
        ctx.progress.wait(poller, f"{'creating' if live is None else 'updating'} {self.label}")
