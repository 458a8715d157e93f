"""DpsHubLink: the DPS's link to the IoT hub, authenticated with the DPS's managed identity."""

from __future__ import annotations

from typing import Any

from iot_remote_access.arm.clients import read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import KNOWN_AFTER_DEPLOY, FieldChange, diff, matches
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.constructs.azure.iot_hub import IotHub
from iot_remote_access.constructs.azure.provisioning_service import ProvisioningService
from iot_remote_access.core.tree import Construct


class DpsHubLink(ArmResource):
    """Links ``hub`` to ``dps`` with ``authenticationType: SystemAssigned`` (no connection string).

    Deploy it after the role assignment that lets the DPS identity write device
    identities into the hub (IoT Hub Data Contributor). Other hubs linked to the
    same DPS are left as they are.

    :param allocation_weight: Default: 1.
    """

    kind = "DPS hub link"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dps: ProvisioningService,
        hub: IotHub,
        allocation_weight: int = 1,
    ) -> None:
        super().__init__(scope, construct_id, name=f"{dps.name} -> {hub.name}")
        if not 0 <= allocation_weight <= 1000:
            raise ValueError(f"allocation_weight {allocation_weight}; allowed: 0 to 1000")
        self.dps = dps
        self.hub = hub
        self.allocation_weight = allocation_weight

    @property
    def resource_id(self) -> str:
        return self.dps.resource_id

    def entry(self) -> dict[str, Any]:
        return {
            "hostName": self.hub.host_name or KNOWN_AFTER_DEPLOY,
            "location": self.hub.location,
            "authenticationType": "SystemAssigned",
            "applyAllocationPolicy": True,
            "allocationWeight": self.allocation_weight,
        }

    def desired_state(self) -> dict[str, Any]:
        return {"properties": {"iotHubs": [self.entry()]}}

    def _others(self, live: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Linked hubs that are not this hub."""
        host = (self.hub.host_name or "").lower()
        hubs = ((live or {}).get("properties") or {}).get("iotHubs") or []
        return [h for h in hubs if str(h.get("hostName", "")).lower() != host]

    def exists(self, live: dict[str, Any] | None) -> bool:
        return len(self._ours(live)) > 0

    def _ours(self, live: dict[str, Any] | None) -> list[dict[str, Any]]:
        hubs = ((live or {}).get("properties") or {}).get("iotHubs") or []
        others = self._others(live)
        return [h for h in hubs if h not in others]

    def changes(self, live: dict[str, Any] | None) -> list[FieldChange]:
        ours = self._ours(live)
        if len(ours) == 1 and matches(self.entry(), ours[0]):
            return []
        current = {"properties": {"iotHubs": ours}} if ours else None
        return diff(self.desired_state(), current)

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.dps()
        return read_or_none(
            self.label,
            client.iot_dps_resource.get,
            self.dps.name,
            self.dps.resource_group.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        from azure.mgmt.iothubprovisioningservices import models as m

        if live is None or self.hub.host_name is None:
            raise ValueError(f"{self.label}: the DPS and the hub must be deployed first")
        body = dict(live)
        body["properties"] = {
            **(live.get("properties") or {}),
            "iotHubs": [*self._others(live), self.entry()],
        }
        poller = ctx.clients.dps().iot_dps_resource.begin_create_or_update(
            self.dps.resource_group.name, self.dps.name, m.ProvisioningServiceDescription(body)
        )
        ctx.progress.wait(poller, f"linking {self.label}")
