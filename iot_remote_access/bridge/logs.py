"""Structured JSON logs on stderr (one object per line, for Cloud Logging)."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "severity", "asctime": "time", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Google and gRPC libraries log every retry at INFO; their failures reach
    # our own logs through the futures anyway.
    for noisy in ("google", "grpc", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
