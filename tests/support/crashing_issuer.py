"""A rotation service issuer that dies right after CA Service issued (a test's fault).

``ROTATION_ISSUER=tests.support.crashing_issuer``: the real ``CaServiceIssuer`` from
``ROTATION_CA_*`` (here: against the CA Service STAND-IN); after its first successful
issuance the process exits at once (code 70), before the certificate is recorded or
sent: the moment a replica dying mid-rotation leaves the most behind.
"""

from __future__ import annotations

import os
from datetime import timedelta

from iot_remote_access.core.certificate_issuer import IssuedCertificate
from iot_remote_access.gcp_ca import rotation_issuer


class CrashingIssuer:
    def __init__(self) -> None:
        self.issuer = rotation_issuer.from_environment()

    def issue(
        self, thing: str, csr_pem: str, lifetime: timedelta, request_id: str
    ) -> IssuedCertificate:
        self.issuer.issue(thing, csr_pem, lifetime, request_id)
        os._exit(70)

    def revoke(self, name: str) -> None:
        self.issuer.revoke(name)


def from_environment() -> CrashingIssuer:
    return CrashingIssuer()
