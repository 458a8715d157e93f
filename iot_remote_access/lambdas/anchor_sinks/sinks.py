"""Anchors in write-once storage on Azure and Google Cloud: the same objects as on S3.

Every store keeps one object per anchor, named as ``anchors.anchor_key`` names it on
S3 (``anchors/<ledger id>/<YYYY>/<MM>/<DD>/<time>.json``, one canonical anchor line),
so a downloaded folder of any cloud's anchors is what ``evidence verify --anchors``
reads. The stores lock what is written: an Azure container with a *locked*
time-based immutability policy, a GCS bucket with a *locked* retention policy
(``arm``/``pubsub`` render and deploy both). On top of the lock, the writer refuses
to overwrite: Azure ``If-None-Match: *`` (``overwrite=False``), GCS
``ifGenerationMatch=0``; an existing name is :class:`AnchorExists`, never replaced.

``anchor_chain`` is the anchor job for either cloud: it reads the latest anchor,
verifies every record after it (the same verifier an auditor runs) and writes the
new anchor; a broken tail is not anchored. The SDK clients are passed in (Azure:
azure-storage-blob's ``ContainerClient``; GCP: google-cloud-storage's ``Bucket``),
so this module imports neither SDK at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from iot_remote_access.core.ledger import Anchor, LedgerError, format_time, parse_anchor
from iot_remote_access.core.ledger_verify import verify
from iot_remote_access.lambdas.ledger.anchors import PREFIX, AnchorExists, anchor_key

__all__ = ["AnchorExists", "AnchorSink", "AzureBlobAnchors", "GcsAnchors", "anchor_chain"]

#: An anchor object is one line of about 130 bytes; anything larger is not one.
MAX_ANCHOR_OBJECT = 64 * 1024


class TailBroken(Exception):
    """The records after the last anchor do not hold; nothing was anchored."""


class AnchorSink(Protocol):
    """Write-once object storage holding anchor objects."""

    def put(self, key: str, body: bytes) -> None:
        """Create ``key``; raise AnchorExists if it exists (never overwrite)."""

    def keys(self, prefix: str) -> Iterator[str]:
        """Every object name under ``prefix`` (any order)."""

    def get(self, key: str) -> bytes:
        """An object's content (at most MAX_ANCHOR_OBJECT bytes are used)."""


class AzureBlobAnchors:
    """Anchors in an Azure blob container (immutability policy locked by ``AnchorContainer``)."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def put(self, key: str, body: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        try:
            # overwrite=False sends If-None-Match: *: the service refuses an existing name.
            self.container.upload_blob(
                key,
                body,
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            raise AnchorExists(f"anchor {key} exists; anchors are never overwritten") from None

    def keys(self, prefix: str) -> Iterator[str]:
        yield from self.container.list_blob_names(name_starts_with=prefix)

    def get(self, key: str) -> bytes:
        data: bytes = self.container.download_blob(key).readall()
        return data[:MAX_ANCHOR_OBJECT]


class GcsAnchors:
    """Anchors in a GCS bucket (retention policy locked by ``pubsub.anchor_bucket``)."""

    def __init__(self, bucket: Any) -> None:
        self.bucket = bucket

    @classmethod
    def for_bucket(cls, name: str, project: str | None) -> GcsAnchors:
        """The bucket ``name`` through a storage client with the default credentials
        (``STORAGE_EMULATOR_HOST``, when set, points it at a local endpoint)."""
        import google.cloud.storage as storage

        return cls(storage.Client(project=project).bucket(name))

    def put(self, key: str, body: bytes) -> None:
        from google.api_core.exceptions import PreconditionFailed

        try:
            # ifGenerationMatch=0: create only; the service answers 412 for an existing name.
            self.bucket.blob(key).upload_from_string(
                body, content_type="application/json", if_generation_match=0
            )
        except PreconditionFailed:
            raise AnchorExists(f"anchor {key} exists; anchors are never overwritten") from None

    def keys(self, prefix: str) -> Iterator[str]:
        for blob in self.bucket.list_blobs(prefix=prefix):
            yield str(blob.name)

    def get(self, key: str) -> bytes:
        data: bytes = self.bucket.blob(key).download_as_bytes()
        return data[:MAX_ANCHOR_OBJECT]


def write_anchor(sink: AnchorSink, ledger_id: str, anchor: Anchor) -> str:
    """Store ``anchor`` under its S3-compatible name; returns the name."""
    key = anchor_key(ledger_id, anchor)
    sink.put(key, anchor.line() + b"\n")
    return key


def anchor_names(sink: AnchorSink, ledger_id: str) -> list[str]:
    """The names of ``ledger_id``'s anchors, oldest first (names sort by time)."""
    return sorted(k for k in sink.keys(f"{PREFIX}/{ledger_id}/") if k.endswith(".json"))


def latest_anchor(sink: AnchorSink, ledger_id: str) -> Anchor | None:
    names = anchor_names(sink, ledger_id)
    if not names:
        return None
    try:
        return parse_anchor(sink.get(names[-1]).rstrip(b"\n"))
    except LedgerError as error:
        raise LedgerError(f"anchor {names[-1]}", str(error)) from None


def anchor_bodies(sink: AnchorSink, ledger_id: str) -> Iterator[bytes]:
    """Every anchor object of ``ledger_id``, oldest first (for an export)."""
    for name in anchor_names(sink, ledger_id):
        yield sink.get(name)


def anchor_chain(
    lines_from: Callable[[int], Iterable[bytes]],
    sink: AnchorSink,
    ledger_id: str,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Verify the records after the last anchor and anchor the last one verified.

    ``lines_from(seq)`` yields the chain's exact lines from record ``seq`` on (a store's
    query, or an export file). Raises TailBroken (nothing written) when they do not hold.
    """
    previous = latest_anchor(sink, ledger_id)
    start = previous.seq if previous is not None else 0
    result = verify(lines_from(start), [previous] if previous is not None else [])
    if result.broken is not None:
        raise TailBroken(f"record {result.broken.seq}: {result.broken.reason}")
    if result.last_seq is not None and result.last_hash is not None:
        new = Anchor(result.last_seq, result.last_hash, format_time(now))
    elif previous is not None:  # nothing added: "no record in this period" is evidence too
        new = Anchor(previous.seq, previous.head, format_time(now))
    else:
        return {"anchored": None}
    key = write_anchor(sink, ledger_id, new)
    return {"anchored": new.seq, "head": new.head, "key": key, "checked": result.records}
