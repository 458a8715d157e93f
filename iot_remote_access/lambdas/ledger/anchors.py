"""Anchors in S3 (Object Lock, compliance mode): where they go and how the last one is found.

One object per anchor run, keyed by the time it was taken, so ``aws s3 cp --recursive``
of a day's prefix followed by ``cat`` gives an anchor file for ``evidence verify``:
``anchors/<ledger id>/<YYYY>/<MM>/<DD>/<time>.json`` holding one canonical anchor line.
The bucket's default retention (compliance mode) locks every version; nobody, the
root user included, can delete or overwrite it before the retention ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from iot_remote_access.core.ledger import Anchor, LedgerError, parse_anchor

PREFIX = "anchors"
#: Looked back first when finding the last anchor: two days of anchors is one list page.
RECENT = timedelta(days=2)


def anchor_key(ledger_id: str, anchor: Anchor) -> str:
    day = anchor.time[:10].replace("-", "/")
    return f"{PREFIX}/{ledger_id}/{day}/{anchor.time}.json"


class AnchorExists(Exception):
    """An anchor object of that name exists already: it is never overwritten."""


def put_anchor(s3: Any, bucket: str, ledger_id: str, anchor: Anchor) -> str:
    key = anchor_key(ledger_id, anchor)
    # Object Lock needs an integrity checksum on every write; SHA-256 also lets an auditor
    # compare the stored object with GetObjectAttributes. If-None-Match: create only, so an
    # anchor name never gets a second version (S3 answers 412 PreconditionFailed).
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=anchor.line() + b"\n",
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "PreconditionFailed":
            raise AnchorExists(f"anchor {key} exists; anchors are never overwritten") from None
        raise
    return key


def latest_anchor(s3: Any, bucket: str, ledger_id: str, now: datetime) -> Anchor | None:
    """The newest anchor of ``ledger_id``: looked for in the last two days, then everywhere."""
    prefix = f"{PREFIX}/{ledger_id}/"
    since = (now - RECENT).strftime("%Y/%m/%d/")
    key = _last_key(s3, bucket, prefix, start_after=prefix + since) or _last_key(s3, bucket, prefix)
    if key is None:
        return None
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(64 * 1024)
    try:
        return parse_anchor(body.rstrip(b"\n"))
    except LedgerError as error:
        raise LedgerError(f"anchor {key}", str(error)) from None


def _last_key(s3: Any, bucket: str, prefix: str, start_after: str = "") -> str | None:
    last: str | None = None
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".json") and (last is None or item["Key"] > last):
                last = item["Key"]
    return last


def anchor_bodies(s3: Any, bucket: str, ledger_id: str) -> Iterator[bytes]:
    """Every anchor object of ``ledger_id``, oldest first (keys sort by time)."""
    prefix = f"{PREFIX}/{ledger_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".json"):
                yield s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read(64 * 1024)
