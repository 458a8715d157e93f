"""The device's rotation state on disk: which pair is current, which is pending, which step.

One small JSON file, replaced atomically, is the only thing that says which
certificate the device uses: switching to a new certificate is one rename. Each
pair's files (certificate, CSR) live in their own directory and are never
overwritten in place once the state names them.

Layout under the store's directory::

    state.json               {"phase": ..., "current": id, "pending": id|null, ...}
    pairs/<id>/certificate.pem
    pairs/<id>/request.pem   (the CSR, kept so a restart re-sends the *same* CSR)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

from iot_remote_access.device.durable import (
    atomic_write,
    make_directory,
    remove_partials,
    remove_tree,
)
from iot_remote_access.device.keystore import KeyStore, check_pair_id

MAX_STATE_BYTES = 4096


class Phase(StrEnum):
    """Where a rotation is; a restart resumes from here (or rolls back)."""

    IDLE = "idle"  # only the current pair (maybe a previous one awaiting deletion)
    KEY = "key"  # a pending pair id chosen; its key may not exist yet
    CSR = "csr"  # the pending key and its CSR are on disk
    SENT = "sent"  # the CSR was published (PUBACK); waiting for the certificate
    RECEIVED = "received"  # the checked certificate is on disk next to the pending key
    SWITCHING = "switching"  # trying the pending pair until ``deadline``


class StateError(RuntimeError):
    """The state file is missing or unreadable: the store was never provisioned."""


@dataclass(frozen=True)
class Progress:
    phase: Phase
    current: str
    pending: str | None = None
    previous: str | None = None
    #: SWITCHING: epoch seconds after which the pending pair is given up.
    deadline: float | None = None
    #: When the rotation started (epoch seconds), to give up on a CA that never answers.
    started: float | None = None

    def to(self, phase: Phase, **changes: object) -> Progress:
        return replace(self, phase=phase, **changes)  # type: ignore[arg-type]


class CredentialStore:
    """The pairs and the state file of one device.

    :param directory: the store (created 0700).
    :param keys: where private keys live. Default: a ``FileKeyStore`` in ``directory/keys``.
    """

    def __init__(self, directory: Path, keys: KeyStore) -> None:
        self.directory = directory
        self.keys = keys
        self.state_file = directory / "state.json"

    # -- state ---------------------------------------------------------------------------------

    def load(self) -> Progress:
        try:
            raw = self.state_file.read_bytes()[:MAX_STATE_BYTES]
            document = json.loads(raw)
            progress = Progress(**{**document, "phase": Phase(document["phase"])})
        except FileNotFoundError:
            raise StateError(f"{self.state_file}: missing; provision() the device first") from None
        except (ValueError, TypeError, KeyError):
            raise StateError(f"{self.state_file}: unreadable rotation state") from None
        for pair in (progress.current, progress.pending, progress.previous):
            if pair is not None:
                check_pair_id(pair)
        return progress

    def save(self, progress: Progress) -> Progress:
        document = {**asdict(progress), "phase": progress.phase.value}
        atomic_write(self.state_file, json.dumps(document, sort_keys=True).encode(), mode=0o600)
        return progress

    def recover(self) -> Progress:
        """After a power loss: drop temporary files (the real ones are whole) and the
        pairs the state no longer names (an abandoned rotation cut short)."""
        remove_partials(self.directory)
        progress = self.load()
        named = {progress.current, progress.pending, progress.previous}
        pairs = self.directory / "pairs"
        for directory in sorted(pairs.iterdir()) if pairs.is_dir() else ():
            if directory.name not in named:
                self.remove_pair(directory.name)
        return progress

    # -- pairs ---------------------------------------------------------------------------------

    @staticmethod
    def new_pair_id() -> str:
        return secrets.token_hex(6)

    def pair_directory(self, pair: str) -> Path:
        return self.directory / "pairs" / check_pair_id(pair)

    def certificate_file(self, pair: str) -> Path:
        return self.pair_directory(pair) / "certificate.pem"

    def request_file(self, pair: str) -> Path:
        return self.pair_directory(pair) / "request.pem"

    def write_pair_file(self, path: Path, data: bytes) -> None:
        make_directory(path.parent)
        atomic_write(path, data)

    def has_certificate(self, pair: str | None) -> bool:
        return pair is not None and self.certificate_file(pair).is_file()

    def remove_pair(self, pair: str) -> None:
        """Key first: a pair without a key is useless, a key without a pair is litter."""
        self.keys.delete(pair)
        remove_tree(self.pair_directory(pair))

    def provision(self, certificate_pem: bytes, *, pair: str | None = None) -> Progress:
        """Make a fresh store whose current pair is ``certificate_pem`` with the key already
        in the key store under ``pair`` (for a file store: ``import_key`` it first)."""
        make_directory(self.directory)
        pair = check_pair_id(pair or "factory")
        if not self.keys.has_key(pair):
            raise StateError(f"pair {pair!r}: the key store has no key for it")
        self.write_pair_file(self.certificate_file(pair), certificate_pem)
        return self.save(Progress(Phase.IDLE, current=pair))
