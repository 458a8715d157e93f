"""Progress display for deployments: a live spinner on a terminal, one line per step in CI."""

from __future__ import annotations

import time
from typing import Protocol, TypeVar

from azure.core.polling import LROPoller
from rich.console import Console

T = TypeVar("T")


class Progress(Protocol):
    def wait(self, poller: LROPoller[T], label: str) -> T:
        """Wait for a long-running operation, showing ``label`` while it runs."""
        ...

    def done(self, label: str) -> None:
        """Report a finished short step."""
        ...


class ConsoleProgress:
    """rich status spinner with elapsed time when stderr is a terminal; plain lines otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def wait(self, poller: LROPoller[T], label: str) -> T:
        started = time.monotonic()
        if self.console.is_terminal:
            with self.console.status(f"{label} ...") as status:
                while not poller.done():
                    poller.wait(0.5)
                    status.update(
                        f"{label} ... {time.monotonic() - started:.0f}s ({poller.status()})"
                    )
        else:
            self.console.print(f"{label} ...", highlight=False)
        result = poller.result()
        self.console.print(f"{label}: done in {time.monotonic() - started:.1f}s", highlight=False)
        return result

    def done(self, label: str) -> None:
        self.console.print(f"{label}: done", highlight=False)
