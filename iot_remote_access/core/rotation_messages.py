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


def rotation_bridge_topics(topics: TopicModel) -> TopicModel:
    """The topic model the *rotation bridge* runs with on GCP: the bridge's code, unchanged,
    with its three paths on the rotation topics (CSRs up as its telemetry, certificates
    down as its commands, confirmations up as its responses). The rotation fields take the
    others' templates only because a model's templates must all differ; it never uses them.
    """
    return TopicModel(
        telemetry=topics.rotation_csr,
        commands=topics.rotation_certificate,
        responses=topics.rotation_confirm,
        rotation_csr=topics.telemetry,
        rotation_certificate=topics.commands,
        rotation_confirm=topics.responses,
    )


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
