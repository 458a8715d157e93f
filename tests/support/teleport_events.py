"""Teleport audit events as Cloud Logging entries: the fixtures of the GCP alarm tests.

Source of the event format (field names, value formats, event names and codes):
Teleport's generated audit event reference, gravitational/teleport
``docs/pages/reference/audit-events/ssh-sessions.mdx`` (``session.start`` T2000I,
``session.end`` T2004I, ``session.rejected`` T1006W) and
``docs/pages/reference/audit-events/access-control.mdx`` (``access_request.create``
T5000I, ``access_request.update`` T5001I, ``access_request.review`` T5002I), read at
commit deffe2a54c9217986beec75f33752550ab17bf39; published as
https://goteleport.com/docs/reference/audit-events/ssh-sessions/ and
.../access-control/. The examples below keep the reference's field names and
formats and change only values (our device and operator names, times).

Two fields are not in the reference's *examples* and are marked where used:

* ``server_hostname`` on ``session.start``: the reference's example omits it, but the
  event's definition (``message SessionStart`` in
  ``api/proto/teleport/legacy/types/events/events.proto``, commit
  0009d93e0b73c594682a7b5adeff3c0ef79c6350) embeds ``ServerMetadata`` at the top level,
  the same metadata whose ``server_hostname`` the ``session.end`` example shows;
* ``reason``/``max_duration`` on ``access_request.create``: the reference example
  shows only ``id``, ``user``, ``state``, ``roles``; these two were not checked
  against the event definition (to verify on a live cluster). No metric reads them.

The Cloud Logging envelope (``resource.type: k8s_container``, pod labels as
``labels."k8s-pod/..."`` with ``.`` and ``/`` of the label key as ``_``, the JSON
line as ``jsonPayload``) is GKE's format for container logs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

PROJECT = "my-fleet-project"
NAMESPACE = "teleport"
RELEASE = "teleport"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(
    payload: dict[str, Any], *, namespace: str = NAMESPACE, component: str = "auth"
) -> dict[str, Any]:
    """One Cloud Logging entry as GKE writes a line of the auth pod's stdout."""
    return {
        "logName": f"projects/{PROJECT}/logs/stdout",
        "resource": {
            "type": "k8s_container",
            "labels": {
                "project_id": PROJECT,
                "location": "europe-west3",
                "cluster_name": "fleet",
                "namespace_name": namespace,
                "pod_name": f"{RELEASE}-auth-7c9d-x2k4q",
                "container_name": "teleport",
            },
        },
        "labels": {
            "k8s-pod/app_kubernetes_io/name": "teleport-cluster",
            "k8s-pod/app_kubernetes_io/instance": RELEASE,
            "k8s-pod/app_kubernetes_io/component": component,
        },
        "timestamp": payload["time"],
        "jsonPayload": payload,
    }


def session_start(
    device: str, sid: str, at: datetime, user: str = "alice@example.com"
) -> dict[str, Any]:
    """``session.start`` (T2000I) as in the reference example."""
    return {
        "addr.local": "10.8.0.12:3022",
        "addr.remote": "10.8.0.3:51454",
        "code": "T2000I",
        "ei": 0,
        "event": "session.start",
        "login": "maintenance",
        "namespace": "default",
        "server_id": "de3800ea-69d9-4d72-a108-97e57f8eb393",
        "server_hostname": device,  # not in the reference's example (see the module note)
        "sid": sid,
        "size": "80:25",
        "time": _time(at),
        "uid": f"84c07a99-856c-419f-9de5-{sid[-12:]}",
        "user": user,
    }


def session_end(
    device: str, sid: str, started: datetime, ended: datetime, user: str = "alice@example.com"
) -> dict[str, Any]:
    """``session.end`` (T2004I) as in the reference example."""
    return {
        "cluster_name": "teleport.example.com",
        "code": "T2004I",
        "ei": 1,
        "enhanced_recording": False,
        "event": "session.end",
        "interactive": True,
        "login": "maintenance",
        "namespace": "default",
        "participants": [user],
        "server_addr": "10.8.0.12:3022",
        "server_hostname": device,
        "server_id": "d3ddd1f8-b602-488b-00c66e29879f",
        "session_start": _time(started),
        "session_stop": _time(ended),
        "sid": sid,
        "time": _time(ended),
        "uid": f"984ac949-6605-4f0a-e450-{sid[-12:]}",
        "user": user,
    }


def session_rejected(at: datetime) -> dict[str, Any]:
    """``session.rejected`` (T1006W): the reference example (no device field)."""
    return {"code": "T1006W", "event": "session.rejected", "time": _time(at), "uid": "68a83a99"}


def access_request_create(at: datetime, *, reason: str, minutes: int) -> dict[str, Any]:
    """``access_request.create`` (T5000I); ``reason``/``max_duration`` added (module note)."""
    return {
        "id": "66b827b2-1b0b-512b-965d-6c789388d3c9",
        "code": "T5000I",
        "event": "access_request.create",
        "time": _time(at),
        "uid": "68a83a99-73ce-4bd7-bbf7-99103c2ba6a0",
        "user": "alice@example.com",
        "state": "PENDING",
        "roles": ["iot-device-access"],
        "reason": reason,
        "max_duration": _time(at + timedelta(minutes=minutes)),
    }


def access_request_update(at: datetime, state: str = "APPROVED") -> dict[str, Any]:
    """``access_request.update`` (T5001I) as in the reference example."""
    return {
        "id": "66b827b2-1b0b-512b-965d-6c789388d3c9",
        "code": "T5001I",
        "event": "access_request.update",
        "time": _time(at),
        "uid": "68a83a99-73ce-4bd7-bbf7-99103c2ba6a0",
        "state": state,
        "updated_by": "bob@example.com",
    }


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
