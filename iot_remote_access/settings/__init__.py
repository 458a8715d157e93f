"""The one typed settings model: ``FleetSettings`` and one module per section.

``FleetSettings`` (``settings.fleet``) loads on first use: it imports every
section, and the bridge container, which needs only its own section and the
base, should not pay for (or depend on) the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iot_remote_access.settings.base import CONTEXT_KEY, SettingsError, SettingsSection

if TYPE_CHECKING:
    from iot_remote_access.settings.fleet import FleetSettings

__all__ = ["CONTEXT_KEY", "FleetSettings", "SettingsError", "SettingsSection"]


def __getattr__(name: str) -> Any:
    if name == "FleetSettings":
        from iot_remote_access.settings.fleet import FleetSettings

        return FleetSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
