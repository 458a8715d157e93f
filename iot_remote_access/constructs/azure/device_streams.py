"""DeviceStreams: interactive access to devices (the Secure Tunneling equivalent), preview only."""

from __future__ import annotations

from iot_remote_access.constructs.azure.iot_hub import IotHub
from iot_remote_access.core import azure_rules
from iot_remote_access.core.tree import Construct


class DeviceStreams(Construct):
    """Turns on Device Streams handling for ``hub``.

    Device Streams is a public preview offered only in Central US, Central US
    EUAP, North Europe and Southeast Asia; a hub elsewhere raises ValueError
    naming those regions. ARM has no switch for it: a hub in a supported region
    has streaming endpoints, and only the ``2023-06-30-preview`` API version
    reports them (``properties.deviceStreams.streamingEndpoints``), so the hub is
    managed with that version. Stream requests are logged in the hub's
    ``DeviceStreams`` log category, which the stack's diagnostic settings and
    stream alert use.
    """

    log_category = "DeviceStreams"

    def __init__(self, scope: Construct, construct_id: str, *, hub: IotHub) -> None:
        super().__init__(scope, construct_id)
        azure_rules.check_device_streams_region(hub.location)
        hub.use_preview_api()
        self.hub = hub

    @property
    def streaming_endpoints(self) -> list[str]:
        """The hub's streaming endpoints once it is live (empty before)."""
        live = self.hub.live or {}
        endpoints = (live.get("properties", {}).get("deviceStreams") or {}).get(
            "streamingEndpoints"
        )
        return list(endpoints or [])
