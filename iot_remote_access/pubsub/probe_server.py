"""The probes a kubelet polls, for the GKE services of this package: ``/healthz``, ``/readyz``.

Each answers 200 with ``{"status": "ok", ...}`` when its check passes, else 503 with
the details; anything else is 404 naming the paths there are. Standard library only:
the services' counts ride in the readiness details instead of a metrics endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Probe = Callable[[], tuple[bool, dict[str, Any]]]
PATHS = ("/healthz", "/readyz")


class ProbeServer:
    """Serves ``probes`` (path -> check) from a daemon thread; port 0 picks a free one."""

    def __init__(self, host: str, port: int, probes: dict[str, Probe]) -> None:
        def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
            check = probes.get(handler.path.partition("?")[0])
            if check is None:
                return 404, {"error": "no such path", "allowed": sorted(probes)}
            ok, details = check()
            return (200 if ok else 503), {"status": "ok" if ok else "unavailable", **details}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = answer(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: a probe every few seconds is not news."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_logs(level: str) -> None:
    """One JSON object per line on stderr, Cloud Logging's field names."""
    import logging
    import sys

    from pythonjsonlogger.json import JsonFormatter

    stream = logging.StreamHandler(sys.stderr)
    renamed = {"levelname": "severity", "asctime": "time", "name": "logger"}
    stream.setFormatter(
        JsonFormatter("{asctime}{levelname}{name}{message}", style="{", rename_fields=renamed)
    )
    logging.basicConfig(level=level, handlers=[stream], force=True)
    for chatty in ("google", "grpc", "urllib3"):  # every retry at INFO otherwise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
