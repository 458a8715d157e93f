"""A STAND-IN for AWS IoT's data plane over real MQTT: ``publish`` with iot-data's signature.

The command broker Lambda calls ``iot_data.publish(topic=, qos=, payload=,
contentType=, payloadFormatIndicator=, responseTopic=, correlationData=,
messageExpiry=)``. This class accepts exactly those keyword arguments and publishes
them as an MQTT 5 message on a real broker (mosquitto), so the broker Lambda and
the device module can be tested joined. It is not AWS IoT: it does not check IAM.
It also collects what arrives on the responses topics, as the IoT rule would.
"""

from __future__ import annotations

import base64
import queue
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.pki import ClientCredentials

IDENTITY = "aws-iot.data-plane-standin"  # a '.' so no thing name can carry its rights


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    correlation: bytes | None


def mqtt5_client(client_id: str, credentials: ClientCredentials) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.tls_set(
        ca_certs=str(credentials.ca_file),
        certfile=str(credentials.cert_file),
        keyfile=str(credentials.key_file),
    )
    return client


class MqttIotData:
    def __init__(self, port: int, credentials: ClientCredentials, responses_filter: str) -> None:
        self.received: queue.Queue[Received] = queue.Queue()
        self.client = mqtt5_client(IDENTITY, credentials)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, mid = self.client.subscribe(responses_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS, mid

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        self.received.put(Received(message.topic, bytes(message.payload), correlation))

    def publish(
        self,
        *,
        topic: str,
        qos: int,
        payload: bytes,
        contentType: str,
        payloadFormatIndicator: str,
        responseTopic: str,
        correlationData: str,
        messageExpiry: int,
    ) -> dict[str, object]:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = contentType
        properties.PayloadFormatIndicator = 1 if payloadFormatIndicator == "UTF8_DATA" else 0
        properties.ResponseTopic = responseTopic
        properties.CorrelationData = base64.b64decode(correlationData)
        properties.MessageExpiryInterval = messageExpiry
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(timeout=5)
        return {}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
