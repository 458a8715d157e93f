"""IotHub: an Azure IoT hub that accepts X.509 devices only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from iot_remote_access.arm.clients import ResourceGroupRef, read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import FieldChange, diff, overlay
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core import azure_rules
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.core.tree import Construct

PROVIDER_TYPE = "Microsoft.Devices/IotHubs"
_SKUS = ("F1", "B1", "B2", "B3", "S1", "S2", "S3")
_FAILED_STATES = ("Failed", "Canceled")


@dataclass(frozen=True)
class IpFilterRule:
    """One IP filter rule; IoT Hub applies them in order."""

    name: str
    action: Literal["Accept", "Reject"]
    ip_mask: str


class IotHub(ArmResource):
    """An IoT hub, secure by default.

    Fixed, not settings: device SAS and module SAS disabled (devices
    authenticate with X.509 only), local auth disabled (services use Entra ID
    role assignments), TLS 1.2 minimum, no shared access policies at all (so no
    ``iothubowner``), fallback route off. Device-to-cloud messages are routed
    to the built-in ``events`` endpoint only when their ``topic`` property is
    the sending device's own topic from the topic model.

    :param sku: Default: ``S1``.
    :param units: Default: 1.
    :param partition_count: device-to-cloud partitions. Default: 4.
    :param public_network_access: Default: ``Enabled`` (devices in the field).
    :param ip_filter_rules: Default: none.
    :param device_access: the topics devices publish. Default: ``DeviceAccess()``.
    :param tags: Default: none (``managed-by: iot-remote-access`` is always added).
    """

    kind = "IoT hub"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_group: ResourceGroupRef,
        name: str,
        location: str,
        sku: str = "S1",
        units: int = 1,
        partition_count: int = 4,
        public_network_access: str = "Enabled",
        ip_filter_rules: Sequence[IpFilterRule] = (),
        device_access: DeviceAccess | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        azure_rules.check_hub_name(name)
        super().__init__(scope, construct_id, name=name)
        if sku not in _SKUS:
            raise ValueError(f"sku {sku!r}; allowed: {', '.join(_SKUS)}")
        if units < 1:
            raise ValueError(f"units {units}; allowed: 1 or more")
        if not 2 <= partition_count <= 128:
            raise ValueError(f"partition_count {partition_count}; allowed: 2 to 128")
        if public_network_access not in ("Enabled", "Disabled"):
            raise ValueError(
                f"public_network_access {public_network_access!r}; allowed: Enabled, Disabled"
            )
        for rule in ip_filter_rules:
            if rule.action not in ("Accept", "Reject"):
                raise ValueError(
                    f"ip filter rule {rule.name!r} action {rule.action!r}; allowed: Accept, Reject"
                )
            azure_rules.check_ipv4_mask(rule.ip_mask)
        self.resource_group = resource_group
        self.location = azure_rules.check_location(location)
        self.sku = sku
        self.units = units
        self.partition_count = partition_count
        self.public_network_access = public_network_access
        self.ip_filter_rules = tuple(ip_filter_rules)
        self.routes = azure_rules.device_to_cloud_routes(device_access or DeviceAccess())
        self.tags = {**(tags or {}), "managed-by": "iot-remote-access"}
        #: The REST API version the hub is managed with; Device Streams switches to the preview.
        self.api_version = azure_rules.IOT_HUB_API_VERSION
        #: The desired hub as the SDK's ``IotHubDescription``.
        self.description: Any = self._describe()

    @property
    def resource_id(self) -> str:
        return self.resource_group.resource_id(PROVIDER_TYPE, self.name)

    @property
    def device_streams(self) -> bool:
        return self.api_version == azure_rules.IOT_HUB_STREAMS_API_VERSION

    @property
    def host_name(self) -> str | None:
        """``{name}.azure-devices.net`` (or the sovereign cloud's), once the hub is live."""
        if self.live is None:
            return None
        host = self.live.get("properties", {}).get("hostName")
        return host if isinstance(host, str) else None

    def use_preview_api(self) -> None:
        """Manage the hub with the preview API version, the only one that carries Device Streams."""
        self.api_version = azure_rules.IOT_HUB_STREAMS_API_VERSION
        self.description = self._describe()

    def models(self) -> Any:
        from azure.mgmt.iothub import IotHubClient

        return IotHubClient.models(self.api_version)  # type: ignore[no-untyped-call]

    def _describe(self) -> Any:
        m = self.models()
        return m.IotHubDescription(
            location=self.location,
            tags=dict(self.tags),
            sku=m.IotHubSkuInfo(name=self.sku, capacity=self.units),
            properties=m.IotHubProperties(
                disable_local_auth=True,
                disable_device_sas=True,
                disable_module_sas=True,
                min_tls_version="1.2",
                # An empty list, not None: without it the hub is created with
                # iothubowner, service, device, registryRead and registryReadWrite.
                authorization_policies=[],
                public_network_access=self.public_network_access,
                ip_filter_rules=[
                    m.IpFilterRule(filter_name=r.name, action=r.action, ip_mask=r.ip_mask)
                    for r in self.ip_filter_rules
                ],
                event_hub_endpoints={
                    "events": m.EventHubProperties(
                        retention_time_in_days=1, partition_count=self.partition_count
                    )
                },
                routing=m.RoutingProperties(
                    routes=[
                        m.RouteProperties(
                            name=name,
                            source="DeviceMessages",
                            condition=condition,
                            endpoint_names=["events"],
                            is_enabled=True,
                        )
                        for name, condition in self.routes
                    ],
                    # Off: a message that matches no route (a foreign or made-up
                    # topic) is dropped instead of reaching the built-in endpoint.
                    fallback_route=m.FallbackRouteProperties(
                        name="$fallback",
                        source="DeviceMessages",
                        condition="true",
                        endpoint_names=["events"],
                        is_enabled=False,
                    ),
                ),
            ),
        )

    def desired_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.description.serialize()
        return state

    def changes(self, live: dict[str, Any] | None) -> list[FieldChange]:
        changes = diff(self.desired_state(), live)
        state = (live or {}).get("properties", {}).get("provisioningState")
        if state in _FAILED_STATES:
            # A failed create or update can leave any field half-applied: re-apply all.
            changes.insert(0, FieldChange("properties.provisioningState", state, "Succeeded"))
        return changes

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        client = ctx.clients.iot_hub(self.api_version)
        return read_or_none(
            self.label,
            client.iot_hub_resource.get,
            self.resource_group.name,
            self.name,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        client = ctx.clients.iot_hub(self.api_version)
        group = self.resource_group.name
        if live is None:
            poller = client.iot_hub_resource.begin_create_or_update(
                group, self.name, self.description
            )
            ctx.progress.wait(poller, f"creating {self.label}")
            return
        changes = self.changes(live)
        if all(change.path.startswith("tags") for change in changes):
            # Tags alone go through PATCH: seconds instead of a full hub update.
            tags = {**(live.get("tags") or {}), **self.tags}
            poller = client.iot_hub_resource.begin_update(
                group, self.name, self.models().TagsResource(tags=tags)
            )
            ctx.progress.wait(poller, f"tagging {self.label}")
            return
        # ARM's PUT replaces the hub: keep what is live and not ours (e.g. private
        # endpoints, storage endpoints), overlay what we manage. IoT Hub requires
        # the ETag to update an existing hub.
        body = self.models().IotHubDescription.deserialize(overlay(live, self.desired_state()))
        poller = client.iot_hub_resource.begin_create_or_update(
            group, self.name, body, if_match=live.get("etag")
        )
        ctx.progress.wait(poller, f"updating {self.label}")

    def notes(self, live: dict[str, Any] | None) -> list[str]:
        if not self.device_streams:
            return []
        endpoints = ((live or {}).get("properties", {}).get("deviceStreams") or {}).get(
            "streamingEndpoints"
        )
        if endpoints:
            return [f"Device Streams (preview) endpoints: {', '.join(endpoints)}"]
        return ["Device Streams (preview): endpoints known after deploy"]
