"""The messages of the rotation protocol that every cloud's fleet side sends a device.

One shape for AWS (the planner and signer Lambdas) and GCP (the rotation service and
its planner), so ``device/rotation.py`` speaks to both the same way.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iot_remote_access.core.csr import ALLOWED_KEYS
from iot_remote_access.core.topics import TopicModel, render_topic

ROTATE_COMMAND_TYPE = "rotate-certificate"


def rotate_command(
    topics: TopicModel, thing: str, *, attempt: int, current_not_after: object
) -> dict[str, Any]:
    """What the planner sends on the thing's commands topic: rotate now, here is how."""
    return {
        "type": ROTATE_COMMAND_TYPE,
        "attempt": attempt,
        "csrTopic": render_topic(topics.rotation_csr, thing),
        "certificateTopic": render_topic(topics.rotation_certificate, thing),
        "confirmTopic": render_topic(topics.rotation_confirm, thing),
        "keyTypes": ALLOWED_KEYS,
        "currentNotAfter": current_not_after,
    }


def issued_body(topics: TopicModel, item: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a CSR, from the inventory item holding the pending certificate."""
    return {
        "status": "issued",
        "certificateId": item["pendingCertificateId"],
        "certificatePem": item["pendingCertificatePem"],
        "notAfter": item["pendingNotAfter"],
        "confirmTopic": render_topic(topics.rotation_confirm, item["thing"]),
    }


def rejected_body(reason: str) -> dict[str, str]:
    return {"status": "rejected", "reason": reason}
