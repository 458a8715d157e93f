"""Checks for the Kubernetes and Google Cloud values a manifest must never get wrong.

A Secret name with a typo makes a pod hang in ContainerCreating; an image tag
such as ``latest`` makes two replicas run different code. These checks run
when settings are read and again when the chart is synthesized, and each
error names the field, the value received and what is allowed.
"""

from __future__ import annotations

import re

#: RFC 1123 subdomain: Secret, ConfigMap and ServiceAccount names.
DNS_SUBDOMAIN_RULE = (
    "lower-case letters, digits, '-' and '.', starting and ending alphanumeric, at most 253"
)
_DNS_SUBDOMAIN_RE = re.compile(
    r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
)
#: RFC 1123 label: namespaces, Service names, label-like names.
DNS_LABEL_RULE = "lower-case letters, digits and '-', starting and ending alphanumeric, at most 63"
_DNS_LABEL_RE = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

#: Tags that move: an image pinned to one of these is not pinned.
FLOATING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master", "dev", "head"})
_TAG_RE = re.compile(r"\A[\w][\w.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
_REPOSITORY_RE = re.compile(
    r"\A(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*\Z"
)

#: Kubernetes resource quantities such as 500m, 2, 1.5, 256Mi, 4G.
_QUANTITY_RE = re.compile(r"\A[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?\Z")


#: Kubernetes minor versions the manifests are written for and tested against.
MIN_KUBERNETES_MINOR = 29
MAX_KUBERNETES_MINOR = 37
_VERSION_RE = re.compile(r"\A1\.([0-9]{2})(?:\.([0-9]+))?\Z")


class ManifestValueError(ValueError):
    """A value that would make a wrong manifest; ``problem`` is the message without the field."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field_name = field_name
        self.problem = problem


def validate_dns_subdomain(value: object, *, field_name: str) -> str:
    """A Secret/ConfigMap/ServiceAccount name, or raise naming the field."""
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN_RE.match(value):
        raise ManifestValueError(
            field_name, f"{value!r} is not a Kubernetes object name; allowed: {DNS_SUBDOMAIN_RULE}"
        )
    return value


def validate_dns_label(value: object, *, field_name: str) -> str:
    """A namespace or Service name, or raise naming the field."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL_RE.match(value):
        raise ManifestValueError(
            field_name, f"{value!r} is not a Kubernetes name; allowed: {DNS_LABEL_RULE}"
        )
    return value


def split_image(value: str) -> tuple[str, str | None, str | None]:
    """``repository[:tag][@sha256:…]`` -> (repository, tag, digest); no validation."""
    rest, _, digest = value.partition("@")
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        return rest[:colon], rest[colon + 1 :], digest or None
    return rest, None, digest or None


def validate_image(value: object, *, field_name: str) -> str:
    """An image reference pinned to a tag (not a floating one) or a sha256 digest."""
    allowed = (
        "REPOSITORY:TAG or REPOSITORY@sha256:DIGEST (or both), with a fixed tag "
        f"(not {', '.join(sorted(FLOATING_TAGS))})"
    )
    if not isinstance(value, str) or not value:
        raise ManifestValueError(field_name, f"{value!r} is not an image; allowed: {allowed}")
    repository, tag, digest = split_image(value)
    if not _REPOSITORY_RE.match(repository):
        raise ManifestValueError(
            field_name, f"{value!r} has no valid repository {repository!r}; allowed: {allowed}"
        )
    if digest is not None and not _DIGEST_RE.match(digest):
        raise ManifestValueError(
            field_name, f"{value!r} has a malformed digest; allowed: sha256: and 64 hex digits"
        )
    if tag is None and digest is None:
        raise ManifestValueError(
            field_name, f"{value!r} is not pinned (no tag, so 'latest'); allowed: {allowed}"
        )
    if tag is not None:
        validate_image_tag(tag, field_name=field_name, image=value)
    return value


def validate_image_tag(value: object, *, field_name: str, image: str | None = None) -> str:
    """A fixed image tag such as ``4.54.0``; never ``latest`` or another floating tag."""
    shown = image if image is not None else value
    if not isinstance(value, str) or not _TAG_RE.match(value):
        raise ManifestValueError(
            field_name, f"{shown!r} has no valid tag; allowed: a fixed tag such as '1.4.2'"
        )
    if value.lower() in FLOATING_TAGS:
        raise ManifestValueError(
            field_name,
            f"{shown!r} uses the floating tag {value!r}; allowed: a fixed tag such as "
            "'1.4.2' or a sha256 digest, never " + ", ".join(sorted(FLOATING_TAGS)),
        )
    return value


def validate_quantity(value: object, *, field_name: str) -> str:
    """A Kubernetes resource quantity such as ``500m`` or ``256Mi``."""
    if not isinstance(value, str) or not _QUANTITY_RE.match(value) or _is_zero(value):
        raise ManifestValueError(
            field_name,
            f"{value!r} is not a resource quantity; allowed: a positive number with an "
            "optional suffix, e.g. '500m', '2', '256Mi', '4Gi'",
        )
    return value


def _is_zero(value: str) -> bool:
    number = re.match(r"[0-9.]+", value)
    return number is not None and float(number.group(0)) == 0


def validate_kubernetes_version(value: object, *, field_name: str) -> str:
    """A Kubernetes version ``1.MINOR`` or ``1.MINOR.PATCH`` within the tested range."""
    match = _VERSION_RE.match(value) if isinstance(value, str) else None
    allowed = f"1.{MIN_KUBERNETES_MINOR} to 1.{MAX_KUBERNETES_MINOR}, e.g. '1.33'"
    if match is None:
        raise ManifestValueError(
            field_name, f"{value!r} is not a Kubernetes version; allowed: {allowed}"
        )
    if not MIN_KUBERNETES_MINOR <= int(match.group(1)) <= MAX_KUBERNETES_MINOR:
        raise ManifestValueError(field_name, f"{value!r} is not supported; allowed: {allowed}")
    return str(value)
