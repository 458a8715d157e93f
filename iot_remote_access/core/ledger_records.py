"""What goes into a ledger record: the kinds of decision, and making any audit record recordable.

Every kind below is one value of ``data.event``. The writers on AWS append the same
audit record they log; Azure and GCP events are mapped onto the same model by the
functions in this module, so ``evidence verify`` and the evidence pack read every
cloud's records alike.

Kinds (``data.event``) and their ``decision`` values:

- ``tunnel.open`` (AWS tunnel broker): ``allowed`` (a tunnel was opened and its token
  handed out: ``tunnelId``, ``thing``, ``service``, ``minutes``, ``reason``,
  ``requester``, ``expiresAt``), ``refused`` (``status``, ``field``, ``message``).
- ``tunnel.close`` (AWS tunnel sweeper): ``closed`` with ``closedBy: "sweeper"`` and
  ``closeReason``.
- ``cert.issue`` / ``cert.rotate`` / ``cert.revoke`` (AWS certificate rotation): the
  thing, the certificate id and, where known, its serial; never a key or a PEM.
- ``azure.stream.alert`` (Azure Device Streams): one alert event of the stream alert
  (``StreamAlert``), with the hub, the device, the alert rule and its state.
- ``gcp.proxy.session`` (GCP access proxy: Teleport's session events, mapped by
  ``core.teleport_sessions``): one session of an operator through the proxy:
  ``decision`` ``opened`` | ``refused`` | ``closed``, ``sessionId``, ``principal`` (the
  Teleport user), ``device``, ``service``, ``reason`` and ``minutes`` (of the access
  request), and on ``closed`` ``openedAt``, ``at``, ``seconds``, ``closeReason``, ``closedBy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from iot_remote_access.core.ledger import MAX_DEPTH, MAX_SAFE_INTEGER, shown

TUNNEL_OPEN = "tunnel.open"
TUNNEL_CLOSE = "tunnel.close"
CERT_ISSUE = "cert.issue"
CERT_ROTATE = "cert.rotate"
CERT_REVOKE = "cert.revoke"
AZURE_STREAM_ALERT = "azure.stream.alert"
GCP_PROXY_SESSION = "gcp.proxy.session"

#: Every kind this library writes (other writers may add their own, e.g. ``command.*``).
KINDS = frozenset(
    {
        TUNNEL_OPEN,
        TUNNEL_CLOSE,
        CERT_ISSUE,
        CERT_ROTATE,
        CERT_REVOKE,
        AZURE_STREAM_ALERT,
        GCP_PROXY_SESSION,
    }
)
#: The decisions a GCP access-proxy session record may carry.
PROXY_DECISIONS = ("opened", "refused", "closed")
#: Longest text kept from an untrusted value (a refused request's field).
MAX_TEXT = 600


def recordable(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every value the ledger would refuse turned into its shortened text.

    Audit records of *refused* requests quote what the caller sent: a float, an integer
    past 2**53, a lone surrogate. The refusal must still be recorded, so such a value is
    recorded as text (``repr``), never dropped and never the reason the record is lost.
    """
    # Depth as the record sees it: the record is 1, ``data`` 2, its values 3.
    return {_text(str(key)): _value(value, 3) for key, value in data.items()}


def _value(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else shown(value)
    if isinstance(value, str):
        return _text(value)
    if depth < MAX_DEPTH and isinstance(value, list | tuple):
        return [_value(item, depth + 1) for item in value[:50]]
    if depth < MAX_DEPTH and isinstance(value, Mapping):
        return {_text(str(key)): _value(item, depth + 1) for key, item in list(value.items())[:50]}
    return _text(shown(value, 120))


def _text(text: str) -> str:
    kept = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
    # A lone surrogate has no UTF-8 spelling: "?" in its place keeps the rest readable.
    return kept.encode("utf-8", "replace").decode("utf-8")


def stream_alert_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """An Azure Monitor alert event (common alert schema) of a Device Streams alert as a
    ``azure.stream.alert`` record: which rule fired or resolved, on which hub, when."""
    data = _mapping(event.get("data"))
    essentials = _mapping(data.get("essentials"))
    targets = essentials.get("alertTargetIDs")
    # Log search alerts (V2) carry each firing dimension set in alertContext.condition.allOf:
    # StreamAlert splits by deviceId, so that names the device and its count of streams.
    conditions = _mapping(_mapping(data.get("alertContext")).get("condition")).get("allOf")
    first = _mapping(conditions[0]) if isinstance(conditions, list) and conditions else {}
    dimensions = first.get("dimensions")
    device = next(
        (
            _mapping(d).get("value")
            for d in (dimensions if isinstance(dimensions, list) else [])
            if _mapping(d).get("name") == "deviceId"
        ),
        None,
    )
    value = first.get("metricValue")
    # A count; NaN, infinities and booleans are not one (abs() < 2**53 is False for NaN).
    streams = (
        int(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**53
        else None
    )
    return recordable(
        {
            "event": AZURE_STREAM_ALERT,
            "device": device,
            "streams": streams,
            "decision": str(essentials.get("monitorCondition") or "unknown").lower(),
            "alertRule": essentials.get("alertRule"),
            "alertId": essentials.get("alertId"),
            "severity": essentials.get("severity"),
            "hub": targets[0] if isinstance(targets, list) and targets else None,
            "firedAt": essentials.get("firedDateTime"),
            "resolvedAt": essentials.get("resolvedDateTime"),
            "description": essentials.get("description"),
        }
    )


def proxy_session_record(
    *,
    decision: str,
    session_id: str,
    principal: str,
    device: str,
    service: str,
    reason: str | None = None,
    minutes: int | None = None,
) -> dict[str, Any]:
    """A ``gcp.proxy.session`` record (``core.teleport_sessions`` adds the times)."""
    if decision not in PROXY_DECISIONS:
        raise ValueError(
            f"decision: {shown(decision)} is not allowed; allowed: {', '.join(PROXY_DECISIONS)}"
        )
    fields = {
        "event": GCP_PROXY_SESSION,
        "decision": decision,
        "sessionId": session_id,
        "principal": principal,
        "device": device,
        "service": service,
        "reason": reason,
        "minutes": minutes,
    }
    return recordable({key: value for key, value in fields.items() if value is not None})


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


#: Text kept per value by ``shortened``: even as escaped control characters (6 bytes each)
#: a record of a few dozen such values stays far below the ledger's 16 KiB.
SHORT_TEXT = 100


def shortened(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every text cut to SHORT_TEXT characters and lists and objects
    dropped, marked ``truncated``: for a record whose canonical spelling is over the
    ledger's size limit (texts of escaped control characters), so the event is still
    recorded rather than lost."""
    kept = {
        key[:SHORT_TEXT]: value[:SHORT_TEXT] if isinstance(value, str) else value
        for key, value in record.items()
        if not isinstance(value, list | dict)
    }
    return {**kept, "truncated": True}


class LedgerAppender(Protocol):
    """Where a service appends its decisions (``ObjectChain`` on GCP and Azure)."""

    def append(self, data: Mapping[str, Any]) -> object:
        """Append one record; raise :class:`~iot_remote_access.core.ledger.LedgerUnavailable`."""
        ...


def certificate_record(
    event: str, thing: str, certificate_id: str, serial: str | None, **facts: object
) -> dict[str, Any]:
    """A ``cert.*`` record as the AWS rotation writes it, for the GCP and Azure services.

    ``certificate_id``: the issuer's name for it (CA Service: the resource name; Azure:
    the serial). Never a key or a PEM.
    """
    decision = {CERT_ISSUE: "issued", CERT_ROTATE: "rotated", CERT_REVOKE: "revoked"}[event]
    return recordable(
        {
            "event": event,
            "decision": decision,
            "thing": thing,
            "certificateId": certificate_id,
            "serial": serial,
            **facts,
        }
    )
