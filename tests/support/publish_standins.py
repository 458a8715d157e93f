"""Stand-ins for Pub/Sub's Publish call (pubsub_rpc.Publish), named so: they record what
was published and complete the call's future at once or from another thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any


class InstantPublish:
    """Stands in for the gRPC Publish call: the future is already done when returned, so
    the callback runs inside add_done_callback, on the forwarder's own thread."""

    def __init__(self, fail_every: int = 0) -> None:
        self.calls = 0
        self.fail_every = fail_every
        self.published: list[Any] = []
        self.lock = threading.Lock()

    def outcome(self, messages: Sequence[Any]) -> BaseException | None:
        with self.lock:
            self.calls += 1
            if self.fail_every and self.calls % self.fail_every == 1:  # the first one fails
                return ConnectionError("stand-in: connection reset")
            self.published.extend(messages)
            return None

    def __call__(self, topic: str, messages: Sequence[Any]) -> Future[None]:
        future: Future[None] = Future()
        error = self.outcome(messages)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future


class ThreadedPublish(InstantPublish):
    """The same, but the future completes later on another thread (gRPC's usual way)."""

    def __call__(self, topic: str, messages: Sequence[Any]) -> Future[None]:
        future: Future[None] = Future()

        def complete() -> None:
            error = self.outcome(messages)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        threading.Timer(0.001, complete).start()
        return future
