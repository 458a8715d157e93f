"""What a rotation service needs from a certificate authority, whatever the cloud.

The GCP rotation service issues through Google Cloud Certificate Authority Service
and Azure's through the enrollment group's CA; both are driven through this one
interface, so the rotation protocol (screen the CSR with ``core/csr_policy``, issue,
send, wait for the confirmation, revoke the old certificate) is written once per
service and tested against any issuer.

Standard library only: the protocol lives in ``core`` with the planner and the CSR rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate an issuer made for one thing (no private key: it stays on the device)."""

    #: The issuer's own name for it (CA Service: the certificate's resource name);
    #: what :meth:`CertificateIssuer.revoke` takes.
    name: str
    #: The leaf certificate, PEM.
    pem: str
    #: The issuing chain, leaf's issuer first, PEM each.
    chain_pem: tuple[str, ...]
    #: The serial number, lower-case hex without separators.
    serial_hex: str
    not_after: datetime


class IssuerThrottled(RuntimeError):
    """The issuer refused for now (quota, rate limit): retry later, nothing was issued."""


class IssuerRefused(RuntimeError):
    """The issuer refused this request for good (its policy, a bad request)."""


class CertificateIssuer(Protocol):
    """Issues and revokes device certificates."""

    def issue(
        self, thing: str, csr_pem: str, lifetime: timedelta, request_id: str
    ) -> IssuedCertificate:
        """Issue a certificate for ``thing`` from ``csr_pem`` valid for ``lifetime``.

        The subject names ``thing`` whatever the CSR says; ``request_id`` makes a retry
        idempotent (the same id returns the same certificate, never a second one).
        Raises :class:`IssuerThrottled` or :class:`IssuerRefused`.
        """
        ...

    def revoke(self, name: str) -> None:
        """Revoke the certificate named ``name``; revoking it twice is not an error."""
        ...
