"""Warnings that repeat (a failing topic, a dead-letter topic that is missing) logged once
per interval per cause, with how many times it happened meanwhile, never once per message."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class CauseLog:
    """``report(event, cause)`` logs the first time, then at most once per ``interval`` seconds
    per (event, cause); each line carries ``repeats``: reports since the previous line."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._log = logger
        self._interval = interval
        self._lock = threading.Lock()
        #: (event, cause) -> (monotonic time of its last line, reports not yet logged)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def report(self, event: str, cause: str, level: int = logging.WARNING, **extra: Any) -> None:
        now = time.monotonic()
        key = (event, cause)
        with self._lock:
            last, pending = self._seen.get(key, (-self._interval, 0))
            if now - last < self._interval:
                self._seen[key] = (last, pending + 1)
                return
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget causes not seen for an interval
                self._seen = {
                    k: v for k, v in self._seen.items() if now - v[0] < self._interval or k == key
                }
        self._log.log(level, event, extra={"cause": cause, "repeats": pending, **extra})
