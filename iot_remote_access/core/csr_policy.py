"""One decision for every signer (AWS today; the GCP and Azure rotation services next):
may this CSR, sent by this thing, be signed now?

Standard library only, so the AWS signer Lambda and any other cloud's service run
the same rules and refuse the same way (the HTTP-like status and the message):

- 400: unparseable, weak key or signature hash, any subjectAltName or extension
  that names something, oversized (``core/csr.py``);
- 403: a common name other than the sender's thing name;
- 404: a thing the inventory does not know;
- 409: no rotation pending, or another CSR being signed for it;
- a duplicate (the same CSR again, MQTT QoS 1 redelivery) once issued: answered
  with the same certificate, never a second one.

How a cloud proves *who sent* the CSR (AWS: the certificate id the rule passes as
``principal()``) stays with that cloud's signer.
"""

from __future__ import annotations

from enum import StrEnum

from iot_remote_access.core.csr import CsrError, CsrInfo, inspect_csr
from iot_remote_access.core.rotation_plan import RotationState

#: The refusal of a CSR that is being signed right now (a re-send racing the first):
#: the certificate is on its way, so a device keeps waiting instead of giving up.
ALREADY_BEING_SIGNED = "csr: this CSR is already being signed"


class CsrRefusal(ValueError):
    """The CSR is refused: ``status`` (HTTP-like) and ``reason`` (names field and value)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Verdict(StrEnum):
    ISSUE = "issue"  # sign it
    DUPLICATE = "duplicate"  # already signed: send the same certificate again


def screen_csr(pem: object, thing: str) -> CsrInfo:
    """The parsed CSR if it is fit to sign for ``thing``; raise :class:`CsrRefusal`."""
    try:
        csr = inspect_csr(pem)
    except CsrError as error:
        raise CsrRefusal(400, str(error)) from None
    foreign = [name for name in csr.common_names if name != thing]
    if foreign:
        raise CsrRefusal(
            403,
            f"csr: names {foreign[0][:140]!r} but was sent by {thing!r}; "
            "allowed: the sender's own thing name or no common name",
        )
    return csr


def rotation_verdict(
    thing: str, csr: CsrInfo, *, state: str | None, fingerprint_on_record: str | None
) -> Verdict:
    """Whether the inventory's rotation state lets ``csr`` be signed now.

    :param state: the thing's ``RotationState`` in the inventory; None: not in it.
    :param fingerprint_on_record: the SHA-256 of the CSR being or last signed.
    """
    if state is None:
        raise CsrRefusal(404, f"thing: {thing!r} is not in the certificate inventory")
    same_csr = fingerprint_on_record == csr.fingerprint
    if state == RotationState.ISSUED and same_csr:
        return Verdict.DUPLICATE
    if state == RotationState.ISSUING and same_csr:
        raise CsrRefusal(409, ALREADY_BEING_SIGNED)
    if state != RotationState.REQUESTED:
        raise CsrRefusal(409, f"thing: {thing!r} has no rotation pending (state {state})")
    return Verdict.ISSUE
