"""A STUBBED AWS IoT data plane (``iot-data``) for the command broker's tests.

moto's ``iot-data`` Publish records the topic and payload but not the MQTT 5
properties the broker sends (response topic, correlation data, message expiry),
so ``StubbedIotData`` stands in for it: a real boto3 ``iot-data`` client with a
botocore ``Stubber``, which checks every request against the real API's model
(parameter names, types, the base64 correlation-data header). Every call is
recorded, so a test can prove Publish was never attempted.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import Stubber

from tests.support.tunneling_stub import REGION


class StubbedIotData:
    def __init__(self) -> None:
        self.client = boto3.client("iot-data", region_name=REGION)
        self.stubber = Stubber(self.client)
        self.published: list[dict[str, Any]] = []
        self.client.meta.events.register("provide-client-params.iot-data.*", self._record)
        self.stubber.activate()

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Publish":
            self.published.append(dict(params))

    def expect_publish(self) -> None:
        """Queue one successful Publish (any parameters; tests inspect ``published``)."""
        self.stubber.add_response("publish", {})

    def expect_error(self, code: str, status: int) -> None:
        self.stubber.add_client_error(
            "publish", service_error_code=code, service_message="stubbed", http_status_code=status
        )
