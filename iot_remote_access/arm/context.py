"""What a resource needs while it is read or written: clients, progress display, the CA key."""

from __future__ import annotations

from dataclasses import dataclass

from iot_remote_access.arm.clients import AzureClients
from iot_remote_access.arm.progress import ConsoleProgress, Progress
from iot_remote_access.arm.proof_of_possession import CaKey


@dataclass
class ArmContext:
    """Default progress: rich, on stderr. ``ca_key`` only when a proof of possession is due."""

    clients: AzureClients
    progress: Progress
    ca_key: CaKey | None = None

    @classmethod
    def create(cls, clients: AzureClients, *, ca_key: CaKey | None = None) -> ArmContext:
        return cls(clients=clients, progress=ConsoleProgress(), ca_key=ca_key)
