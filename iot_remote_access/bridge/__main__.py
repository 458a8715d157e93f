"""``python -m iot_remote_access.bridge``: the container's entry point."""

from __future__ import annotations

import sys

from iot_remote_access.bridge.logs import configure
from iot_remote_access.bridge.settings import BridgeSettings, BridgeSettingsError


def main() -> int:
    try:
        settings = BridgeSettings.from_environment()
    except BridgeSettingsError as error:
        for line in str(error).splitlines():
            print(f"error: invalid bridge settings: {line}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    from iot_remote_access.bridge.service import BridgeService

    return BridgeService(settings).run()


if __name__ == "__main__":
    sys.exit(main())
