"""The AWS side of `evidence export`: read the chain from DynamoDB and the anchors from S3.

Records are written exactly as stored (their canonical lines), never re-serialised:
the export is the evidence, and `evidence verify` checks it byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from iot_remote_access.cli.errors import InputError, OperationError

T = TypeVar("T")

#: Errors that mean the names given are wrong or not readable by this identity: bad input.
_INPUT_CODES = {
    "ResourceNotFoundException",
    "NoSuchBucket",
    "AccessDenied",
    "AccessDeniedException",
}


def export_ledger(
    *,
    table: str,
    bucket: str,
    ledger_id: str,
    chain: Path,
    anchors: Path,
    region: str | None,
    profile: str | None,
) -> tuple[int, int]:
    """Write ``chain`` and ``anchors``; returns how many records and anchors were written."""
    # The same session rules as `tunnel` (profile, region, one-line errors).
    from iot_remote_access.cli.tunnel import _session
    from iot_remote_access.lambdas.ledger.anchors import anchor_bodies
    from iot_remote_access.lambdas.ledger.store import LedgerStore

    session = _session(region, profile)
    store = LedgerStore(session.client("dynamodb"), table, ledger_id)
    s3 = session.client("s3")
    records = _aws(lambda: _write(chain, store.lines()), f"table {table!r}")
    anchor_count = _aws(
        lambda: _write(anchors, anchor_bodies(s3, bucket, ledger_id)), f"bucket {bucket!r}"
    )
    return records, anchor_count


def _write(path: Path, lines: Any) -> int:
    count = 0
    try:
        with path.open("xb") as out:  # "x": never overwrite an earlier export
            for line in lines:
                out.write(line.rstrip(b"\n") + b"\n")
                count += 1
    except BaseException:
        # A half-written export would later read as a truncated chain: leave none.
        path.unlink(missing_ok=True)
        raise
    return count


def _aws(call: Callable[[], T], what: str) -> T:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return call()
    except NoCredentialsError:
        raise InputError("no AWS credentials found; configure a profile or use --profile") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "ClientError"))
        kind = InputError if code in _INPUT_CODES else OperationError
        raise kind(f"{what}: cannot be read ({code})") from None
    except BotoCoreError as error:
        raise OperationError(f"{what}: cannot be read ({type(error).__name__})") from None
