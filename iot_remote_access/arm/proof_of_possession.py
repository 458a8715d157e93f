"""Proof of possession of the fleet CA's private key, as IoT Hub and DPS ask for it.

Azure hands out a verification code; the operator proves they hold the CA key
by signing a short-lived certificate whose subject CN is that code. The key is
read from a file, kept in memory only for the signature, and never logged,
stored or put into an error message (:class:`CaKey` hides it from ``repr``).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from iot_remote_access.arm.errors import ArmInputError

CaPrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class CaKey:
    """The CA's private key, opaque to ``repr``/``str`` so it cannot leak into logs."""

    def __init__(self, key: CaPrivateKey, source: str) -> None:
        self._key = key
        self.source = source

    def __repr__(self) -> str:
        return f"CaKey(source={self.source!r})"

    __str__ = __repr__

    def public_key_der(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """``builder`` signed with this key (SHA-256; Ed25519/Ed448 sign without a hash)."""
        return builder.sign(self._key, _hash_for(self._key))

    def sign_verification_certificate(self, ca: x509.Certificate, verification_code: str) -> str:
        """PEM of a one-day certificate with CN ``verification_code``, issued by ``ca``."""
        if not verification_code or len(verification_code) > 64:
            raise ArmInputError(
                f"verification code {verification_code!r} from Azure cannot be a certificate CN; "
                "allowed: 1 to 64 characters"
            )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, verification_code)]))
            .issuer_name(ca.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        certificate = self.sign(builder)
        return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _hash_for(key: CaPrivateKey) -> hashes.SHA256 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def load_ca_certificate(path: Path, *, field: str) -> x509.Certificate:
    """The CA certificate in ``path`` (PEM), or ArmInputError naming ``field`` and the file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArmInputError(f"{field}: cannot read {str(path)!r} ({error.strerror})") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ArmInputError(
            f"{field}: {str(path)!r} is not a PEM certificate; allowed: the CA certificate "
            "('-----BEGIN CERTIFICATE-----')"
        ) from None
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ArmInputError(
            f"{field}: {str(path)!r} is not a CA certificate (basicConstraints CA:TRUE missing); "
            "allowed: the certificate of the CA that signs device certificates"
        )
    return certificate


def load_ca_key(
    path: Path, *, certificate: x509.Certificate, password: bytes | None = None
) -> CaKey:
    """The CA's private key from a PEM file; it must belong to ``certificate``.

    Errors name the file and the problem, never the key's content.
    """
    field = "--ca-key-file"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArmInputError(f"{field}: cannot read {str(path)!r} ({error.strerror})") from None
    return ca_key_from_pem(
        data, field=field, source=str(path), certificate=certificate, password=password
    )


def ca_key_from_pem(
    data: bytes,
    *,
    field: str,
    source: str,
    certificate: x509.Certificate,
    password: bytes | None = None,
) -> CaKey:
    """A CaKey from PEM bytes read from ``source`` (a file, a Key Vault secret)."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise ArmInputError(
            f"{field}: {source!r} is encrypted; set IOT_REMOTE_ACCESS_CA_KEY_PASSWORD "
            "to its password"
            if password is None
            else f"{field}: {source!r} is not encrypted; unset IOT_REMOTE_ACCESS_CA_KEY_PASSWORD"
        ) from None
    except ValueError:
        raise ArmInputError(
            f"{field}: {source!r} is not a PEM private key (or the password is wrong); "
            "allowed: the CA's RSA, EC or Ed25519 key in PEM"
        ) from None
    return _checked(key, field=field, source=source, certificate=certificate)


def _checked(key: object, *, field: str, source: str, certificate: x509.Certificate) -> CaKey:
    if not isinstance(key, _KEY_TYPES):
        raise ArmInputError(
            f"{field}: {source!r} holds a {type(key).__name__}; allowed: RSA, EC, Ed25519"
        )
    ca_key = CaKey(key, source)
    expected = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ca_key.public_key_der() != expected:
        raise ArmInputError(
            f"{field}: the key in {source!r} does not belong to the CA certificate "
            f"{certificate.subject.rfc4514_string()!r}; allowed: that CA's private key"
        )
    return ca_key


def ca_key_from_pkcs12(
    data: bytes, *, field: str, source: str, certificate: x509.Certificate
) -> CaKey:
    """A CaKey from a PKCS#12 bundle (how Key Vault exports a certificate's key)."""
    try:
        key, _, _ = pkcs12.load_key_and_certificates(data, None)
    except ValueError:
        raise ArmInputError(
            f"{field}: {source!r} is not a PKCS#12 bundle without a password; "
            "allowed: a PEM key, or a Key Vault certificate's secret"
        ) from None
    return _checked(key, field=field, source=source, certificate=certificate)


def thumbprint(certificate: x509.Certificate) -> str:
    """SHA-1 thumbprint in upper-case hex, as IoT Hub and DPS report it."""
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Azure's identifier, not a signature


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)
