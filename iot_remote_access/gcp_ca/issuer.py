"""Issue and revoke device certificates through Certificate Authority Service.

:class:`CaServiceIssuer` is GCP's
:class:`~iot_remote_access.core.certificate_issuer.CertificateIssuer`.

Why config-based issuance and not the CSR passed through: CA Service copies a CSR's
subject (and, with passthrough, its SANs) into the certificate; no request field
overrides it. With a ``CertificateConfig`` the issuer sends the CSR's public key and a
subject it writes itself, ``CN=<thing>``, so the CN is the thing name whatever the CSR
says, and the pool (``gcp_ca/desired.py``) allows config-based issuance only. The
price: CA Service then never sees the CSR, so it cannot check that the device holds
the key. The issuer does (the CSR's signature, with ``cryptography``) before sending
anything, after the rules every cloud's signer shares (``core/csr_policy.screen_csr``:
key type and size, signature hash, no SAN, no foreign CN).

Lifetimes are chosen by the caller with ``core.stagger.issuance_placement`` (the AWS
signer's code path); the issuer refuses one above the pool's maximum rather than let
CA Service cut it, which would pile the cut certificates onto one expiry day.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from google.api_core import exceptions as gexc
from google.cloud.security.privateca_v1 import types as ca

from iot_remote_access.core.certificate_issuer import (
    IssuedCertificate,
    IssuerRefused,
    IssuerThrottled,
)
from iot_remote_access.core.csr_policy import CsrRefusal, screen_csr
from iot_remote_access.core.gcp_ca_rules import MAX_COMMON_NAME, pool_name
from iot_remote_access.gcp_ca.desired import device_x509_values
from iot_remote_access.settings import FleetSettings

#: Names request ids and certificate ids of this issuer (uuid5), so that the same
#: ``request_id`` always maps to the same CA Service ids.
_NAMESPACE = uuid.UUID("5b0e7a1c-63f4-4d0e-9f59-3a43c8d2a6e1")
_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")
#: Answers that mean "not now": quota, overload, a call that did not get through.
_THROTTLED = (
    gexc.ResourceExhausted,
    gexc.TooManyRequests,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
)
#: Each call waits at most this long, so a stuck service cannot hold a rotation worker.
CALL_TIMEOUT_SECONDS = 30.0


def certificate_id(thing: str, request_id: str) -> str:
    """The CA Service certificate id of ``request_id`` (``[a-zA-Z0-9_-]{1,63}``).

    The thing name (made safe, shortened) keeps ids readable in the console; the hash
    of ``request_id`` makes them unique and the same for every retry.
    """
    digest = hashlib.sha256(_key(thing, request_id).encode("utf-8")).hexdigest()[:32]
    return f"{_UNSAFE_ID.sub('-', thing)[:30]}-{digest}"


def _key(thing: str, request_id: str) -> str:
    # The thing is part of every id: two things can never share one, even when the
    # caller reuses a request id or their names differ only in characters made safe.
    return f"{thing}\n{request_id}"


class CaServiceIssuer:
    """Issues device certificates from one CA pool (Enterprise tier).

    :param client: a ``CertificateAuthorityServiceClient`` (``gcp_ca.clients.make_client``).
    :param pool: the pool's resource name, ``projects/P/locations/L/caPools/POOL``.
    :param maximum_lifetime: the pool's ``maximum_lifetime``; longer requests are refused.
    """

    def __init__(self, client: Any, pool: str, *, maximum_lifetime: timedelta) -> None:
        self.client = client
        self.pool = pool
        self.maximum_lifetime = maximum_lifetime

    @classmethod
    def from_settings(
        cls, settings: FleetSettings, project: str, endpoint: str | None = None
    ) -> CaServiceIssuer:
        """The issuer of ``gcp.certificateAuthority`` in ``project`` (``endpoint``: as
        ``gcp deploy --ca-endpoint``; default Google's)."""
        from iot_remote_access.gcp_ca.clients import make_client

        authority = None if settings.gcp is None else settings.gcp.certificate_authority
        if authority is None:
            raise ValueError("gcp.certificateAuthority: missing; allowed: a CA Service section")
        policy = settings.stagger_policy()
        longest = authority.certificate_lifetime_days(policy.base_days + policy.window_days - 1)
        return cls(
            make_client(endpoint),
            pool_name(project, authority.location, authority.pool),
            maximum_lifetime=timedelta(days=longest),
        )

    def issue(
        self, thing: str, csr_pem: str, lifetime: timedelta, request_id: str
    ) -> IssuedCertificate:
        public_key_pem = _verified_public_key(csr_pem, thing)
        self._check_lifetime(lifetime)
        certificate_id_ = certificate_id(thing, request_id)
        certificate = ca.Certificate(
            config=ca.CertificateConfig(
                subject_config=ca.CertificateConfig.SubjectConfig(
                    subject=ca.Subject(common_name=thing)  # no SANs: the pool discards them too
                ),
                x509_config=device_x509_values(),
                public_key=ca.PublicKey(key=public_key_pem, format_=ca.PublicKey.KeyFormat.PEM),
            ),
            lifetime=timedelta(seconds=int(lifetime.total_seconds())),
        )
        try:
            issued = self.client.create_certificate(
                request=ca.CreateCertificateRequest(
                    parent=self.pool,
                    certificate_id=certificate_id_,
                    certificate=certificate,
                    request_id=str(uuid.uuid5(_NAMESPACE, _key(thing, request_id))),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except gexc.AlreadyExists:
            # Issued by an earlier try whose answer was lost, past the service's 60 minutes
            # of request-id memory: the same certificate, if it is this thing's and key's.
            issued = self._call(
                self.client.get_certificate, name=f"{self.pool}/certificates/{certificate_id_}"
            )
        except _THROTTLED as error:
            raise IssuerThrottled(
                f"{thing}: CA Service throttled the issuance ({_status(error)})"
            ) from None
        except gexc.GoogleAPICallError as error:
            raise IssuerRefused(
                f"{thing}: CA Service refused the issuance ({_status(error)}: {_first_line(error)})"
            ) from None
        return _checked(issued, thing, public_key_pem)

    def revoke(self, name: str) -> None:
        if not name.startswith(f"{self.pool}/certificates/"):
            # An enrolled factory certificate (``x509-sha256:...``, pubsub/enrollment.py) or
            # another pool's: nothing this pool could revoke, so no call is made.
            # The reason first: the rotation's audit record keeps 120 characters of it.
            raise IssuerRefused(
                f"nothing to revoke at CA Service (not a certificate of {self.pool}; a "
                f"factory certificate's trust is the broker's truststore or CRL): {name[:100]}"
            )
        reason = ca.RevocationReason.SUPERSEDED
        try:
            self.client.revoke_certificate(
                request=ca.RevokeCertificateRequest(
                    name=name,
                    reason=reason,
                    request_id=str(uuid.uuid5(_NAMESPACE, f"revoke:{name}")),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except gexc.FailedPrecondition as error:
            # Revoked already (a retry): done. Anything else that fails a precondition is not.
            live = self._call(self.client.get_certificate, name=name)
            if not live.revocation_details.revocation_state:
                raise IssuerRefused(
                    f"{name}: CA Service refused the revocation ({_first_line(error)})"
                ) from None
        except _THROTTLED as error:
            raise IssuerThrottled(
                f"{name}: CA Service throttled the revocation ({_status(error)})"
            ) from None
        except gexc.GoogleAPICallError as error:
            raise IssuerRefused(
                f"{name}: CA Service refused the revocation "
                f"({_status(error)}: {_first_line(error)})"
            ) from None

    def _check_lifetime(self, lifetime: timedelta) -> None:
        if not timedelta(days=1) <= lifetime <= self.maximum_lifetime:
            raise IssuerRefused(
                f"lifetime: {lifetime.days} days is outside what the pool issues; allowed: "
                f"1..{self.maximum_lifetime.days} days (the pool's maximum lifetime)"
            )

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs, timeout=CALL_TIMEOUT_SECONDS)
        except _THROTTLED as error:
            raise IssuerThrottled(f"CA Service throttled a call ({_status(error)})") from None
        except gexc.GoogleAPICallError as error:
            raise IssuerRefused(
                f"CA Service refused a call ({_status(error)}: {_first_line(error)})"
            ) from None


def _verified_public_key(csr_pem: str, thing: str) -> bytes:
    """The CSR's public key (PEM) once the shared rules passed and its signature verifies."""
    if len(thing) > MAX_COMMON_NAME or not thing:
        raise IssuerRefused(
            f"thing: {thing[:80]!r} has {len(thing)} characters; allowed: 1..{MAX_COMMON_NAME} "
            "(X.509's limit for the common name it becomes)"
        )
    try:
        screen_csr(csr_pem, thing)
    except CsrRefusal as refusal:
        raise IssuerRefused(refusal.reason) from refusal
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        # Config-based issuance: CA Service never sees the CSR, so proof of possession is ours.
        verified = csr.is_signature_valid
    except ValueError:  # the shared reader is lighter than a full X.509 parser
        raise IssuerRefused("csr: does not parse as PKCS#10; allowed: one PEM CSR") from None
    if not verified:
        raise IssuerRefused(
            "csr: its signature does not verify; allowed: a CSR signed with its own key"
        )
    return csr.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _checked(issued: Any, thing: str, public_key_pem: bytes) -> IssuedCertificate:
    """The answer as an IssuedCertificate, after checking it is this thing's and this key's."""
    leaf = x509.load_pem_x509_certificate(issued.pem_certificate.encode())
    names = [str(n.value) for n in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    key = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if names != [thing] or key != public_key_pem:
        raise IssuerRefused(
            f"{thing}: CA Service answered with a certificate for another subject or key"
        )
    return IssuedCertificate(
        name=str(issued.name),
        pem=str(issued.pem_certificate),
        chain_pem=tuple(str(pem) for pem in issued.pem_certificate_chain),
        serial_hex=format(leaf.serial_number, "x"),
        not_after=leaf.not_valid_after_utc.astimezone(UTC),
    )


def _status(error: Any) -> str:
    code = getattr(error, "grpc_status_code", None)
    return str(code.name) if code is not None else type(error).__name__


def _first_line(error: Any) -> str:
    text = str(getattr(error, "message", "") or error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
