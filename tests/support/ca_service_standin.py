"""A STAND-IN for Google Cloud Certificate Authority Service (no emulator exists).

It serves, over real gRPC on a loopback port, the methods this library calls:
CreateCaPool / GetCaPool / UpdateCaPool, CreateCertificateAuthority /
GetCertificateAuthority / EnableCertificateAuthority (the mutations as long-running
operations, as the SDK expects, answered already done), CreateCertificate /
GetCertificate and RevokeCertificate. The real SDK client builds and sends the
requests; the stand-in decodes them with the SDK's own message types and keeps every
one in ``requests``. Keys and certificates are real (``cryptography``): a CA key per CA,
X.509 certificates signed by it.

What it does like the service (docs of CaPool.IssuancePolicy, CreateCertificateRequest,
"Certificate authority states", "Quotas and limits"):

- a root CA is created STAGED; a pool issues only once one of its CAs is ENABLED
  (FAILED_PRECONDITION otherwise);
- CreateCertificate on an Enterprise pool needs a ``certificate_id``
  (``[a-zA-Z0-9_-]{1,63}``, unique: ALREADY_EXISTS); ``request_id`` must be a non-zero
  UUID and, sent again within 60 minutes, returns the first answer instead of issuing;
- the issuance policy: ``allowed_issuance_modes`` (CSR- or config-based), ``allowed_key_types``
  (RSA modulus bounds, EC curves; INVALID_ARGUMENT otherwise), ``identity_constraints``
  (without subject / SAN passthrough the requested subject / SANs are discarded),
  ``passthrough_extensions`` (requested key usages and CA options not listed are dropped),
  ``baseline_values`` (their key usages and CA options overwrite the request's), and the
  lifetime: cut to ``maximum_lifetime`` and to the issuing CA's own expiry;
- a CSR's signature is verified (CSR-based issuance); the serial is 20 random bytes;
- throttling: more than ``create_certificate_qps`` CreateCertificate calls for one CA
  within a second are answered RESOURCE_EXHAUSTED (7 by default: the Enterprise tier's
  figure);
- RevokeCertificate records the reason and time; an unknown name is NOT_FOUND.

IAM: Get/SetIamPolicy on a pool, with etags (ABORTED on a stale one).
What it does not: CEL expressions (UNIMPLEMENTED if a policy sets one), certificate
templates, subordinate CAs, Cloud KMS keys, publishing CRLs or CA certificates, IAM checks,
list methods, the per-location quota. Where the docs name no status code (a disallowed
issuance mode, revoking a revoked certificate) the stand-in answers FAILED_PRECONDITION.
The docs call ``maximum_lifetime`` "the maximum lifetime allowed" without saying whether
a longer request is cut or refused: the stand-in cuts it (as the service does at the
CA's expiry); the issuer never asks for more, so it depends on neither.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.cloud.security.privateca_v1 import types as ca
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2

from tests.support.gcp_monitoring_standin import _Raw, _Routes

Resource = ca.CertificateAuthority
Policy = ca.CaPool.IssuancePolicy
_SERVICE = "/google.cloud.security.privateca.v1.CertificateAuthorityService"
_REQUEST_ID_MEMORY_SECONDS = 3600
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "EC_P256_SHA256": ec.SECP256R1(),
    "EC_P384_SHA384": ec.SECP384R1(),
}
_EC_POLICY = {"secp256r1": "ECDSA_P256", "secp384r1": "ECDSA_P384"}


class Refused(Exception):
    """Answer the call with ``code`` and ``message`` (what the service would say)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CaServiceStandIn:
    """Started with :meth:`start`; ``host`` is ``127.0.0.1:PORT``."""

    def __init__(self, *, create_certificate_qps: int = 7) -> None:
        self.pools: dict[str, ca.CaPool] = {}
        self.authorities: dict[str, Resource] = {}
        self.certificates: dict[str, ca.Certificate] = {}
        self.iam_policies: dict[str, policy_pb2.Policy] = {}
        self.requests: list[tuple[str, Any]] = []
        #: CreateCertificate calls one CA takes per second before RESOURCE_EXHAUSTED.
        self.create_certificate_qps = create_certificate_qps
        #: Seconds since the epoch; tests may replace it to control time.
        self.clock: Callable[[], float] = time.time
        #: Set to a method name to answer it with PERMISSION_DENIED (a failing deploy).
        self.deny: str | None = None
        self._keys: dict[str, tuple[Any, x509.Certificate]] = {}
        self._request_ids: dict[tuple[str, str], tuple[float, ca.Certificate]] = {}
        self._calls: dict[str, deque[float]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.host = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers([self._routes()])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    def methods_called(self) -> list[str]:
        return [name for name, _ in self.requests]

    def _routes(self) -> grpc.GenericRpcHandler:
        operation = _Raw(operations_pb2.Operation)
        table = {
            "CreateCaPool": (self.create_ca_pool, ca.CreateCaPoolRequest, operation),
            "GetCaPool": (self.get_ca_pool, ca.GetCaPoolRequest, ca.CaPool),
            "UpdateCaPool": (self.update_ca_pool, ca.UpdateCaPoolRequest, operation),
            "CreateCertificateAuthority": (
                self.create_certificate_authority,
                ca.CreateCertificateAuthorityRequest,
                operation,
            ),
            "GetCertificateAuthority": (
                self.get_certificate_authority,
                ca.GetCertificateAuthorityRequest,
                Resource,
            ),
            "EnableCertificateAuthority": (
                self.enable_certificate_authority,
                ca.EnableCertificateAuthorityRequest,
                operation,
            ),
            "CreateCertificate": (
                self.create_certificate,
                ca.CreateCertificateRequest,
                ca.Certificate,
            ),
            "GetCertificate": (self.get_certificate, ca.GetCertificateRequest, ca.Certificate),
            "RevokeCertificate": (
                self.revoke_certificate,
                ca.RevokeCertificateRequest,
                ca.Certificate,
            ),
        }
        iam = {
            "GetIamPolicy": (self.get_iam_policy, _Raw(iam_policy_pb2.GetIamPolicyRequest)),
            "SetIamPolicy": (self.set_iam_policy, _Raw(iam_policy_pb2.SetIamPolicyRequest)),
        }
        routes = {
            f"/google.iam.v1.IAMPolicy/{name}": grpc.unary_unary_rpc_method_handler(
                self._answer(name, method),
                request_deserializer=request.deserialize,
                response_serializer=_Raw(policy_pb2.Policy).serialize,
            )
            for name, (method, request) in iam.items()
        }
        return _Routes(
            routes
            | {
                f"{_SERVICE}/{name}": grpc.unary_unary_rpc_method_handler(
                    self._answer(name, method),
                    request_deserializer=request.deserialize,
                    response_serializer=response.serialize,
                )
                for name, (method, request, response) in table.items()
            }
        )

    def _answer(self, name: str, method: Callable[[Any], Any]) -> Callable[..., Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.requests.append((name, request))
                try:
                    if self.deny == name:
                        raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"stand-in denies {name}")
                    return method(request)
                except Refused as refused:
                    context.abort(refused.code, refused.message)

        return handle

    # -- helpers ---------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def _done(self, resource: Any) -> operations_pb2.Operation:
        """A long-running operation that is already done (``result()`` needs no poll)."""
        response, metadata = any_pb2.Any(), any_pb2.Any()
        response.Pack(type(resource).pb(resource))
        metadata.Pack(ca.OperationMetadata.pb(ca.OperationMetadata(verb="create")))
        name = f"operations/standin-{next(self._ids)}"
        return operations_pb2.Operation(name=name, done=True, response=response, metadata=metadata)

    @staticmethod
    def _found(table: dict[str, Any], name: str, what: str) -> Any:
        if name not in table:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"{what} {name} not found")
        return table[name]

    # -- CA pools ----------------------------------------------------------------------

    def create_ca_pool(self, request: ca.CreateCaPoolRequest) -> operations_pb2.Operation:
        name = f"{request.parent}/caPools/{request.ca_pool_id}"
        _check_id(request.ca_pool_id, "ca_pool_id")
        if name in self.pools:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"CA pool {name} already exists")
        if request.ca_pool.tier == ca.CaPool.Tier.TIER_UNSPECIFIED:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "ca_pool.tier is required")
        pool = ca.CaPool(request.ca_pool)
        pool.name = name
        self.pools[name] = pool
        return self._done(pool)

    def get_ca_pool(self, request: ca.GetCaPoolRequest) -> ca.CaPool:
        return self._found(self.pools, request.name, "CA pool")

    def update_ca_pool(self, request: ca.UpdateCaPoolRequest) -> operations_pb2.Operation:
        name = request.ca_pool.name
        pool = ca.CaPool(self._found(self.pools, name, "CA pool"))
        for path in request.update_mask.paths:
            if path not in ("issuance_policy", "publishing_options", "labels"):
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{path} cannot be updated")
            setattr(pool, path, getattr(request.ca_pool, path))
        self.pools[name] = pool
        return self._done(pool)

    # -- IAM on CA pools (the only CA Service resource this library grants on) --------

    def get_iam_policy(self, request: Any) -> policy_pb2.Policy:
        self._found(self.pools, request.resource, "CA pool")
        return self.iam_policies.get(request.resource, policy_pb2.Policy(etag=b"\x00"))

    def set_iam_policy(self, request: Any) -> policy_pb2.Policy:
        self._found(self.pools, request.resource, "CA pool")
        current = self.get_iam_policy(request)
        if request.policy.etag != current.etag:
            raise Refused(grpc.StatusCode.ABORTED, "etag mismatch: the policy changed meanwhile")
        stored = policy_pb2.Policy()
        stored.CopyFrom(request.policy)
        stored.etag = bytes([current.etag[0] + 1])
        self.iam_policies[request.resource] = stored
        return stored

    # -- certificate authorities ------------------------------------------------------

    def create_certificate_authority(
        self, request: ca.CreateCertificateAuthorityRequest
    ) -> operations_pb2.Operation:
        pool = self._found(self.pools, request.parent, "CA pool")
        _check_id(request.certificate_authority_id, "certificate_authority_id")
        name = f"{request.parent}/certificateAuthorities/{request.certificate_authority_id}"
        if name in self.authorities:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"CA {name} already exists")
        wanted = request.certificate_authority
        if wanted.type_ != Resource.Type.SELF_SIGNED:
            raise Refused(grpc.StatusCode.UNIMPLEMENTED, "the stand-in makes root CAs only")
        key = _ca_key(Resource.SignHashAlgorithm(wanted.key_spec.algorithm).name)
        certificate = _root_certificate(key, wanted, self._now())
        authority = Resource(wanted)
        authority.name = name
        authority.tier = pool.tier
        authority.state = Resource.State.STAGED  # "Root CAs are created in the STAGED state"
        authority.pem_ca_certificates = [_pem(certificate)]
        authority.create_time = _timestamp(self._now())
        self.authorities[name] = authority
        self._keys[name] = (key, certificate)
        return self._done(authority)

    def get_certificate_authority(self, request: ca.GetCertificateAuthorityRequest) -> Resource:
        return self._found(self.authorities, request.name, "CA")

    def enable_certificate_authority(
        self, request: ca.EnableCertificateAuthorityRequest
    ) -> operations_pb2.Operation:
        authority = self._found(self.authorities, request.name, "CA")
        authority.state = Resource.State.ENABLED
        return self._done(authority)

    # -- certificates -------------------------------------------------------------------

    def create_certificate(self, request: ca.CreateCertificateRequest) -> ca.Certificate:
        pool = self._found(self.pools, request.parent, "CA pool")
        authority = self._issuing_authority(request.parent)
        self._throttle(authority.name)
        if request.request_id:
            _check_request_id(request.request_id)
            earlier = self._request_ids.get((request.parent, request.request_id))
            if earlier is not None and self.clock() - earlier[0] < _REQUEST_ID_MEMORY_SECONDS:
                return earlier[1]  # a retry: the first answer, nothing issued again
        name = self._certificate_name(request, pool)
        issued = self._issue(request, pool, authority, name)
        if pool.tier == ca.CaPool.Tier.ENTERPRISE:
            self.certificates[name] = issued
        if request.request_id:
            self._request_ids[(request.parent, request.request_id)] = (self.clock(), issued)
        return issued

    def _issuing_authority(self, pool: str) -> Resource:
        for name, authority in self.authorities.items():
            if name.startswith(pool + "/") and authority.state == Resource.State.ENABLED:
                return authority
        raise Refused(
            grpc.StatusCode.FAILED_PRECONDITION, f"CA pool {pool} has no enabled CA to issue"
        )

    def _throttle(self, authority: str) -> None:
        now = self.clock()
        calls = self._calls.setdefault(authority, deque())
        while calls and now - calls[0] >= 1.0:
            calls.popleft()
        if len(calls) >= self.create_certificate_qps:
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Quota exceeded for quota metric 'CreateCertificate requests' and limit "
                f"'per certificate authority per second' ({self.create_certificate_qps})",
            )
        calls.append(now)

    def _certificate_name(self, request: ca.CreateCertificateRequest, pool: ca.CaPool) -> str:
        if pool.tier != ca.CaPool.Tier.ENTERPRISE:
            return ""  # the DevOps tier keeps no certificate resource
        if not request.certificate_id:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "certificate_id is required for a CA pool in the Enterprise tier",
            )
        _check_id(request.certificate_id, "certificate_id")
        name = f"{request.parent}/certificates/{request.certificate_id}"
        if name in self.certificates:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"certificate {name} already exists")
        return name

    def _issue(
        self, request: ca.CreateCertificateRequest, pool: ca.CaPool, authority: Resource, name: str
    ) -> ca.Certificate:
        policy = pool.issuance_policy
        wanted = request.certificate
        public_key, subject, sans, x509_config = _requested(wanted, policy)
        _check_key_type(public_key, policy)
        subject, sans = _identity(subject, sans, policy)
        x509_config = _applied(x509_config, policy)
        if not subject.common_name and not subject.organization and not _has_sans(sans):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "a certificate needs a subject or a SAN"
            )
        key, ca_certificate = self._keys[authority.name]
        now = self._now()
        lifetime = self._lifetime(wanted, policy, ca_certificate, now)
        certificate = _leaf(
            key, ca_certificate, public_key, subject, sans, x509_config, now, lifetime
        )
        issued = ca.Certificate(wanted)
        issued.name = name
        issued.issuer_certificate_authority = authority.name
        issued.lifetime = duration_pb2.Duration(seconds=int(lifetime.total_seconds()))
        issued.pem_certificate = _pem(certificate)
        issued.pem_certificate_chain = [_pem(ca_certificate)]
        issued.create_time = _timestamp(now)
        issued.certificate_description = _description(certificate, subject, sans, x509_config)
        return issued

    @staticmethod
    def _lifetime(
        wanted: ca.Certificate, policy: Policy, ca_certificate: x509.Certificate, now: dt.datetime
    ) -> dt.timedelta:
        requested = dt.timedelta(seconds=wanted.lifetime.total_seconds())
        if requested <= dt.timedelta(0):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "certificate.lifetime is required")
        maximum = dt.timedelta(seconds=policy.maximum_lifetime.total_seconds())
        if maximum > dt.timedelta(0):
            requested = min(requested, maximum)
        return min(requested, ca_certificate.not_valid_after_utc - now)

    def get_certificate(self, request: ca.GetCertificateRequest) -> ca.Certificate:
        return self._found(self.certificates, request.name, "certificate")

    def revoke_certificate(self, request: ca.RevokeCertificateRequest) -> ca.Certificate:
        certificate = self._found(self.certificates, request.name, "certificate")
        if request.reason == ca.RevocationReason.REVOCATION_REASON_UNSPECIFIED:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "reason is required")
        if certificate.revocation_details.revocation_state:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"certificate {request.name} is already revoked",
            )
        certificate.revocation_details = ca.Certificate.RevocationDetails(
            revocation_state=request.reason, revocation_time=_timestamp(self._now())
        )
        return certificate


# -- the request, read as the service reads it ---------------------------------------------


def _check_id(value: str, field: str) -> None:
    if (
        not value
        or len(value) > 63
        or not all((c.isalnum() and c.isascii()) or c in "-_" for c in value)
    ):
        raise Refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field} {value[:80]!r} must match [a-zA-Z0-9_-]{{1,63}}",
        )


def _check_request_id(value: str) -> None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "request_id must be a non-zero UUID")


def _requested(
    wanted: ca.Certificate, policy: Policy
) -> tuple[Any, ca.Subject, ca.SubjectAltNames, ca.X509Parameters]:
    """The public key, subject, SANs and X.509 values a request asks for."""
    modes = policy.allowed_issuance_modes
    restricted = Policy.pb(policy).HasField("allowed_issuance_modes")
    if wanted.pem_csr:
        if restricted and not modes.allow_csr_based_issuance:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "CSR-based issuance is not allowed")
        return _from_csr(wanted.pem_csr)
    if restricted and not modes.allow_config_based_issuance:
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "config-based issuance is not allowed")
    config = wanted.config
    try:
        public_key = serialization.load_pem_public_key(config.public_key.key)
    except ValueError:
        raise Refused(
            grpc.StatusCode.INVALID_ARGUMENT, "config.public_key is not a PEM key"
        ) from None
    subject_config = config.subject_config
    return public_key, subject_config.subject, subject_config.subject_alt_name, config.x509_config


def _from_csr(pem: str) -> tuple[Any, ca.Subject, ca.SubjectAltNames, ca.X509Parameters]:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "pem_csr is not a CSR") from None
    if not csr.is_signature_valid:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "pem_csr: signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = ca.Subject(common_name=str(names[0].value) if names else "")
    sans = ca.SubjectAltNames()
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans.dns_names = extension.get_values_for_type(x509.DNSName)
        sans.uris = extension.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        pass
    return csr.public_key(), subject, sans, ca.X509Parameters()


def _check_key_type(public_key: Any, policy: Policy) -> None:
    allowed = policy.allowed_key_types
    if not allowed:
        return
    for entry in allowed:
        if isinstance(public_key, rsa.RSAPublicKey) and "rsa" in entry:
            low, high = entry.rsa.min_modulus_size, entry.rsa.max_modulus_size
            if low <= public_key.key_size and (not high or public_key.key_size <= high):
                return
        if isinstance(public_key, ec.EllipticCurvePublicKey) and "elliptic_curve" in entry:
            algorithm = entry.elliptic_curve.signature_algorithm.name
            if algorithm in (
                "EC_SIGNATURE_ALGORITHM_UNSPECIFIED",
                _EC_POLICY.get(public_key.curve.name),
            ):
                return
    raise Refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the requested public key's type is not allowed by the CA pool's issuance policy",
    )


def _identity(
    subject: ca.Subject, sans: ca.SubjectAltNames, policy: Policy
) -> tuple[ca.Subject, ca.SubjectAltNames]:
    if not Policy.pb(policy).HasField("identity_constraints"):
        return subject, sans
    constraints = policy.identity_constraints
    if constraints.cel_expression.expression:
        raise Refused(grpc.StatusCode.UNIMPLEMENTED, "the stand-in does not evaluate CEL")
    if not constraints.allow_subject_passthrough:
        subject = ca.Subject()
    if not constraints.allow_subject_alt_names_passthrough:
        sans = ca.SubjectAltNames()
    return subject, sans


def _applied(requested: ca.X509Parameters, policy: Policy) -> ca.X509Parameters:
    """Passthrough filter, then baseline values overwrite (the service's order)."""
    result = ca.X509Parameters()
    known = ca.CertificateExtensionConstraints.KnownCertificateExtension
    filtered = Policy.pb(policy).HasField("passthrough_extensions")
    passing = set(policy.passthrough_extensions.known_extensions)
    wanted = ca.X509Parameters.pb(requested)
    if wanted.HasField("key_usage") and (
        not filtered or {known.BASE_KEY_USAGE, known.EXTENDED_KEY_USAGE} & passing
    ):
        result.key_usage = requested.key_usage
    if wanted.HasField("ca_options") and (not filtered or known.CA_OPTIONS in passing):
        result.ca_options = requested.ca_options
    baseline = ca.X509Parameters.pb(policy.baseline_values)
    for field in ("key_usage", "ca_options"):
        if baseline.HasField(field):
            setattr(result, field, getattr(policy.baseline_values, field))
    return result


def _has_sans(sans: ca.SubjectAltNames) -> bool:
    return bool(sans.dns_names or sans.uris or sans.email_addresses or sans.ip_addresses)


# -- X.509 -----------------------------------------------------------------------------------


def _ca_key(algorithm: str) -> Any:
    if algorithm in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[algorithm])
    if algorithm.startswith("RSA_"):
        return rsa.generate_private_key(
            public_exponent=65537, key_size=int(algorithm.split("_")[2])
        )
    raise Refused(
        grpc.StatusCode.INVALID_ARGUMENT, f"key_spec.algorithm {algorithm} is not supported"
    )


def _hash_for(key: Any) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _name(subject: ca.Subject) -> x509.Name:
    parts = []
    if subject.common_name:
        parts.append(x509.NameAttribute(NameOID.COMMON_NAME, subject.common_name))
    if subject.organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization))
    return x509.Name(parts)


def _root_certificate(key: Any, wanted: Resource, now: dt.datetime) -> x509.Certificate:
    lifetime = dt.timedelta(seconds=wanted.lifetime.total_seconds())
    if lifetime <= dt.timedelta(0):
        raise Refused(
            grpc.StatusCode.INVALID_ARGUMENT, "certificate_authority.lifetime is required"
        )
    name = _name(wanted.config.subject_config.subject)
    path = wanted.config.x509_config.ca_options
    path_length = path.max_issuer_path_length if "max_issuer_path_length" in path else None
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf(
    key: Any,
    ca_certificate: x509.Certificate,
    public_key: Any,
    subject: ca.Subject,
    sans: ca.SubjectAltNames,
    values: ca.X509Parameters,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    if "ca_options" in values:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=bool(values.ca_options.is_ca), path_length=None), critical=True
        )
    usage = values.key_usage
    if any(
        getattr(usage.base_key_usage, f)
        for f in ("digital_signature", "key_encipherment", "cert_sign")
    ):
        builder = builder.add_extension(
            _key_usage(
                digital_signature=usage.base_key_usage.digital_signature,
                key_encipherment=usage.base_key_usage.key_encipherment,
                cert_sign=usage.base_key_usage.cert_sign,
            ),
            critical=True,
        )
    purposes = [
        oid
        for flag, oid in (
            (usage.extended_key_usage.client_auth, ExtendedKeyUsageOID.CLIENT_AUTH),
            (usage.extended_key_usage.server_auth, ExtendedKeyUsageOID.SERVER_AUTH),
        )
        if flag
    ]
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    if _has_sans(sans):
        general = [x509.DNSName(n) for n in sans.dns_names] + [
            x509.UniformResourceIdentifier(u) for u in sans.uris
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, _hash_for(key))


def _description(
    certificate: x509.Certificate,
    subject: ca.Subject,
    sans: ca.SubjectAltNames,
    values: ca.X509Parameters,
) -> ca.CertificateDescription:
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return ca.CertificateDescription(
        subject_description=ca.CertificateDescription.SubjectDescription(
            subject=subject,
            subject_alt_name=sans,
            hex_serial_number=format(certificate.serial_number, "x"),
            lifetime=duration_pb2.Duration(seconds=int((not_after - not_before).total_seconds())),
            not_before_time=_timestamp(not_before),
            not_after_time=_timestamp(not_after),
        ),
        x509_description=values,
        cert_fingerprint=ca.CertificateDescription.CertificateFingerprint(
            sha256_hash=certificate.fingerprint(hashes.SHA256()).hex()
        ),
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _timestamp(moment: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def ready_issuer(standin: CaServiceStandIn, settings: Any, project: str) -> Any:
    """Deploy ``settings``' pool and CA on ``standin`` with the real plan/deploy, and return
    the ``CaServiceIssuer`` for them (what a rotation service test starts from)."""
    from iot_remote_access.gcp_ca.clients import make_client
    from iot_remote_access.gcp_ca.deploy import deploy
    from iot_remote_access.gcp_ca.desired import desired_state
    from iot_remote_access.gcp_ca.issuer import CaServiceIssuer
    from iot_remote_access.gcp_ca.plan import plan

    client = make_client(standin.host)
    state = desired_state(project, settings.gcp, settings.stagger_policy())
    deploy(plan(state, client), client)
    return CaServiceIssuer.from_settings(settings, project, standin.host)
