"""Where a device keeps its private keys: a small interface, and a file store built in.

The rotation module never handles a private key itself; it asks the key store to
generate one for a *pair* (a certificate and its key, named by a short id), to sign
a CSR with it, to hand it to TLS and to delete it. A file store is built in; a
hardware token (PKCS#11, a TPM) plugs in through the same interface
(docs/rotation-device.md shows a sketch).
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from iot_remote_access.device.durable import atomic_write, fsync_directory, make_directory

#: Key types the signers accept (core/csr.py ALLOWED_KEYS).
KEY_TYPES = ("EC-P256", "EC-P384", "RSA-2048", "RSA-3072", "RSA-4096")
_PAIR_ID = re.compile(r"[a-z0-9-]{1,40}")


class KeyStoreError(RuntimeError):
    """A key that is missing or cannot be used; the message never contains key material."""


class KeyStore(Protocol):
    """The operations rotation needs on private keys, one key per pair id."""

    def generate(self, pair: str) -> None:
        """Create a new private key for ``pair``, durably (replacing a half-made one)."""

    def has_key(self, pair: str) -> bool: ...

    def public_key_der(self, pair: str) -> bytes:
        """The SubjectPublicKeyInfo (DER) of ``pair``'s key."""

    def certificate_request(self, pair: str, common_name: str) -> bytes:
        """A PEM PKCS#10 CSR for ``common_name``, signed with ``pair``'s key."""

    def load_into(self, pair: str, context: ssl.SSLContext, certificate_file: Path) -> None:
        """Make ``context`` present ``certificate_file`` with ``pair``'s key."""

    def delete(self, pair: str) -> None:
        """Destroy ``pair``'s key durably; nothing if it does not exist."""


def check_pair_id(pair: str) -> str:
    if not _PAIR_ID.fullmatch(pair):
        raise KeyStoreError(f"pair: {pair[:40]!r} is not a pair id; allowed: [a-z0-9-]{{1,40}}")
    return pair


class FileKeyStore:
    """Private keys as PKCS#8 PEM files, mode 0600, in a 0700 directory.

    :param directory: where the keys live (created 0700).
    :param key_type: one of ``KEY_TYPES``. Default: ``EC-P256``.
    """

    def __init__(self, directory: Path, *, key_type: str = "EC-P256") -> None:
        if key_type not in KEY_TYPES:
            raise KeyStoreError(f"key_type: {key_type[:20]!r}; allowed: {', '.join(KEY_TYPES)}")
        self.directory = directory
        self.key_type = key_type

    def _path(self, pair: str) -> Path:
        return self.directory / f"{check_pair_id(pair)}.key"

    def generate(self, pair: str) -> None:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if self.key_type.startswith("EC-"):
            curve = ec.SECP256R1() if self.key_type == "EC-P256" else ec.SECP384R1()
            key = ec.generate_private_key(curve)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=int(self.key_type[4:]))
        self._write(pair, key)

    def import_key(self, pair: str, private_key_pem: bytes) -> None:
        """Adopt a key provisioned at the factory (PEM, unencrypted) as ``pair``'s key."""
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyStoreError(
                "private key: not an EC or RSA key; allowed: " + ", ".join(KEY_TYPES)
            )
        self._write(pair, key)

    def _write(self, pair: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
        make_directory(self.directory)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(self._path(pair), pem, mode=0o600)

    def _load(self, pair: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        path = self._path(pair)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            raise KeyStoreError(f"key of pair {pair!r}: missing or unreadable ({path})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyStoreError(f"key of pair {pair!r}: not an EC or RSA key")
        return key

    def has_key(self, pair: str) -> bool:
        return self._path(pair).is_file()

    def public_key_der(self, pair: str) -> bytes:
        return (
            self._load(pair)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def certificate_request(self, pair: str, common_name: str) -> bytes:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(subject)
            .sign(self._load(pair), hashes.SHA256())
        )
        return request.public_bytes(serialization.Encoding.PEM)

    def load_into(self, pair: str, context: ssl.SSLContext, certificate_file: Path) -> None:
        context.load_cert_chain(certfile=str(certificate_file), keyfile=str(self._path(pair)))

    def delete(self, pair: str) -> None:
        path = self._path(pair)
        if path.exists():
            path.unlink()
            fsync_directory(path.parent)
