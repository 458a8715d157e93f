"""Google Cloud Certificate Authority Service: its naming rules and the quotas we plan with.

Standard library only: the settings, the CA Service desired state, the issuer and the
rotation planner read the same figures, so they cannot disagree.
"""

from __future__ import annotations

import re

from iot_remote_access.core.gcp_rules import GcpRuleError

#: CA pool and CA ids: what ``CreateCaPool``/``CreateCertificateAuthority`` accept.
RESOURCE_ID_RULE = "1-63 of a-z, A-Z, 0-9, '-' and '_'"
_RESOURCE_ID_RE = re.compile(r"\A[a-zA-Z0-9_-]{1,63}\Z")
#: CA Service locations are regions (``europe-west1``), never multi-regions or zones.
LOCATION_RULE = "a Google Cloud region such as 'europe-west1'"
_LOCATION_RE = re.compile(r"\A[a-z]+(?:-[a-z]+)+[0-9]{1,2}\Z")

#: CreateCertificate per CA and second, by CA pool tier (docs: "Quotas and limits",
#: https://cloud.google.com/certificate-authority-service/quotas). DevOps is listed for
#: the record only: that tier keeps no certificate resource, so it cannot revoke.
CREATE_CERTIFICATE_QPS = {"ENTERPRISE": 7, "DEVOPS": 25}
#: CreateCertificate per location and project and second, whatever the number of CAs.
CREATE_CERTIFICATE_QPS_PER_LOCATION = 100
#: X.509's upper bound for a common name (RFC 5280 ub-common-name): a longer thing name
#: cannot be a certificate's subject.
MAX_COMMON_NAME = 64


def validate_resource_id(value: object, *, field_name: str) -> str:
    """A CA pool, CA or certificate id, or raise naming the field."""
    if not isinstance(value, str) or not _RESOURCE_ID_RE.match(value):
        raise GcpRuleError(
            field_name, f"{str(value)[:80]!r} is not a CA Service id; allowed: {RESOURCE_ID_RULE}"
        )
    return value


def validate_location(value: object, *, field_name: str) -> str:
    """A CA Service location (a region), or raise naming the field."""
    if not isinstance(value, str) or not _LOCATION_RE.match(value):
        raise GcpRuleError(
            field_name, f"{str(value)[:80]!r} is not a region; allowed: {LOCATION_RULE}"
        )
    return value


#: The role the issuer's identity needs on the pool: ``privateca.certificates.create``
#: (issue), ``.get`` (read back a retried issuance) and ``.update`` (revoke).
ISSUER_ROLE = "roles/privateca.certificateManager"
MEMBER_RULE = (
    "'serviceAccount:EMAIL', 'group:EMAIL', 'user:EMAIL', 'principal:...', 'principalSet:...'"
)
_MEMBER_RE = re.compile(r"\A(serviceAccount|group|user|principal|principalSet):\S{1,300}\Z")


def validate_iam_member(value: object, *, field_name: str) -> str:
    """One IAM member (never everyone), or raise naming the field."""
    if not isinstance(value, str) or not _MEMBER_RE.match(value):
        raise GcpRuleError(
            field_name, f"{str(value)[:80]!r} is not an IAM member; allowed: {MEMBER_RULE}"
        )
    return value


def pool_name(project: str, location: str, pool: str) -> str:
    """The CA pool's resource name."""
    return f"projects/{project}/locations/{location}/caPools/{pool}"
