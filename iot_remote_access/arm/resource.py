"""ArmResource: the base of every Azure construct (one Azure resource each).

A construct holds its desired state as SDK model objects (public attributes,
like ``IotHub.description``) in a plain-Python tree (``core.tree``: no
Node.js); the deployment engine (``iot_remote_access.arm.deployment``)
asks it to read what is live, diffs the two and asks it to apply the difference.
"""

from __future__ import annotations

from typing import Any, ClassVar

from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.diff import FieldChange, diff
from iot_remote_access.core.tree import Construct


class ArmResource(Construct):
    """One Azure resource: desired state, how to read it, how to write it.

    Subclasses set ``kind`` and implement ``resource_id``, ``desired_state``,
    ``read`` and ``apply``.
    """

    kind: ClassVar[str] = "Azure resource"

    def __init__(self, scope: Construct, construct_id: str, *, name: str) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        #: The live resource as ARM returned it (REST keys), set by the engine; None if absent.
        self.live: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def resource_id(self) -> str | None:
        """The ARM id; None while it depends on something not deployed yet."""
        raise NotImplementedError

    def desired_state(self) -> dict[str, Any]:
        """The fields this library sets, with ARM's REST keys, as plan compares them."""
        raise NotImplementedError

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        """The live resource (REST keys), or None when it does not exist."""
        raise NotImplementedError

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        """Bring the live resource to the desired state (only called when there are changes)."""
        raise NotImplementedError

    def changes(self, live: dict[str, Any] | None) -> list[FieldChange]:
        return diff(self.desired_state(), live)

    def exists(self, live: dict[str, Any] | None) -> bool:
        """Whether the resource is live (plan says "update" rather than "create")."""
        return live is not None

    def needs_ca_key(self, live: dict[str, Any] | None) -> bool:
        """Whether applying will prove possession of the CA key."""
        return False

    def notes(self, live: dict[str, Any] | None) -> list[str]:
        """Facts plan shows besides the changes (e.g. Device Streams endpoints)."""
        return []
