"""The HiveMQ Enterprise Extension for Google Cloud Pub/Sub, configured from the topic model.

The alternative to the bridge StatefulSet for licensed users: the extension
runs inside every broker node and forwards what devices publish on the
telemetry topics to one Pub/Sub topic. It authenticates with Application
Default Credentials, i.e. GKE Workload Identity through the broker pods'
Kubernetes service account; no key file exists.

Commands (Pub/Sub -> MQTT) need the target thing from a message attribute.
A plain mapping cannot check that name the way the bridge does (thing-name
pattern, dead-lettering what is malformed), so the command route is rendered
only with a customization transformer the user names; the transformer gets
the commands topic template and the thing-name pattern as custom settings.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from iot_remote_access.core.topics import THING_PLACEHOLDER, TopicModel

PUBSUB_EXTENSION_NAME = "hivemq-google-cloud-pubsub-extension"
PUBSUB_CONFIG_FILE = "config.xml"
CONNECTION_ID = "fleet"


@dataclass(frozen=True)
class PubsubRoutes:
    """Where telemetry goes and where commands come from, in one Google Cloud project."""

    project_id: str
    telemetry_topic: str
    commands_subscription: str | None = None
    commands_transformer: str | None = None
    thing_name_pattern: str = "[a-zA-Z0-9:_-]{1,128}"


def telemetry_filter(topics: TopicModel) -> str:
    """Every device's telemetry: the thing level as ``+``, nothing wider."""
    return topics.telemetry.replace(THING_PLACEHOLDER, "+")


def render_pubsub_extension_config(topics: TopicModel, routes: PubsubRoutes) -> str:
    """The extension's ``config.xml``."""
    root = ET.Element(
        "hivemq-google-cloud-pubsub-extension",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": "config.xsd",
        },
    )
    connections = ET.SubElement(root, "pubsub-connections")
    connection = ET.SubElement(connections, "pubsub-connection")
    ET.SubElement(connection, "id").text = CONNECTION_ID
    ET.SubElement(connection, "google-cloud-project-id").text = routes.project_id
    authentication = ET.SubElement(connection, "authentication")
    ET.SubElement(authentication, "application-default")

    mappings = ET.SubElement(root, "mqtt-to-pubsub-mappings")
    mapping = ET.SubElement(mappings, "mqtt-to-pubsub-mapping")
    ET.SubElement(mapping, "id").text = "telemetry"
    ET.SubElement(mapping, "pubsub-connection").text = CONNECTION_ID
    filters = ET.SubElement(mapping, "mqtt-topic-filters")
    ET.SubElement(filters, "mqtt-topic-filter").text = telemetry_filter(topics)
    pubsub_topics = ET.SubElement(mapping, "pubsub-topics")
    pubsub_topic = ET.SubElement(pubsub_topics, "pubsub-topic")
    ET.SubElement(pubsub_topic, "name").text = routes.telemetry_topic

    if routes.commands_subscription and routes.commands_transformer:
        transformers = ET.SubElement(root, "pubsub-to-mqtt-transformers")
        transformer = ET.SubElement(transformers, "pubsub-to-mqtt-transformer")
        ET.SubElement(transformer, "id").text = "commands"
        ET.SubElement(transformer, "pubsub-connection").text = CONNECTION_ID
        subscriptions = ET.SubElement(transformer, "pubsub-subscriptions")
        subscription = ET.SubElement(subscriptions, "pubsub-subscription")
        ET.SubElement(subscription, "name").text = routes.commands_subscription
        settings = ET.SubElement(transformer, "custom-settings")
        for name, value in (
            ("commands-topic-template", topics.commands),
            ("thing-name-pattern", routes.thing_name_pattern),
        ):
            setting = ET.SubElement(settings, "custom-setting")
            ET.SubElement(setting, "name").text = name
            ET.SubElement(setting, "value").text = value
        ET.SubElement(transformer, "transformer").text = routes.commands_transformer
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
