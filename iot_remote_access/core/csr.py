"""Light checks of a PKCS#10 certificate signing request, standard library only.

The signer Lambda may import only the standard library, boto3 and Powertools, so
it cannot use ``cryptography``. It does not need to: ACM Private CA parses the
CSR again and verifies its signature (``MalformedCSRException`` otherwise), and
the subject is never taken from the CSR (the API-passthrough template forces the
common name to the thing name). What must be decided *before* paying for an
issuance is read here with a small DER reader: that the text is one CSR, which
key it carries (type and size) and which name it asks for (to reject, and
report, a device asking for another thing's name).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_CSR_BYTES = 16 * 1024

_OID_COMMON_NAME = "2.5.4.3"
_OID_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID, not a password
_OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_OID_BASIC_CONSTRAINTS = "2.5.29.19"
_MAX_OID_ARC_BITS = 128
#: Extensions a device's CSR may request: none of them names anything, and the
#: template overrides them anyway. subjectAltName in particular is refused.
ALLOWED_EXTENSIONS = {
    "2.5.29.14": "subjectKeyIdentifier",
    "2.5.29.15": "keyUsage",
    _OID_BASIC_CONSTRAINTS: "basicConstraints",
    "2.5.29.37": "extendedKeyUsage",
}
_EXTENSION_NAMES = {
    **ALLOWED_EXTENSIONS,
    "2.5.29.17": "subjectAltName",
    "2.5.29.18": "issuerAltName",
    "2.5.29.30": "nameConstraints",
    "2.5.29.9": "subjectDirectoryAttributes",
}
ALLOWED_ATTRIBUTES = (
    "no attributes, or a challenge password and the extensions "
    f"{', '.join(ALLOWED_EXTENSIONS.values())} (basicConstraints without cA)"
)
_OID_RSA = "1.2.840.113549.1.1.1"
_OID_EC = "1.2.840.10045.2.1"
#: EC curves a device key may use, by OID -> name (what ACM Private CA signs for IoT).
EC_CURVES = {"1.2.840.10045.3.1.7": "P-256", "1.3.132.0.34": "P-384"}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
ALLOWED_KEYS = f"RSA {MIN_RSA_BITS}..{MAX_RSA_BITS} bits or EC {'/'.join(EC_CURVES.values())}"
#: RSA public exponents below this (3, and even ones) are refused: NIST SP 800-56B and
#: every public CA ask for at least 65537, and e = 3 has known signature-forgery pitfalls.
MIN_RSA_EXPONENT = 65537
#: Signature algorithms a CSR may be signed with, by OID. MD5 and SHA-1 are refused: a
#: CA that signs a CSR proven with a collidable hash gives no proof of possession.
SIGNATURE_ALGORITHMS = {
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
}
ALLOWED_SIGNATURES = "RSA (PKCS#1 v1.5 or PSS) or ECDSA with SHA-256, SHA-384 or SHA-512"

#: PEM armour, found with plain literal searches: a pattern spanning the body with
#: ``\s*`` and a lazy ``[...\s]+?`` next to each other backtracks in cubic time on a
#: body of whitespace (16 KiB of spaces held the signer for minutes).
_CSR_BEGIN = re.compile(r"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----")
_CSR_END = re.compile(r"-----END (?:NEW )?CERTIFICATE REQUEST-----")
_CERT_BEGIN = re.compile(r"-----BEGIN CERTIFICATE-----")
_CERT_END = re.compile(r"-----END CERTIFICATE-----")
#: Inside the armour: base64 and ASCII whitespace only.
_PEM_BODY_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n\v\f"
)


class CsrError(ValueError):
    """A CSR that cannot be used; the message names the problem and what is allowed."""


@dataclass(frozen=True)
class CsrInfo:
    key_type: str  # "RSA" or "EC"
    key_size: int  # RSA modulus bits, or the curve's bits
    curve: str | None
    common_names: tuple[str, ...]
    der: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER: recognizes a duplicate CSR (MQTT QoS 1 may redeliver)."""
        return hashlib.sha256(self.der).hexdigest()

    def pem(self) -> str:
        body = base64.b64encode(self.der).decode("ascii")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join(
            ["-----BEGIN CERTIFICATE REQUEST-----", *lines, "-----END CERTIFICATE REQUEST-----", ""]
        )


def inspect_csr(pem: object) -> CsrInfo:
    """Parse a PEM CSR and check its key; raise :class:`CsrError` otherwise."""
    if not isinstance(pem, str) or not pem.strip():
        raise CsrError("csr: missing or not a string; allowed: one PEM 'CERTIFICATE REQUEST'")
    if len(pem) > MAX_CSR_BYTES:
        raise CsrError(f"csr: {len(pem)} characters; allowed: at most {MAX_CSR_BYTES}")
    try:
        der = _pem_der(pem, _CSR_BEGIN, _CSR_END, "CERTIFICATE REQUEST")
    except ValueError as error:
        raise CsrError(f"csr: {error}") from None
    try:
        return _parse(der)
    except CsrError:
        raise
    except (_DerError, IndexError, ValueError) as error:
        reason = str(error) if isinstance(error, _DerError) else "malformed structure"
        raise CsrError(f"csr: does not parse as PKCS#10 ({reason})") from None


def _pem_der(
    text: str, begin: re.Pattern[str], end: re.Pattern[str], label: str, *, first: bool = False
) -> bytes:
    """The DER inside the PEM block of ``label``, in time linear in ``len(text)``.

    Exactly one block unless ``first``. Only literal searches and a character set
    test: nothing here can backtrack. Raises ``ValueError`` saying what is wrong.
    """
    allowed = f"allowed: exactly one PEM {label!r} block"
    starts = [match.end() for match in begin.finditer(text)]
    if not starts or (len(starts) > 1 and not first):
        raise ValueError(f"{len(starts) or 'no'} PEM {label!r} blocks; {allowed}")
    stop = end.search(text, starts[0])
    if stop is None:
        raise ValueError(f"the PEM {label!r} block has no END line; {allowed}")
    body = text[starts[0] : stop.start()]
    if not _PEM_BODY_CHARACTERS.issuperset(body):
        raise ValueError(f"the PEM body is not base64; {allowed}")
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the PEM body is not base64; {allowed}") from None


class _DerError(Exception):
    pass


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise _DerError("truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise _DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise _DerError("truncated")
    return tag, pos, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    pos = start
    while pos < end:
        tag, content, stop = _tlv(data, pos)
        if stop > end:
            raise _DerError("element overruns its parent")
        items.append((tag, content, stop))
        pos = stop
    return items


def _expect(item: tuple[int, int, int], tag: int, what: str) -> tuple[int, int]:
    if item[0] != tag:
        raise _DerError(f"expected {what}")
    return item[1], item[2]


def _oid(raw: bytes) -> str:
    if not raw:
        raise _DerError("empty OID")
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for byte in raw[1:]:
        if value >> _MAX_OID_ARC_BITS:  # a 12 KiB arc would cost quadratic time to print
            raise _DerError("OID arc too large")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _parse(der: bytes) -> CsrInfo:
    tag, start, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise _DerError("not a single DER SEQUENCE")
    outer = _children(der, start, end)
    if len(outer) != 3:
        raise _DerError("expected request info, signature algorithm and signature")
    info = _children(der, *_expect(outer[0], 0x30, "request info"))
    if len(info) < 3:
        raise _DerError("request info too short")
    version_start, version_end = _expect(info[0], 0x02, "version")
    if der[version_start:version_end] != b"\x00":
        raise _DerError("version is not 1")
    common_names = _common_names(der, *_expect(info[1], 0x30, "subject"))
    key_type, key_size, curve = _public_key(der, *_expect(info[2], 0x30, "public key info"))
    if len(info) > 4 or (len(info) == 4 and info[3][0] != 0xA0):
        raise _DerError("unexpected element after the public key")
    if len(info) == 4:
        _check_attributes(der, info[3][1], info[3][2])
    _check_signature_algorithm(der, *_expect(outer[1], 0x30, "signature algorithm"))
    return CsrInfo(key_type, key_size, curve, common_names, der)


def _check_signature_algorithm(der: bytes, start: int, end: int) -> None:
    parts = _children(der, start, end)
    if not parts:
        raise _DerError("signature algorithm")
    oid = _oid(der[slice(*_expect(parts[0], 0x06, "signature algorithm OID"))])
    if oid not in SIGNATURE_ALGORITHMS:
        raise CsrError(f"csr: signed with {oid}; allowed: {ALLOWED_SIGNATURES}")


def _check_attributes(der: bytes, start: int, end: int) -> None:
    """Refuse every requested attribute but a challenge password and harmless extensions.

    ACM Private CA copies the CSR's subjectAltName into the certificate even with
    the API-passthrough template (which overrides only the subject): a SAN, or any
    extension that names something, would let a device claim another identity.
    """
    for attribute in _children(der, start, end):
        parts = _children(der, *_expect(attribute, 0x30, "attribute"))
        if len(parts) != 2:
            raise _DerError("attribute")
        oid = _oid(der[slice(*_expect(parts[0], 0x06, "attribute type"))])
        values = _children(der, *_expect(parts[1], 0x31, "attribute values"))
        if oid == _OID_CHALLENGE_PASSWORD:
            continue
        if oid != _OID_EXTENSION_REQUEST:
            raise CsrError(f"csr: requests the attribute {oid}; allowed: {ALLOWED_ATTRIBUTES}")
        for extensions in values:
            for extension in _children(der, *_expect(extensions, 0x30, "extensions")):
                _check_extension(der, extension)


def _check_extension(der: bytes, extension: tuple[int, int, int]) -> None:
    parts = _children(der, *_expect(extension, 0x30, "extension"))
    if len(parts) not in (2, 3):
        raise _DerError("extension")
    oid = _oid(der[slice(*_expect(parts[0], 0x06, "extension id"))])
    name = _EXTENSION_NAMES.get(oid, oid)
    if oid not in ALLOWED_EXTENSIONS:
        raise CsrError(f"csr: requests the extension {name}; allowed: {ALLOWED_ATTRIBUTES}")
    value_start, value_end = _expect(parts[-1], 0x04, "extension value")
    if oid == _OID_BASIC_CONSTRAINTS:
        _, content, stop = _tlv(der, value_start)
        fields = _children(der, content, stop)
        if fields and fields[0][0] == 0x01 and der[fields[0][1] : fields[0][2]] != b"\x00":
            raise CsrError(
                f"csr: asks to be a CA (basicConstraints cA); allowed: {ALLOWED_ATTRIBUTES}"
            )
        if stop != value_end:
            raise _DerError("basicConstraints")


def _common_names(der: bytes, start: int, end: int) -> tuple[str, ...]:
    names = []
    for rdn in _children(der, start, end):
        for attribute in _children(der, *_expect(rdn, 0x31, "relative distinguished name")):
            parts = _children(der, *_expect(attribute, 0x30, "attribute"))
            if len(parts) != 2:
                raise _DerError("attribute")
            if _oid(der[slice(*_expect(parts[0], 0x06, "attribute type"))]) == _OID_COMMON_NAME:
                names.append(der[parts[1][1] : parts[1][2]].decode("utf-8", "replace"))
    return tuple(names)


def _public_key(der: bytes, start: int, end: int) -> tuple[str, int, str | None]:
    algorithm, key = _children(der, start, end)[:2]
    algorithm_parts = _children(der, *_expect(algorithm, 0x30, "algorithm"))
    algorithm_oid = _oid(der[slice(*_expect(algorithm_parts[0], 0x06, "algorithm OID"))])
    key_start, key_end = _expect(key, 0x03, "public key BIT STRING")
    bits = der[key_start + 1 : key_end]  # first byte: unused bits
    if algorithm_oid == _OID_RSA:
        _, seq_start, seq_end = _tlv(bits, 0)
        modulus, exponent = _children(bits, seq_start, seq_end)[:2]
        raw = bits[modulus[1] : modulus[2]].lstrip(b"\x00")
        size = int.from_bytes(raw, "big").bit_length()
        if not MIN_RSA_BITS <= size <= MAX_RSA_BITS:
            raise CsrError(f"csr: RSA key of {size} bits; allowed: {ALLOWED_KEYS}")
        raw_exponent = bits[exponent[1] : exponent[2]]
        if len(raw_exponent) > 8:  # 2**64: far beyond any exponent in use, and bounded work
            raise CsrError(
                f"csr: RSA public exponent of {len(raw_exponent)} bytes; "
                f"allowed: odd, >= {MIN_RSA_EXPONENT}"
            )
        value = int.from_bytes(raw_exponent, "big", signed=True)
        if value < MIN_RSA_EXPONENT or value % 2 == 0:
            raise CsrError(f"csr: RSA public exponent {value}; allowed: odd, >= {MIN_RSA_EXPONENT}")
        return "RSA", size, None
    if algorithm_oid == _OID_EC:
        if len(algorithm_parts) < 2 or algorithm_parts[1][0] != 0x06:
            raise CsrError(f"csr: EC key without a named curve; allowed: {ALLOWED_KEYS}")
        curve_oid = _oid(der[algorithm_parts[1][1] : algorithm_parts[1][2]])
        if curve_oid not in EC_CURVES:
            raise CsrError(f"csr: EC key on curve {curve_oid}; allowed: {ALLOWED_KEYS}")
        curve = EC_CURVES[curve_oid]
        return "EC", int(curve[2:]), curve
    raise CsrError(f"csr: key algorithm {algorithm_oid}; allowed: {ALLOWED_KEYS}")


@dataclass(frozen=True)
class CertificateFacts:
    """What the inventory records of an issued certificate."""

    serial: str  # colon-separated hex, the form ACM Private CA's RevokeCertificate takes
    not_after: datetime


def certificate_facts(pem: str) -> CertificateFacts:
    """Serial number and not-after of a PEM certificate (the CA's, so trusted input)."""
    try:
        der = _pem_der(pem, _CERT_BEGIN, _CERT_END, "CERTIFICATE", first=True)
    except ValueError as error:
        raise ValueError(f"certificate: {error}") from None
    try:
        _, start, end = _tlv(der, 0)
        tbs = _children(der, *_expect(_children(der, start, end)[0], 0x30, "tbsCertificate"))
        if tbs[0][0] == 0xA0:  # explicit version
            tbs = tbs[1:]
        serial_raw = der[tbs[0][1] : tbs[0][2]].lstrip(b"\x00") or b"\x00"
        validity = _children(der, *_expect(tbs[3], 0x30, "validity"))
        not_after = _asn1_time(validity[1][0], der[validity[1][1] : validity[1][2]])
    except (_DerError, IndexError, ValueError) as error:
        raise ValueError(f"certificate: does not parse as X.509 ({error})") from None
    return CertificateFacts(":".join(f"{b:02x}" for b in serial_raw), not_after)


def _asn1_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; years 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:
        raise _DerError("validity time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
