"""GenericArmResource: any ARM extension resource, read and written by id through the generic API.

Some resources have no operations in the SDK this library pins (diagnostic
settings: azure-mgmt-monitor 7.0.0 has none) or need nothing from a typed
client (role assignments). Both are extension resources of another resource,
``{target}/providers/{resource type}/{name}``, so one class reads them with
azure-mgmt-resource's ``resources.get_by_id`` and writes them with
``resources.begin_create_or_update_by_id`` at a fixed API version; only the
resource type, API version, name and properties differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from iot_remote_access.arm.clients import read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core.tree import Construct

#: A value now, or a callable for one known only once something upstream is live.
Lazy = Callable[[], Any]


class GenericArmResource(ArmResource):
    """``{target}/providers/{resource_type}/{resource_name}`` with ``properties``.

    :param label_name: how plan and errors name it (``kind`` is prefixed).
    :param target: the resource this one extends.
    :param resource_type: e.g. ``Microsoft.Insights/diagnosticSettings``.
    :param api_version: the REST API version for both GET and PUT.
    :param resource_name: the name, or a callable returning it (None while unknown).
    :param properties: the desired ``properties``, or a callable returning them;
        they may hold ``KNOWN_AFTER_DEPLOY`` while something upstream is not live.
    """

    kind: ClassVar[str] = "ARM resource"
    #: What the target's absence is called when apply cannot go ahead.
    waiting_for: ClassVar[str] = "the target"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        label_name: str,
        target: ArmResource,
        resource_type: str,
        api_version: str,
        resource_name: str | Callable[[], str | None],
        properties: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
    ) -> None:
        super().__init__(scope, construct_id, name=label_name)
        if resource_type.count("/") < 1 or not api_version:
            raise ValueError(
                f"{self.label}: resource_type {resource_type!r} / api_version {api_version!r}; "
                "allowed: Namespace/type and a non-empty API version"
            )
        self.target = target
        self.resource_type = resource_type
        self.api_version = api_version
        self._resource_name = resource_name
        self._properties = properties

    @property
    def resource_name(self) -> str | None:
        name = self._resource_name
        return name() if callable(name) else name

    @property
    def properties(self) -> dict[str, Any]:
        props = self._properties
        return dict(props() if callable(props) else props)

    @property
    def resource_id(self) -> str | None:
        target, name = self.target.resource_id, self.resource_name
        if target is None or name is None:
            return None
        return f"{target}/providers/{self.resource_type}/{name}"

    @property
    def resource(self) -> Any:
        """The desired resource as the SDK's ``GenericResource`` (the PUT body)."""
        from azure.mgmt.resource.resources.models import GenericResource

        return GenericResource(properties=self.properties)

    def desired_state(self) -> dict[str, Any]:
        return {"properties": self.properties}

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        resource_id = self.resource_id
        if resource_id is None:
            # Its id depends on something not deployed yet: it cannot exist either.
            return None
        return read_or_none(
            self.label,
            ctx.clients.resources().resources.get_by_id,
            resource_id,
            api_version=self.api_version,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        resource_id = self.resource_id
        if resource_id is None:
            raise ValueError(f"{self.label}: {self.waiting_for} is not deployed yet")
        poller = ctx.clients.resources().resources.begin_create_or_update_by_id(
            resource_id, self.resource, api_version=self.api_version
        )
        ctx.progress.wait(poller, f"{'creating' if live is None else 'updating'} {self.label}")
