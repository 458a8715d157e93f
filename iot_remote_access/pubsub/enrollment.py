"""Devices' current certificates, read for the GCP inventory (``inventory enroll``).

A fresh deployment's inventory is empty, so the planner would rotate nobody: each
device's current certificate (the one it connects with, from the fleet's factory CA or
an earlier CA Service issuance) is read here into what ``FirestoreInventory.enroll``
records, the same fields the rotation service writes after a rotation:

- ``thing``: the subject CN (the broker's ACL uses it as the username), checked against
  the topic model's ``THING_NAME_RULE``;
- ``serial``: lower-case hex without separators (``IssuedCertificate.serial_hex``);
- ``notAfter``: the certificate's expiry (an expired certificate is refused: it no
  longer connects, so there is nothing to rotate from);
- ``certificateId``: ``x509-sha256:<SHA-256 of the DER>``. The service records CA
  Service's resource name for what it issued, and revokes the previous certificate by
  that name; a certificate read from a PEM has no such name (it may not come from CA
  Service at all), so it is named by its fingerprint, which ``CaServiceIssuer.revoke``
  refuses without a call (not a certificate of its pool). After the device's first
  rotation the protocol records the revocation as ``not-revoked``: withdrawing trust in
  a factory certificate is the broker's truststore or CRL, the operator's.

Every problem is a :class:`BoundedInputError` naming the source, the field and the
value (shortened), and what is allowed. Nothing here touches Firestore.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from iot_remote_access.core.bounded_input import BoundedInputError, excerpt
from iot_remote_access.core.topics import THING_NAME_RULE, TopicModelError, validate_thing_name

#: Prefix of the ids of enrolled certificates (never a CA Service resource name).
ENROLLED_ID_PREFIX = "x509-sha256:"
#: Certificates in one run (a bigger fleet enrols in several runs; every run is idempotent).
MAX_CERTIFICATES = 10_000
#: One PEM block: a device certificate is 1-2 KiB; RSA 4096 with extensions stays far below.
MAX_BLOCK_CHARS = 16 * 1024
_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----(.*?)-----END \1-----", re.DOTALL)
_BEGIN = re.compile(r"-----BEGIN ")


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One device's current certificate, as the inventory records it."""

    thing: str
    certificate_id: str
    serial: str
    not_after: datetime
    source: str


def read_bundle(text: str, source: str, now: datetime) -> list[Enrollment]:
    """Every certificate of a PEM bundle (one or more ``CERTIFICATE`` blocks; text between
    blocks, as ``openssl`` writes it, is ignored). Anything else is refused."""
    blocks = list(_BLOCK.finditer(text))
    if len(_BEGIN.findall(text)) != len(blocks):
        raise BoundedInputError(source, "a PEM block without its END line; allowed: PEM blocks")
    if not blocks:
        raise BoundedInputError(
            source, "no PEM certificate; allowed: PEM 'CERTIFICATE' blocks, one per device"
        )
    enrollments = []
    for number, block in enumerate(blocks, start=1):
        where = f"{source}: certificate {number}"
        label = block.group(1)
        if label != "CERTIFICATE":
            # Never quote a block's content: it may be a private key.
            raise BoundedInputError(
                where,
                f"a {excerpt(label)} block; allowed: 'CERTIFICATE' blocks only"
                + (" (a private key stays on the device)" if "PRIVATE" in label else ""),
            )
        if len(block.group(0)) > MAX_BLOCK_CHARS:
            raise BoundedInputError(
                where, f"{len(block.group(0))} characters; allowed: at most {MAX_BLOCK_CHARS}"
            )
        enrollments.append(enrollment(block.group(0), where, now))
    return enrollments


def enrollment(pem: str, where: str, now: datetime) -> Enrollment:
    """The inventory's fields of one PEM certificate, or a refusal naming the field."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        reason = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
        raise BoundedInputError(
            where, f"not an X.509 certificate ({reason}); allowed: a PEM device certificate"
        ) from None
    thing = _thing(certificate, where)
    _check_not_ca(certificate, where)
    not_after = certificate.not_valid_after_utc
    if not_after <= now:
        raise BoundedInputError(
            where,
            f"notAfter: {not_after.isoformat()} has passed; allowed: a certificate that "
            "still connects (re-provision an expired device instead)",
        )
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    return Enrollment(
        thing=thing,
        certificate_id=ENROLLED_ID_PREFIX + fingerprint,
        serial=format(certificate.serial_number, "x"),
        not_after=not_after.astimezone(UTC),
        source=where,
    )


def _thing(certificate: x509.Certificate, where: str) -> str:
    try:
        # cryptography warns (on stderr) about a CN over X.509's 64 characters; the thing
        # name rule below refuses it in the CLI's one line instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as error:  # a subject cryptography cannot decode
        raise BoundedInputError(
            where, f"subject: unreadable ({str(error)[:80]}); allowed: CN=<thing name>"
        ) from None
    if len(names) != 1:
        raise BoundedInputError(
            where, f"subject CN: {len(names)} found; allowed: exactly one, the thing name"
        )
    value = names[0].value
    try:
        return validate_thing_name(value, field_name="subject CN")
    except TopicModelError:
        raise BoundedInputError(
            where, f"subject CN: {excerpt(value)} is not a thing name; allowed: {THING_NAME_RULE}"
        ) from None


def _check_not_ca(certificate: x509.Certificate, where: str) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return
    except ValueError as error:  # duplicate or malformed extensions
        raise BoundedInputError(
            where, f"extensions: unreadable ({str(error)[:80]}); allowed: a device certificate"
        ) from None
    if constraints.value.ca:
        raise BoundedInputError(
            where,
            "basicConstraints: CA:TRUE (a CA certificate); allowed: a device's client "
            "certificate (leave the chain out of the bundle)",
        )


def check_unique(enrollments: list[Enrollment]) -> list[Enrollment]:
    """One certificate per thing: the same certificate twice counts once; two different
    certificates for one thing are refused (which one is current?)."""
    if len(enrollments) > MAX_CERTIFICATES:
        raise BoundedInputError(
            "certificates",
            f"{len(enrollments)} given; allowed: at most {MAX_CERTIFICATES} per run",
        )
    by_thing: dict[str, Enrollment] = {}
    for item in enrollments:
        seen = by_thing.get(item.thing)
        if seen is None:
            by_thing[item.thing] = item
        elif seen.certificate_id != item.certificate_id:
            raise BoundedInputError(
                item.source,
                f"subject CN: {excerpt(item.thing)} also names another certificate "
                f"({seen.source}); allowed: one current certificate per thing",
            )
    return list(by_thing.values())
