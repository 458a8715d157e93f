"""The AWS sources of `evidence pack`: each store read into the cloud-neutral model.

- inventory: the certificate inventory table (``CertificateRotation``'s, one item per
  thing) joined with the IoT registry (thing type, attributes as owner labels) and,
  when fleet indexing is on, the last connection time;
- ledger: the records of the period from the ``AccessLedger`` table and the anchors
  around it from its Object Lock bucket;
- findings: the security detector's log group(s) (each finding is one log record);
- policies: every IoT policy (read as ``audit`` does) and the operators' IAM policies;
- sessions AWS itself lists (``ListTunnels``), to cross-check the ledger.

Every read is lazy (the pack streams) and a store that cannot be read ends the run
with one line naming it: exit 2 for a name that is wrong or not readable by this
identity, exit 1 for a service failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast

from iot_remote_access.cli.errors import InputError, OperationError
from iot_remote_access.core.evidence_model import (
    Asset,
    Certificate,
    Period,
    PolicyDocument,
    SecurityFinding,
)
from iot_remote_access.core.ledger import Anchor, LedgerError, parse_anchor

T = TypeVar("T")
_INPUT_CODES = {
    "ResourceNotFoundException",
    "NoSuchBucket",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedException",
    "ValidationException",
}
#: Findings read from one log group at most (a pack is not a SIEM query).
MAX_FINDINGS = 200_000


def guarded(what: str, call: Callable[[], T]) -> T:
    """``call()``, with AWS errors as one line naming the store (exit 2 or 1)."""
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


def guarded_iter(what: str, items: Callable[[], Iterable[T]]) -> Iterator[T]:
    """``items()`` as a stream whose every page read is ``guarded``."""
    iterator = guarded(what, lambda: iter(items()))
    end = object()
    while True:
        item = guarded(what, lambda: next(iterator, end))
        if item is end:
            return
        yield cast(T, item)


# -- inventory ---------------------------------------------------------------------------------


def registry(iot: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """thing -> (thing type, attributes): the registry, one ListThings page at a time."""
    things: dict[str, tuple[str, dict[str, str]]] = {}
    for page in iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 250}):
        for thing in page.get("things", []):
            things[thing["thingName"]] = (
                thing.get("thingTypeName", ""),
                dict(thing.get("attributes", {})),
            )
    return things


def last_seen(iot: Any, notes: list[str]) -> dict[str, datetime]:
    """thing -> last connect/disconnect time, from fleet indexing (when it is on)."""
    from botocore.exceptions import ClientError

    seen: dict[str, datetime] = {}
    kwargs: dict[str, Any] = {"queryString": "thingName:*", "maxResults": 500}
    try:
        while True:
            page = iot.search_index(**kwargs)
            for thing in page.get("things", []):
                stamp = (thing.get("connectivity") or {}).get("timestamp")
                if isinstance(stamp, int | float) and stamp > 0:
                    seen[thing["thingName"]] = datetime.fromtimestamp(stamp / 1000, tz=_utc())
            if not page.get("nextToken"):
                return seen
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        notes.append(
            f"last seen: unknown for every device (fleet indexing answered {code}; turn on "
            "thing connectivity indexing to fill it)"
        )
        return {}


def _utc() -> Any:
    from datetime import UTC

    return UTC


def assets(iot: Any, table: Any | None, notes: list[str]) -> Iterator[Asset]:
    """Every device: the inventory's items first, then registered things it lacks
    (``table`` None: the registry only)."""
    from iot_remote_access.lambdas.certs.inventory import Inventory

    things = guarded("IoT registry (ListThings)", lambda: registry(iot))
    seen = guarded("IoT fleet index (SearchIndex)", lambda: last_seen(iot, notes))
    if table is not None:
        inventory = Inventory(table)
        for item in guarded_iter(f"inventory table {table.name!r}", inventory.scan_devices):
            name = str(item["thing"])
            kind, labels = things.pop(name, ("", {}))
            yield _asset(
                item,
                kind,
                labels,
                seen.get(name),
                "inventory+registry" if name in seen or kind or labels else "inventory",
            )
    if things:
        notes.append(f"{len(things)} registered thing(s) are not in the certificate inventory")
    names = sorted(things)
    for start in range(0, len(names), PRINCIPAL_CHUNK):
        chunk = names[start : start + PRINCIPAL_CHUNK]
        found = guarded("IoT things (ListThingPrincipals)", partial(_principals_of, iot, chunk))
        for name, certificates in zip(chunk, found, strict=True):
            kind, labels = things[name]
            yield Asset(name, certificates, seen.get(name), labels, kind, source="registry only")


#: One ListThingPrincipals per thing the inventory lacks (all of them without
#: --inventory-table): made 16 at a time, as `audit` reads policies, a chunk at a time
#: so that memory stays one chunk of answers.
PRINCIPAL_CONCURRENCY = 16
PRINCIPAL_CHUNK = 512


def _principals_of(iot: Any, names: list[str]) -> list[tuple[Certificate, ...]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(PRINCIPAL_CONCURRENCY, thread_name_prefix="principals") as pool:
        return list(pool.map(partial(_principals, iot), names))


def _principals(iot: Any, thing: str) -> tuple[Certificate, ...]:
    principals = iot.list_thing_principals(thingName=thing).get("principals", [])
    return tuple(
        Certificate(arn.rsplit("/", 1)[-1], role="current") for arn in principals if ":cert/" in arn
    )


def _asset(
    item: dict[str, Any], kind: str, labels: dict[str, str], seen: datetime | None, source: str
) -> Asset:
    def when(key: str) -> datetime | None:
        text = item.get(key)
        return datetime.fromisoformat(text) if isinstance(text, str) and text else None

    certificates = [
        Certificate(
            str(item.get("certificateId", "")),
            str(item.get("serial", "")),
            when("notAfter"),
            str(item.get("status", "")),
        )
    ]
    if item.get("pendingCertificateId"):
        certificates.append(
            Certificate(
                str(item["pendingCertificateId"]),
                str(item.get("pendingSerial", "")),
                when("pendingNotAfter"),
                "PENDING",
                "pending",
            )
        )
    if item.get("previousCertificateId"):
        certificates.append(
            Certificate(
                str(item["previousCertificateId"]),
                str(item.get("previousSerial", "")),
                None,
                f"revoke on {item.get('revokeDay', '')}",
                "previous",
            )
        )
    return Asset(
        thing=str(item["thing"]),
        certificates=tuple(certificates),
        last_seen=seen,
        owner_labels=labels,
        thing_type=kind,
        rotation_state=str(item.get("rotationState", "")),
        enrolled_at=when("enrolledAt"),
        last_rotation_at=when("lastRotationAt"),
        source=source,
    )


# -- ledger -------------------------------------------------------------------------------------


def anchor_window(s3: Any, bucket: str, ledger_id: str, period: Period) -> list[Anchor]:
    """The anchors from the last one at or before the period's start to the first one at
    or after its end (keys are named by time, so only those are read)."""
    from iot_remote_access.lambdas.ledger.anchors import PREFIX

    prefix = f"{PREFIX}/{ledger_id}/"
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".json")]
    keys.sort()
    start = period.start.strftime("%Y-%m-%dT%H:%M:%S")
    end = period.end.strftime("%Y-%m-%dT%H:%M:%S")
    stamps = [key.rsplit("/", 1)[-1] for key in keys]
    first = max((i for i, s in enumerate(stamps) if s <= start), default=0)
    last = min((i for i, s in enumerate(stamps) if s >= end), default=len(keys) - 1)
    anchors = []
    for key in keys[first : last + 1]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(64 * 1024)
        try:
            anchors.append(parse_anchor(body.rstrip(b"\n")))
        except LedgerError as error:
            raise OperationError(f"anchor {key!r} is not an anchor: {error}") from None
    return anchors


def chain_lines(
    dynamodb: Any, table: str, ledger_id: str, first: int, last: int | None
) -> Iterator[bytes]:
    """The records ``first..last`` (``last`` None: to the head), exactly as stored."""
    condition = "#l = :l AND #s >= :a" if last is None else "#l = :l AND #s BETWEEN :a AND :b"
    values: dict[str, Any] = {":l": {"S": ledger_id}, ":a": {"N": str(first)}}
    if last is not None:
        values[":b"] = {"N": str(last)}
    start: dict[str, Any] | None = None
    while True:
        page = dynamodb.query(
            TableName=table,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#l": "ledger", "#s": "seq"},
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        for item in page.get("Items", []):
            yield item["record"]["S"].encode("utf-8")
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def segment_bounds(anchors: list[Anchor], period: Period) -> tuple[int, int | None]:
    """From the anchored record at or before the start; to the anchored record at or after
    the end (None: the head, when no anchor is that late yet)."""
    start = period.start.strftime("%Y-%m-%dT%H:%M:%S")
    end = period.end.strftime("%Y-%m-%dT%H:%M:%S")
    before = [a.seq for a in anchors if a.time <= start]
    after = [a.seq for a in anchors if a.time >= end]
    return (max(before) if before else 0), (min(after) if after else None)


# -- findings, policies, tunnels -------------------------------------------------------------


def findings(logs: Any, group: str, period: Period) -> Iterator[SecurityFinding]:
    """Findings the detector logged ("security finding" records with a ``finding`` object)."""
    kwargs: dict[str, Any] = {
        "logGroupName": group,
        "startTime": int(period.start.timestamp() * 1000),
        "endTime": int(period.end.timestamp() * 1000) - 1,
        "filterPattern": '"security finding"',
    }
    count = 0
    while True:
        page = logs.filter_log_events(**kwargs)
        for event in page.get("events", []):
            finding = _finding(event.get("message", ""), group)
            if finding is not None:
                count += 1
                if count > MAX_FINDINGS:
                    raise OperationError(
                        f"log group {group!r}: more than {MAX_FINDINGS} findings; split the period"
                    )
                yield finding
        if not page.get("nextToken"):
            return
        kwargs["nextToken"] = page["nextToken"]


def _finding(message: str, group: str) -> SecurityFinding | None:
    from iot_remote_access.core.incident_clock import IncidentError, parse_utc

    try:
        record = json.loads(message)
        detail = record["finding"]
        return SecurityFinding(
            observed_at=parse_utc(detail["observedAt"], "observedAt"),
            detection=str(detail["detection"]),
            severity=str(detail.get("severity", "")),
            thing=detail.get("thingName") if isinstance(detail.get("thingName"), str) else None,
            summary=str(detail.get("summary", ""))[:300],
            source=group,
        )
    except (ValueError, KeyError, TypeError, IncidentError):
        return None  # not a finding record (the filter matched other text)


def iot_policies(iot: Any, device_policy: str | None) -> list[PolicyDocument]:
    """Every IoT policy's default version, checked by the guard as `audit` does."""
    from iot_remote_access.guard.audit import fetch_policies, list_policies
    from iot_remote_access.guard.scan import scan_documents
    from iot_remote_access.guard.sources import GuardInputError

    try:
        results = scan_documents(fetch_policies(iot, list_policies(iot)))
    except GuardInputError as error:
        raise OperationError(f"IoT policies: {error}") from None
    return [
        PolicyDocument(
            name=result.source.name,
            kind="iot",
            arn=result.source.file,
            document=json.loads(result.source.document)
            if isinstance(result.source.document, str)
            else result.source.document,
            findings=tuple((f.rule_id, str(f.severity), f.message) for f in result.findings),
            device_policy=_is_device_policy(result.source.name, device_policy),
        )
        for result in results
    ]


def _is_device_policy(name: str, wanted: str | None) -> bool:
    return name == wanted if wanted else "DevicePolicy" in name


def operator_policies(iam: Any, names: tuple[str, ...]) -> list[PolicyDocument]:
    """The customer-managed IAM policies of operators: named, or any named *OperatorPolicy*."""
    found = []
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page.get("Policies", []):
            name = policy["PolicyName"]
            if (name in names) if names else "OperatorPolicy" in name:
                version = iam.get_policy_version(
                    PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"]
                )
                document = version["PolicyVersion"]["Document"]
                if isinstance(document, str):
                    from urllib.parse import unquote

                    document = json.loads(unquote(document))
                found.append(PolicyDocument(name, "operator", policy["Arn"], document))
    missing = set(names) - {p.name for p in found}
    if missing:
        raise InputError(
            f"--operator-policy: {sorted(missing)[0]!r} is not a customer-managed IAM policy "
            "of this account"
        )
    return found


def cloud_sessions(tunneling: Any, period: Period) -> dict[str, datetime]:
    """Tunnels AWS lists as created in the period (AWS keeps closed ones for a while)."""
    sessions: dict[str, datetime] = {}
    kwargs: dict[str, Any] = {"maxResults": 100}
    while True:
        page = tunneling.list_tunnels(**kwargs)
        for tunnel in page.get("tunnelSummaries", []):
            created = tunnel.get("createdAt")
            if isinstance(created, datetime) and period.holds(created):
                sessions[tunnel["tunnelId"]] = created
        if not page.get("nextToken"):
            return sessions
        kwargs["nextToken"] = page["nextToken"]
