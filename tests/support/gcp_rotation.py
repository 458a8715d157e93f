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

from iot_remote_access.core.mosquitto_acl import DEFAULT_ROTATION_BRIDGE_IDENTITY
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

    def __init__(
        self, tmp: Path, ca: TestCa, project: str | None = None, issuer: Any = None
    ) -> None:
        self.project = project or fresh_project()
        self.client = firestore.Client(project=self.project)
        self.inventory = FirestoreInventory(self.client)
        self.issuer = issuer or LocalTestIssuer.create(tmp / "issuer", ca._key, ca._cert)
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


# -- end to end: the rotation bridge, the Pub/Sub topology, a provisioned device ------------

#: The rotation bridge's certificate CN (a '.': no thing name can carry its rights).
ROTATION_BRIDGE_IDENTITY = DEFAULT_ROTATION_BRIDGE_IDENTITY
ROTATION_PUBSUB = {
    "csr": "iot-rotation-csr",
    "confirm": "iot-rotation-confirm",
    "certificates": "iot-rotation-certificates",
}


def rotation_bridge_overrides() -> dict[str, str]:
    """The bridge, pointed at the rotation topics (BRIDGE_* names, lower case without prefix):
    CSRs up as its 'telemetry', certificates down as its 'commands', confirmations up as
    its 'responses'. The bridge's code, unchanged."""
    return {
        "mqtt_client_id": "rotation-bridge-0",
        "share_group": "rotation-bridge",
        "telemetry_topic": "rot/{thing}/csr",
        "commands_topic": "rot/{thing}/certificate",
        "responses_topic": "rot/{thing}/confirm",
        "pubsub_telemetry_topic": ROTATION_PUBSUB["csr"],
        "pubsub_telemetry_dead_letter_topic": ROTATION_PUBSUB["csr"] + "-dead-letter",
        "pubsub_commands_subscription": ROTATION_PUBSUB["certificates"] + "-bridge",
        "pubsub_commands_dead_letter_topic": ROTATION_PUBSUB["certificates"] + "-dead-letter",
        "pubsub_responses_topic": ROTATION_PUBSUB["confirm"],
    }


def deploy_rotation_topology(project: str) -> None:
    """The Pub/Sub topology with the rotation topics, by the real ``gcp deploy`` code
    (plan, then deploy) on the emulator: what the service and the rotation bridge use."""
    from tests.gcp.conftest import GCP_SETTINGS, deploy_topology

    account = f"iot-rotation@{project}.iam.gserviceaccount.com"
    image = "europe-west1-docker.pkg.dev/p/iot/pubsub-bridge:0.1.0"
    deploy_topology(
        project,
        {
            **GCP_SETTINGS,
            "certificateAuthority": {"location": "europe-west1"},
            "rotationService": {"serviceAccount": account, "image": image},
        },
    )


def issued_device_store(directory: Path, fleet: Fleet, thing: str, days: int = 40) -> Any:
    """A device store whose current pair came from the fleet's issuer, enrolled in the
    inventory with that certificate (so that its revocation after a rotation shows)."""
    from iot_remote_access.device.keystore import FileKeyStore
    from iot_remote_access.device.rotation_state import CredentialStore

    key = ec.generate_private_key(ec.SECP256R1())
    issued = fleet.issuer.issue(thing, make_csr(thing, key=key), timedelta(days=days), thing)
    keys = FileKeyStore(directory / "keys")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keys.import_key("factory", key_pem)
    store = CredentialStore(directory, keys)
    store.provision((issued.pem.strip() + "\n").encode())
    fleet.inventory.enroll(
        thing, certificate_id=issued.name, not_after=issued.not_after,
        serial=issued.serial_hex, now=datetime.now(UTC),
    )  # fmt: skip
    return store, issued


def rotation_settings_file(directory: Path, project: str | None = None) -> Path:
    """examples/gcp-settings.yaml with the rotation service, its CA pool and a certificates
    section switched on (``project``: this test's own)."""
    import yaml

    from tests.support.hivemq import EXAMPLE_SETTINGS

    document = yaml.safe_load(EXAMPLE_SETTINGS.read_text(encoding="utf-8"))
    gcp = document["iot-remote-access"]["gcp"]
    project = project or gcp["projectId"]
    gcp["projectId"] = project
    account = f"iot-rotation@{project}.iam.gserviceaccount.com"
    gcp["certificateAuthority"] = {
        "location": "europe-west1",
        "issuerMembers": [f"serviceAccount:{account}"],
    }
    gcp["rotationService"] = {"serviceAccount": account, "image": gcp["bridge"]["image"]}
    document["iot-remote-access"]["certificates"] = {"hourlyRotationBudget": 400}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
