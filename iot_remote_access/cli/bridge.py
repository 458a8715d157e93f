"""``bridge run``: the MQTT <-> Pub/Sub bridge in the foreground (settings: BRIDGE_* variables)."""

from __future__ import annotations

import click

from iot_remote_access.cli.errors import InputError
from iot_remote_access.core.bounded_input import excerpt


@click.group(help="The MQTT <-> Cloud Pub/Sub bridge service.")
def bridge() -> None:
    pass


@bridge.command("run")
def run() -> None:
    """Run the bridge until SIGTERM/SIGINT, then drain. Settings: BRIDGE_* environment
    variables (listed in docs/bridge-deploy.md); exit 2 when one is invalid, before
    connecting anywhere."""
    try:
        from iot_remote_access.bridge.logs import configure
        from iot_remote_access.bridge.settings import BridgeSettings, BridgeSettingsError
    except ImportError as error:
        raise InputError(
            f"the bridge needs the 'gcp' extra: pip install 'iot-remote-access[gcp]' ({error.name})"
        ) from None
    try:
        settings = BridgeSettings.from_environment()
    except BridgeSettingsError as error:
        raise InputError("invalid bridge settings: " + "; ".join(str(error).splitlines())) from None
    except OSError as error:
        # A BRIDGE_MQTT_*_FILE path the system cannot even look up (too long, ...).
        raise InputError(
            f"invalid bridge settings: BRIDGE_MQTT_*_FILE {excerpt(error.filename)}: "
            f"{error.strerror}; allowed: a readable PEM file"
        ) from None
    configure(settings.log_level)
    from iot_remote_access.bridge.service import BridgeService

    raise SystemExit(BridgeService(settings).run())
