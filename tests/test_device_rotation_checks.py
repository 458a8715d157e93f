"""The device's own checks, without MQTT: what it installs, how it stores keys and state."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iot_remote_access.core.csr import inspect_csr
from iot_remote_access.device.certificate_check import (
    MAX_CERTIFICATE_BYTES,
    CertificateRefused,
    check_issued,
)
from iot_remote_access.device.durable import atomic_write
from iot_remote_access.device.keystore import FileKeyStore, KeyStoreError
from iot_remote_access.device.rotation_state import (
    CredentialStore,
    Phase,
    Progress,
    StateError,
)
from tests.support.paths import REPO_ROOT

NOW = dt.datetime.now(dt.UTC)
THING = "sensor-1"
Key = ec.EllipticCurvePrivateKey


def _name(cn: str, *extra: x509.NameAttribute) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), *extra])


def _certificate(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer: tuple[x509.Name, Key],
    *,
    ca: bool = False,
    days: tuple[int, int] = (-1, 30),
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0])
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _spki(key: Key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Pki:
    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _certificate(
            _name("root"), self.root_key.public_key(), (_name("root"), self.root_key), ca=True
        )
        self.device_key = ec.generate_private_key(ec.SECP256R1())

    def leaf(self, **kwargs: object) -> x509.Certificate:
        subject = kwargs.pop("subject", _name(THING))
        return _certificate(
            subject,  # type: ignore[arg-type]
            self.device_key.public_key(),
            (self.root.subject, self.root_key),
            **kwargs,  # type: ignore[arg-type]
        )

    def check(self, pem: object) -> x509.Certificate:
        return check_issued(
            pem,
            thing=THING,
            expected_cas=[self.root],
            public_key_der=_spki(self.device_key),
            now=NOW,
        )


def test_a_leaf_from_the_ca_naming_this_thing_with_the_new_key_is_accepted() -> None:
    pki = Pki()
    leaf = pki.leaf()
    assert pki.check(_pem(leaf)) == leaf


def test_a_chain_through_an_intermediate_is_followed_and_each_link_checked() -> None:
    pki = Pki()
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _certificate(
        _name("issuing"), middle_key.public_key(), (pki.root.subject, pki.root_key), ca=True
    )
    leaf = _certificate(_name(THING), pki.device_key.public_key(), (middle.subject, middle_key))
    assert pki.check(_pem(leaf, middle)) == leaf
    with pytest.raises(CertificateRefused, match="does not chain to the expected CA"):
        pki.check(_pem(leaf))  # the intermediate is missing
    not_a_ca = _certificate(
        _name("issuing"), middle_key.public_key(), (pki.root.subject, pki.root_key), ca=False
    )
    with pytest.raises(CertificateRefused, match="does not chain to the expected CA"):
        pki.check(_pem(leaf, not_a_ca))  # an end-entity cannot issue
    # Same issuer name, another key: the signature decides, not the name.
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    forged = _certificate(
        _name(THING), pki.device_key.public_key(), (pki.root.subject, impostor_key)
    )
    with pytest.raises(CertificateRefused, match="does not chain to the expected CA"):
        pki.check(_pem(forged))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": _name("sensor-2")}, r"subject 'CN=sensor-2'; allowed: exactly CN=sensor-1"),
        (
            {"subject": _name(THING, x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"))},
            "allowed: exactly CN=sensor-1 and nothing else",
        ),
        (
            {"san": x509.SubjectAlternativeName([x509.DNSName(THING)])},
            "has a subjectAltName; allowed: no other names",
        ),
        ({"ca": True}, "is a CA certificate"),
        ({"days": (-30, -1)}, "certificate: expired"),
        ({"days": (2, 30)}, "certificate: not valid before"),
    ],
)
def test_wrong_names_roles_or_dates_are_refused(change: dict[str, object], message: str) -> None:
    pki = Pki()
    with pytest.raises(CertificateRefused, match=message):
        pki.check(_pem(pki.leaf(**change)))


def test_a_certificate_for_another_key_is_refused() -> None:
    pki = Pki()
    other = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(_name(THING), other.public_key(), (pki.root.subject, pki.root_key))
    with pytest.raises(CertificateRefused, match="public key is not the key generated"):
        pki.check(_pem(leaf))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "certificatePem: missing or not a string"),
        (42, "certificatePem: missing or not a string"),
        ("   ", "certificatePem: missing or not a string"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
        ("x" * (MAX_CERTIFICATE_BYTES + 1), f"allowed: at most {MAX_CERTIFICATE_BYTES}"),
        ("caf\u00e9", "does not parse as PEM"),
    ],
)
def test_garbage_is_refused_with_a_reason(payload: object, message: str) -> None:
    with pytest.raises(CertificateRefused, match=message):
        Pki().check(payload)


def test_a_long_chain_is_refused_unread() -> None:
    pki = Pki()
    leaf = pki.leaf()
    with pytest.raises(CertificateRefused, match="5 certificates; allowed: at most 4"):
        pki.check(_pem(leaf, *[pki.root] * 4))


# -- key store ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["EC-P256", "EC-P384", "RSA-2048"])
def test_file_keys_are_private_and_make_a_csr_the_signer_accepts(
    tmp_path: Path, key_type: str
) -> None:
    keys = FileKeyStore(tmp_path / "keys", key_type=key_type)
    keys.generate("abc")
    path = tmp_path / "keys" / "abc.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    info = inspect_csr(keys.certificate_request("abc", THING).decode())  # the signer's checks
    assert info.common_names == (THING,)
    assert info.key_type == ("RSA" if key_type.startswith("RSA") else "EC")
    keys.delete("abc")
    assert not keys.has_key("abc")


def test_key_store_refuses_bad_names_and_types_without_leaking_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="key_type: 'DSA-1024'; allowed: EC-P256"):
        FileKeyStore(tmp_path, key_type="DSA-1024")
    keys = FileKeyStore(tmp_path / "keys")
    with pytest.raises(KeyStoreError, match=r"pair: '\.\./x' is not a pair id"):
        keys.generate("../x")
    with pytest.raises(KeyStoreError, match="missing or unreadable"):
        keys.public_key_der("nope")


# -- durable files and the state ---------------------------------------------------------------


def test_atomic_write_replaces_whole_files_with_the_mode_from_the_start(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    previous = os.umask(0o022)
    try:
        atomic_write(target, b"one", mode=0o600)
        atomic_write(target, b"two", mode=0o600)
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
    # A temporary file a power cut left (even a link planted there) is replaced, not followed.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"untouched")
    (tmp_path / ".secret.partial").symlink_to(elsewhere)
    atomic_write(target, b"three", mode=0o600)
    assert elsewhere.read_bytes() == b"untouched" and target.read_bytes() == b"three"


def test_recover_drops_partials_and_pairs_the_state_does_not_name(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    store = CredentialStore(tmp_path, keys)
    with pytest.raises(StateError, match="missing; provision"):
        store.load()
    keys.generate("factory")
    store.provision(b"certificate")
    keys.generate("abandoned")
    store.write_pair_file(store.request_file("abandoned"), b"csr")
    (tmp_path / ".state.json.partial").write_bytes(b'{"phase": "sw')
    progress = store.recover()
    assert progress == Progress(Phase.IDLE, current="factory")
    assert not keys.has_key("abandoned") and not store.pair_directory("abandoned").exists()
    assert not (tmp_path / ".state.json.partial").exists()
    store.state_file.write_bytes(b"{not json")
    with pytest.raises(StateError, match="unreadable rotation state"):
        store.load()
    store.state_file.write_bytes(b'{"phase": "idle", "current": "../../etc"}')
    with pytest.raises(KeyStoreError, match="is not a pair id"):
        store.load()


WRITER = """
import sys
from pathlib import Path
from iot_remote_access.device.durable import atomic_write
target = Path(sys.argv[1])
contents = [b"A" * 2_000_000, b"B" * 2_000_000]
print("writing", flush=True)
i = 0
while True:
    atomic_write(target, contents[i % 2], mode=0o600)
    i += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31])
def test_a_process_killed_mid_write_leaves_the_old_or_the_new_file(
    tmp_path: Path, delay: float
) -> None:
    """SIGKILL in the middle of replacing a 2 MB file: the target is always whole. (A
    kill keeps the page cache; what fsync adds against a real power cut cannot be
    shown without cutting power, so that part rests on the POSIX rename contract.)"""
    target = tmp_path / "certificate.pem"
    atomic_write(target, b"A" * 2_000_000)
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdout.readline() == b"writing\n"
    time.sleep(delay)
    process.kill()
    process.wait(timeout=10)
    content = target.read_bytes()
    assert content in (b"A" * 2_000_000, b"B" * 2_000_000)
    # The next writer (the restarted device) replaces a leftover temporary file.
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certificate.pem"]
