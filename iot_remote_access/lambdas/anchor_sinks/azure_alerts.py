"""The Device Streams alert writer on Azure: the action group's webhook -> the chain.

How the alerts reach us: ``StreamAlert`` (``constructs/azure/stream_alert.py``) is a
scheduled query rule on the hub's DeviceStreams logs whose action is the action group
``azure.streamAlert.actionGroupId``. Give that action group a webhook receiver with the
common alert schema on (``useCommonAlertSchema: true``) whose URL is this writer's,
``https://<host>/alerts?token=<secret>``: every fired and resolved alert is POSTed here
as one JSON document, mapped by ``core.ledger_records.stream_alert_record`` and appended
to the ``ObjectChain`` in the anchor container; the chain is anchored every ``anchor_every``.

Answers: ``200 {"recorded": true, "seq": N}`` (or ``"duplicate": true`` for an alert
event already appended by this writer); ``4xx {"field", "message"}`` for a request that
is not an alert of the common schema (never retried usefully); ``503`` when the ledger
cannot be written, which the action group retries. The token is compared in constant
time and never logged; bodies are read up to 64 KiB.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from iot_remote_access.core.ledger import LedgerError, Record, shown
from iot_remote_access.core.ledger_records import shortened, stream_alert_record
from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
from iot_remote_access.lambdas.anchor_sinks.sinks import TailBroken
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable

logger = logging.getLogger("iot_remote_access.ledger.azure_alerts")
SCHEMA = "azureMonitorCommonAlertSchema"
MAX_BODY = 64 * 1024
CONDITIONS = ("Fired", "Resolved")
SEEN_LIMIT = 100_000

Answer = tuple[int, dict[str, Any]]


class AlertWriter:
    """Validates one webhook request and appends its alert event to the chain."""

    def __init__(
        self,
        chain: ObjectChain,
        token: str,
        *,
        anchor_every: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if len(token) < 16:
            raise ValueError("token: too short; allowed: at least 16 characters of a secret")
        self.chain = chain
        self._token = token.encode()
        self.anchor_every = anchor_every
        self.clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._last_anchor: datetime | None = None
        self._lock = threading.Lock()  # one append at a time: the chain is a line

    def handle(self, path: str, body: bytes) -> Answer:
        parts = urlsplit(path)
        if parts.path != "/alerts":
            return 404, {"field": "path", "message": f"{shown(parts.path)}; allowed: /alerts"}
        given = dict(parse_qsl(parts.query)).get("token", "")
        if not hmac.compare_digest(given.encode(), self._token):
            return 401, {"field": "token", "message": "missing or wrong; allowed: the webhook's"}
        try:
            event = _alert(body)
        except _Refused as refused:
            return 400, {"field": refused.field, "message": refused.message}
        record = stream_alert_record(event)
        key = f"{record.get('alertId')}|{record.get('decision')}"
        with self._lock:
            if key in self._seen:
                return 200, {"recorded": True, "seq": self._seen[key], "duplicate": True}
            try:
                stored = _append(self.chain, record)
            except LedgerUnavailable as error:
                logger.error("alert not recorded; the action group retries: %s", str(error)[:300])
                return 503, {"field": "ledger", "message": "could not be written; retry"}
            self._seen[key] = stored.seq
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
        logger.info("alert recorded: %s %s seq %d", record["decision"], key, stored.seq)
        return 200, {"recorded": True, "seq": stored.seq}

    def anchor_if_due(self, *, force: bool = False) -> None:
        """Anchor the chain's head when ``anchor_every`` has passed (or ``force``: at exit)."""
        now = self.clock()
        due = self._last_anchor is None or now - self._last_anchor >= self.anchor_every
        if not (due or force):
            return
        with self._lock:
            try:
                self.chain.anchor(now)
            except TailBroken as error:
                logger.error("ledger tail does not hold; not anchored: %s", error)
                return
        self._last_anchor = now


def _append(chain: ObjectChain, record: dict[str, Any]) -> Record:
    try:
        return chain.append(record)
    except LedgerError:  # over 16 KiB (escaped control characters): recorded cut short
        return chain.append(shortened(record))


class _Refused(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _alert(body: bytes) -> Mapping[str, Any]:
    """The common-schema alert in ``body``; _Refused names what is wrong."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refused("body", "is not JSON; allowed: an Azure Monitor alert") from None
    if not isinstance(event, dict):
        raise _Refused("body", "is not a JSON object; allowed: an Azure Monitor alert")
    if event.get("schemaId") != SCHEMA:
        raise _Refused("schemaId", f"{shown(event.get('schemaId'))}; allowed: {SCHEMA!r}")
    data = event.get("data")
    essentials = data.get("essentials") if isinstance(data, dict) else None
    if not isinstance(essentials, dict):
        raise _Refused("data.essentials", "missing; allowed: the common alert schema's")
    for key in ("alertId", "alertRule"):
        if not isinstance(essentials.get(key), str) or not essentials[key]:
            raise _Refused(f"data.essentials.{key}", f"{shown(essentials.get(key))}; allowed: text")
    if essentials.get("monitorCondition") not in CONDITIONS:
        raise _Refused(
            "data.essentials.monitorCondition",
            f"{shown(essentials.get('monitorCondition'))}; allowed: {', '.join(CONDITIONS)}",
        )
    return event


def serve(writer: AlertWriter, host: str, port: int, stop: threading.Event) -> ThreadingHTTPServer:
    """Start the webhook server in a thread (and the anchoring loop); returns the server."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops sending does not hold a thread for ever

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                self._answer(413, {"field": "body", "message": f"allowed: 1..{MAX_BODY} bytes"})
                return
            self._answer(*writer.handle(self.path, self.rfile.read(int(length))))

        def do_GET(self) -> None:
            ok = urlsplit(self.path).path == "/healthz"
            self._answer(*((200, {"ok": True}) if ok else (404, {"field": "path"})))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the request line holds the token: never logged

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def anchoring() -> None:
        while not stop.wait(5):
            writer.anchor_if_due()

    threading.Thread(target=anchoring, daemon=True).start()
    return server
