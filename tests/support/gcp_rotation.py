"""Parts for the GCP rotation tests: a fleet on the Firestore emulator, CSRs, recorded answers.

The issuer is the local TEST ISSUER (tests/support/local_test_issuer.py, a STAND-IN backed
by ``cryptography``) on the test CA, so the certificates it issues connect to mosquitto.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.cloud import firestore

from iot_remote_access.core.rotation_plan import RotationState
from iot_remote_access.pubsub.rotation_inventory import FirestoreInventory
from iot_remote_access.pubsub.rotation_protocol import RotationProtocol
from tests.support.local_test_issuer import LocalTestIssuer
from tests.support.pki import TestCa

_projects = itertools.count()


def fresh_project(prefix: str = "rot") -> str:
    return f"{prefix}-{os.getpid()}-{next(_projects)}"


def make_csr(common_name: str | None, *, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class RecordedReplies:
    """The answers the protocol sent, in order (the Pub/Sub path is tested end to end)."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send(self, thing: str, body: dict[str, Any]) -> None:
        self.sent.append((thing, body))


class Fleet:
    """An inventory on the Firestore emulator (a project of its own) and the test issuer."""

    def __init__(self, tmp: Path, ca: TestCa, project: str | None = None) -> None:
        self.project = project or fresh_project()
        self.client = firestore.Client(project=self.project)
        self.inventory = FirestoreInventory(self.client)
        self.issuer = LocalTestIssuer.create(tmp / "issuer", ca._key, ca._cert)
        self.replies = RecordedReplies()

    def protocol(self, **kwargs: Any) -> RotationProtocol:
        return RotationProtocol(
            inventory=self.inventory, issuer=self.issuer, replies=self.replies, **kwargs
        )

    def enroll(self, thing: str, *, days: int = 60, state: RotationState | None = None) -> str:
        """A device whose current certificate came from the issuer; returns that name."""
        now = datetime.now(UTC)
        issued = self.issuer.issue(thing, make_csr(thing), timedelta(days=days), f"enroll-{thing}")
        self.inventory.enroll(
            thing, certificate_id=issued.name, not_after=issued.not_after,
            serial=issued.serial_hex, now=now,
        )  # fmt: skip
        if state is not None:
            self.inventory.transition(thing, None, {"rotationState": state.value})
        return issued.name
