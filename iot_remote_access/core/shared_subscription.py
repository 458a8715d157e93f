"""The broker-side subscription of the MQTT <-> Pub/Sub bridge, derived from the topic model.

The bridge never subscribes with ``#``: it subscribes exactly the telemetry
template with ``{thing}`` as ``+``, as an MQTT 5 shared subscription
(``$share/<group>/dt/+/telemetry``) so that the broker splits the load between
replicas. The mosquitto ACL, the HiveMQ permissions and the bridge all take the
filter from here.
"""

from __future__ import annotations

import re

from iot_remote_access.core.topics import (
    THING_PLACEHOLDER,
    TopicModelError,
    validate_topic_template,
)

SHARE_GROUP_RULE = "[a-zA-Z0-9_-]{1,64}"
_SHARE_GROUP_RE = re.compile(rf"\A{SHARE_GROUP_RULE}\Z")
DEFAULT_SHARE_GROUP = "pubsub-bridge"


def validate_share_group(value: object, *, field_name: str = "share_group") -> str:
    """Return ``value`` if it can name an MQTT 5 share group, else raise naming the field."""
    if not isinstance(value, str) or not _SHARE_GROUP_RE.match(value):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        raise TopicModelError(
            field_name,
            f"{shown!r} is not a share group name; allowed: {SHARE_GROUP_RULE} "
            "(no '/', '+', '#' or spaces)",
        )
    return value


def topic_filter(template: str, *, field_name: str = "telemetry") -> str:
    """The filter matching every thing's topic of ``template``: ``{thing}`` becomes ``+``.

    The template is validated first, so the result has exactly one wildcard, a
    whole ``+`` level, and never ``#``.
    """
    validate_topic_template(template, field_name=field_name)
    return "/".join("+" if level == THING_PLACEHOLDER else level for level in template.split("/"))


def shared_subscription(template: str, group: str) -> str:
    """``$share/<group>/<filter>`` for the telemetry ``template``."""
    return f"$share/{validate_share_group(group)}/{topic_filter(template)}"
