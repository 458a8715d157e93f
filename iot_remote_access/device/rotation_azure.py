"""The device side of rotation on Azure: ``RotationDevice`` over IoT Hub's MQTT and DPS.

Everything that makes a rotation safe stays in :class:`RotationDevice` (the key made on
the device, the checks before installing, the atomic files, the switch with its timeout,
the roll-back). Only the transport differs, because IoT Hub accepts no topics of ours:

- the service's ``requestCsr`` direct method (``$iothub/methods/POST/requestCsr/?$rid=N``)
  starts the rotation; the CSR goes back as the method's answer
  (``$iothub/methods/res/200/?$rid=N``), which is the "CSR sent" step;
- ``installCertificate`` carries ``{"status": "issued", "certificatePem"}`` (or a
  rejection), the message the certificate topic carries on AWS and GCP;
- every connection first registers with DPS presenting the pair it is about to use
  (:class:`~iot_remote_access.device.dps.Dps`): that is the re-provisioning Azure needs for
  a new certificate, and it tells the device which hub to connect to;
- the confirmation is a reported property, ``certificateRotation.serial``, published once
  connected with the new pair; the service makes the new certificate the working one
  when it sees it.

The MQTT user name is ``<hub>/<device id>/?api-version=2021-04-12`` and the client id the
device id, as IoT Hub requires for X.509 devices.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509

from iot_remote_access.device.dps import Dps, DpsError
from iot_remote_access.device.rotation import RotationDevice

HUB_API_VERSION = "2021-04-12"
METHODS_FILTER = "$iothub/methods/POST/#"
REQUEST_CSR = "requestCsr"
INSTALL_CERTIFICATE = "installCertificate"
REPORTED = "certificateRotation"
_METHOD_TOPIC = re.compile(
    r"\A\$iothub/methods/POST/(?P<name>[^/]{1,128})/\?\$rid=(?P<rid>[^&]{1,64})"
)

logger = logging.getLogger(__name__)


class AzureRotationDevice(RotationDevice):
    """A :class:`RotationDevice` that talks to IoT Hub and re-registers with DPS.

    :param dps: where the device registers (ID scope, endpoint, CA).
    Other parameters as :class:`RotationDevice`; ``broker`` gives the port, the CA that
    verifies the hub and the keepalive (its host is replaced by the hub DPS assigns).
    """

    def __init__(self, *, dps: Dps, **kwargs: Any) -> None:
        user_on_client: Callable[[mqtt.Client], None] | None = kwargs.pop("on_client", None)
        super().__init__(**kwargs)
        self.dps = dps
        self.hub: str | None = None
        self._registered: str | None = None  # the pair DPS last saw
        self._csr_rid: str | None = None
        self._twin_rid = 0
        self._user_on_client = user_on_client
        self.on_client = self._prepare

    # -- connecting: DPS first, then the hub it assigns -----------------------------------------

    def _connect(self, pair: str) -> mqtt.Client | None:
        if self._registered != pair or self.hub is None:
            try:
                self.hub = self.dps.register(self.thing, self._pair_context(pair))
            except (DpsError, OSError) as error:
                logger.warning("pair %s: DPS registration failed (%s)", pair, error)
                return None
            self._registered = pair
            self.broker = dataclasses.replace(self.broker, host=self.hub)
        return super()._connect(pair)

    def _pair_context(self, pair: str) -> Any:
        context = self.dps.tls_context()
        self.store.keys.load_into(pair, context, self.store.certificate_file(pair))
        return context

    def _prepare(self, client: mqtt.Client) -> None:
        client.username_pw_set(f"{self.hub}/{self.thing}/?api-version={HUB_API_VERSION}")
        if self._user_on_client is not None:
            self._user_on_client(client)

    # -- IoT Hub's topics ------------------------------------------------------------------------

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [(METHODS_FILTER, 1)]

    def _add_callbacks(self, client: mqtt.Client) -> None:
        client.message_callback_add(METHODS_FILTER, self._method_message)

    def _method_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        match = _METHOD_TOPIC.match(message.topic)
        if match is None:
            return
        name, rid = match["name"], match["rid"]
        if name == REQUEST_CSR:
            self._csr_rid = rid  # answered by _send_csr, from the worker
            self.rotate()
        elif name == INSTALL_CERTIFICATE:
            self._events.put(("certificate", bytes(message.payload)))
            _answer(client, rid, 200, {"status": "accepted"})
        else:
            _answer(client, rid, 404, {"error": f"no method {name[:40]!r}"})

    def _send_csr(self, pending: str) -> None:
        rid, self._csr_rid = self._csr_rid, None
        if rid is None:  # resumed after a restart: the service asks again, same CSR
            logger.info("CSR ready; no requestCsr to answer yet")
            return
        csr = self.store.request_file(pending).read_text(encoding="ascii")
        info = _answer(self._require_client(), rid, 200, {"csr": csr})
        info.wait_for_publish(timeout=self.connect_timeout)
        if not info.is_published():
            raise RuntimeError("the hub did not acknowledge the CSR; sent again when asked")

    def _confirm(self, client: mqtt.Client) -> bool:
        pending = self.store.load().pending
        if pending is None:
            return False
        pem = self.store.certificate_file(pending).read_bytes()
        serial = f"{x509.load_pem_x509_certificate(pem).serial_number:x}"
        self._twin_rid += 1
        topic = f"$iothub/twin/PATCH/properties/reported/?$rid={self._twin_rid}"
        info = client.publish(topic, json.dumps({REPORTED: {"serial": serial}}), qos=1)
        try:
            info.wait_for_publish(timeout=self.connect_timeout)
        except (RuntimeError, ValueError):  # the connection dropped before the PUBACK
            return False
        return info.is_published()


def _answer(client: mqtt.Client, rid: str, status: int, body: object) -> mqtt.MQTTMessageInfo:
    return client.publish(f"$iothub/methods/res/{status}/?$rid={rid}", json.dumps(body), qos=1)
