"""The MQTT <-> Cloud Pub/Sub bridge service (runs as a container next to the broker).

Telemetry: a shared MQTT 5 subscription on the topic model's telemetry filter ->
Pub/Sub, ordered per thing, acknowledged to the broker only after Pub/Sub
confirmed. Commands: a Pub/Sub subscription -> ``cmd/{thing}/commands``,
acknowledged to Pub/Sub only after the broker's PUBACK. Run it with
``python -m iot_remote_access.bridge`` or ``iot-remote-access bridge run``;
settings come from ``BRIDGE_*`` environment variables.

This package imports neither aws-cdk-lib nor constructs: the container installs
only what the bridge needs.
"""
