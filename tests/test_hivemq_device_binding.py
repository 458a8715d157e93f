"""HiveMQ ``deviceBinding``: the setting, the certificate-bound devices realm and ``gcp
device-realm`` as an operator runs it (the console script in a subprocess)."""

from __future__ import annotations

from typing import Any

import pytest

from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.hivemq import example_raw


def _settings(**hivemq: Any) -> FleetSettings:
    raw = example_raw()
    raw["hivemq"].update(hivemq)
    return FleetSettings.parse(raw)


def test_the_default_binding_is_the_certificate() -> None:
    hivemq = _settings().hivemq
    assert hivemq is not None and hivemq.device_binding == "certificate"
    chosen = _settings(deviceBinding="clientId").hivemq
    assert chosen is not None and chosen.device_binding == "clientId"


@pytest.mark.parametrize("value", ["client-id", "CERTIFICATE", "", 1, ["certificate"]])
def test_an_unknown_binding_is_refused_naming_field_value_and_choices(value: object) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(deviceBinding=value)
    (line,) = str(caught.value).splitlines()
    assert line.startswith("iot-remote-access.hivemq.deviceBinding: ")
    assert "allowed: 'certificate'" in line and "'clientId'" in line
