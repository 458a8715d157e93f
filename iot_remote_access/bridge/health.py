"""Liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics) over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: A check returns (ok, details).
Check = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """Serves the three endpoints from a daemon thread; ``port`` 0 picks a free port."""

    def __init__(
        self, host: str, port: int, *, registry: CollectorRegistry, live: Check, ready: Check
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, details = (outer.live if path == "/healthz" else outer.ready)()
                    body = {"status": "ok" if ok else "unavailable", **details}
                    self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
                else:
                    body = {
                        "error": f"no such endpoint: {path[:100]}",
                        "allowed": ["/healthz", "/readyz", "/metrics"],
                    }
                    self._send(404, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the logs

        self.registry = registry
        self.live = live
        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bridge-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
