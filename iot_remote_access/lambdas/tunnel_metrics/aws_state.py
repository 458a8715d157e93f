"""The AWS side of the tunnel ledger: DynamoDB state and Secure Tunneling's DescribeTunnel.

One table holds three kinds of items, told apart by the partition key ``pk``:

* ``thing#<name>``: the thing's day, opens that day, its latest tunnel and a
  ``version`` for optimistic locking; per UTC day of an open, ``opens#<day>``
  (that day's count) and ``seen#<day>`` (the set of tunnel ids counted that day,
  which is what makes a redelivered open count once). An open removes those of
  the 2nd to 8th day before its own; older ones go with the item's TTL;
* ``tunnel#<id>``: thing, open/expiry/close times; while open it also carries
  ``openIndex``, which puts it in the sparse ``OpenTunnels`` index the sweep
  queries (so the sweep never scans the table); ``openResult`` and
  ``closeEvent``/``closeTime``/``closeFrom``, so that a redelivered event
  returns what the first delivery returned.

Both expire through the one TTL attribute, ``expiration``. (Items of the
Powertools idempotency layer, which earlier versions wrote, expire by it too.)
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from iot_remote_access.core.aws_schema import (
    OPEN_INDEX,
    OPEN_INDEX_KEY,
    TUNNEL_STATE_KEY,
    TUNNEL_STATE_TTL_ATTRIBUTE,
)
from iot_remote_access.core.topics import TopicModelError, validate_thing_name
from iot_remote_access.core.tunnel_metrics import (
    DEFAULT_LIFETIME,
    KnownTunnel,
    OpenApplied,
    ThingState,
    TunnelOpened,
    utc_day,
)

if TYPE_CHECKING:  # boto3 stubs are not a runtime dependency
    DynamoDBClient = Any
    TunnelingClient = Any

KEY = TUNNEL_STATE_KEY
TTL_ATTRIBUTE = TUNNEL_STATE_TTL_ATTRIBUTE
_OPEN = "open"
#: State outlives a tunnel's expiry by this much: enough for a late close, a
#: renewal after expiry and the day's count.
DEFAULT_RETENTION = timedelta(days=2)


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _time(item: dict[str, Any], name: str) -> datetime | None:
    value = item.get(name)
    return None if value is None else datetime.fromtimestamp(int(value["N"]), UTC)


def _required_time(item: dict[str, Any], name: str) -> datetime:
    value = _time(item, name)
    if value is None:
        raise ValueError(f"state item {item.get(KEY)} has no {name}")
    return value


def _conditional_failed(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


#: Days of per-day attributes (``opens#``, ``seen#``) an open removes, from the
#: day before yesterday back: yesterday's stay for late and redelivered events.
STALE_DAYS = range(2, 9)
WriteStatus = Literal["applied", "duplicate", "conflict"]


def _day_attributes(day: str) -> tuple[str, str]:
    return f"opens#{day}", f"seen#{day}"


@lru_cache(maxsize=64)
def _stale_names(day: str) -> tuple[tuple[str, str], ...]:
    """Placeholders and names of the per-day attributes an open on ``day`` removes."""
    today = date.fromisoformat(day)
    names = []
    for back in STALE_DAYS:
        count, seen = _day_attributes((today - timedelta(days=back)).isoformat())
        names += [(f"#c{back}", count), (f"#s{back}", seen)]
    return tuple(names)


def _seen(item: dict[str, Any], day: str, tunnel_id: str) -> bool:
    return tunnel_id in (item.get(_day_attributes(day)[1]) or {}).get("SS", [])


class DynamoDBTunnelStore:
    """:class:`~iot_remote_access.core.tunnel_metrics.TunnelStore` on one DynamoDB table.

    :param retention: how long items outlive the tunnel's expiry. Default: 2 days.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.retention = retention

    # -- tunnels --

    def put_open_tunnel(self, opened: TunnelOpened, thing_name: str) -> datetime | None:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={
                    KEY: _s(f"tunnel#{opened.tunnel_id}"),
                    "thingName": _s(thing_name),
                    "openedAt": _n(_epoch(opened.opened_at)),
                    "expiresAt": _n(_epoch(opened.expires_at)),
                    TTL_ATTRIBUTE: _n(_epoch(opened.expires_at + self.retention)),
                    OPEN_INDEX_KEY: _s(_OPEN),
                },
                ConditionExpression="attribute_not_exists(closedAt)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            # The close was processed first (events are not ordered): keep it closed.
            return _time(error.response.get("Item") or {}, "closedAt")
        return None

    def close_tunnel(self, tunnel_id: str, closed_at: datetime) -> KnownTunnel | None:
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={KEY: _s(f"tunnel#{tunnel_id}")},
                UpdateExpression="SET closedAt = :closed REMOVE openIndex",
                ConditionExpression="attribute_exists(openedAt)",
                ExpressionAttributeValues={":closed": _n(_epoch(closed_at))},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return None
            raise
        return self._tunnel(tunnel_id, response["Attributes"])

    def put_closed_tunnel(
        self, tunnel: KnownTunnel, *, extra: dict[str, Any] | None = None
    ) -> None:
        item = {
            KEY: _s(f"tunnel#{tunnel.tunnel_id}"),
            "openedAt": _n(_epoch(tunnel.opened_at)),
            "expiresAt": _n(_epoch(tunnel.expires_at)),
            TTL_ATTRIBUTE: _n(_epoch(tunnel.expires_at + self.retention)),
        }
        if tunnel.closed_at is not None:
            item["closedAt"] = _n(_epoch(tunnel.closed_at))
        if tunnel.thing_name is not None:
            item["thingName"] = _s(tunnel.thing_name)
        self.client.put_item(TableName=self.table_name, Item={**item, **(extra or {})})

    def open_tunnels(self, now: datetime) -> list[KnownTunnel]:
        tunnels: list[KnownTunnel] = []
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            IndexName=OPEN_INDEX,
            KeyConditionExpression="openIndex = :open AND expiresAt > :now",
            ExpressionAttributeValues={":open": _s(_OPEN), ":now": _n(_epoch(now))},
        )
        for page in pages:
            for item in page.get("Items", []):
                tunnel_id = item[KEY]["S"].removeprefix("tunnel#")
                tunnels.append(self._tunnel(tunnel_id, item))
        return tunnels

    @staticmethod
    def _tunnel(tunnel_id: str, item: dict[str, Any]) -> KnownTunnel:
        thing = item.get("thingName")
        return KnownTunnel(
            tunnel_id=tunnel_id,
            thing_name=thing["S"] if thing else None,
            opened_at=_required_time(item, "openedAt"),
            expires_at=_required_time(item, "expiresAt"),
            closed_at=_time(item, "closedAt"),
        )

    # -- things --

    def load_thing(self, thing_name: str) -> ThingState:
        response = self.client.get_item(
            TableName=self.table_name, Key={KEY: _s(f"thing#{thing_name}")}, ConsistentRead=True
        )
        return self.thing_state(response.get("Item"))

    @staticmethod
    def thing_state(item: dict[str, Any] | None) -> ThingState:
        """The thing's state in a raw item (None or empty: a thing never seen)."""
        if not item:
            return ThingState()
        return ThingState(
            version=int(item["version"]["N"]),
            day=item["day"]["S"] if "day" in item else None,
            opens_today=int(item["opensToday"]["N"]) if "opensToday" in item else 0,
            last_tunnel_id=item["lastTunnelId"]["S"] if "lastTunnelId" in item else None,
            last_opened_at=_time(item, "lastOpenedAt"),
            last_expires_at=_time(item, "lastExpiresAt"),
            last_closed_at=_time(item, "lastClosedAt"),
        )

    def save_thing(self, thing_name: str, state: ThingState, *, expected_version: int) -> bool:
        item: dict[str, Any] = {
            KEY: _s(f"thing#{thing_name}"),
            "version": _n(expected_version + 1),
            "opensToday": _n(state.opens_today),
        }
        if state.day is not None:
            item["day"] = _s(state.day)
        if state.last_tunnel_id is not None:
            item["lastTunnelId"] = _s(state.last_tunnel_id)
        for name, value in (
            ("lastOpenedAt", state.last_opened_at),
            ("lastExpiresAt", state.last_expires_at),
            ("lastClosedAt", state.last_closed_at),
        ):
            if value is not None:
                item[name] = _n(_epoch(value))
        horizon = max(
            t
            for t in (state.last_expires_at, state.last_opened_at, datetime.now(UTC))
            if t is not None
        )
        item[TTL_ATTRIBUTE] = _n(_epoch(horizon + self.retention))
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if expected_version == 0
            else {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": _n(expected_version)},
            }
        )
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **condition)
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def mark_thing_closed(self, thing_name: str, tunnel_id: str, closed_at: datetime) -> None:
        try:
            # The version bump makes a concurrent open (read-modify-write) retry
            # with this close in view, so its renewal check sees it.
            self.client.update_item(
                TableName=self.table_name,
                Key={KEY: _s(f"thing#{thing_name}")},
                UpdateExpression="SET lastClosedAt = :closed ADD version :one",
                ConditionExpression="lastTunnelId = :tunnel",
                ExpressionAttributeValues={
                    ":closed": _n(_epoch(closed_at)),
                    ":tunnel": _s(tunnel_id),
                    ":one": _n(1),
                },
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            # Not the thing's latest tunnel: its close says nothing about renewals.

    # -- the two-call paths (see lambdas/tunnel_metrics/ledger.py) --

    def count_open(
        self, thing_name: str, opened: TunnelOpened
    ) -> tuple[WriteStatus, dict[str, Any]]:
        """Count ``opened`` on the thing in one UpdateItem; returns the status and the old item.

        Applied only when the open is the thing's newest, on the same or a later
        day, and not yet seen that day: then the update is exactly what
        ``apply_open`` computes (opens that day + 1, or 1 on a new day). Otherwise
        "duplicate" (the tunnel is in the day's seen set) or "conflict" (the caller
        takes the read-then-versioned-write path).
        """
        day = utc_day(opened.opened_at)
        count, seen = _day_attributes(day)
        opened_epoch = _n(_epoch(opened.opened_at))
        horizon = max(opened.expires_at, datetime.now(UTC)) + self.retention
        stale = dict(_stale_names(day))
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={KEY: _s(f"thing#{thing_name}")},
                UpdateExpression=(
                    "SET #day = :day, opensToday = if_not_exists(#cnt, :zero) + :one, "
                    "#cnt = if_not_exists(#cnt, :zero) + :one, lastTunnelId = :tunnel, "
                    "lastOpenedAt = :opened, lastExpiresAt = :expires, #ttl = :ttl "
                    "ADD version :one, #seen :tunnels "
                    "REMOVE lastClosedAt, " + ", ".join(stale)
                ),
                ConditionExpression=(
                    "(attribute_not_exists(#day) OR #day < :day "
                    "OR (#day = :day AND attribute_exists(#cnt))) "
                    "AND (attribute_not_exists(lastOpenedAt) OR lastOpenedAt <= :opened) "
                    "AND NOT contains(#seen, :tunnel)"
                ),
                ExpressionAttributeNames={
                    "#day": "day",
                    "#cnt": count,
                    "#seen": seen,
                    "#ttl": TTL_ATTRIBUTE,
                    **stale,
                },
                ExpressionAttributeValues={
                    ":day": _s(day),
                    ":zero": _n(0),
                    ":one": _n(1),
                    ":tunnel": _s(opened.tunnel_id),
                    ":tunnels": {"SS": [opened.tunnel_id]},
                    ":opened": opened_epoch,
                    ":expires": _n(_epoch(opened.expires_at)),
                    ":ttl": _n(_epoch(horizon)),
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            old = error.response.get("Item") or {}
            return ("duplicate" if _seen(old, day, opened.tunnel_id) else "conflict"), old
        return "applied", response.get("Attributes") or {}

    def save_open(
        self, thing_name: str, opened: TunnelOpened, applied: OpenApplied, *, expected_version: int
    ) -> WriteStatus:
        """Write ``applied.state`` over version ``expected_version`` and mark the tunnel seen.

        "conflict": the version moved (read again); "duplicate": already counted.
        """
        state = applied.state
        day = utc_day(opened.opened_at)
        names: dict[str, str] = {"#seen": _day_attributes(day)[1], "#ttl": TTL_ATTRIBUTE}
        values: dict[str, Any] = {
            ":version": _n(expected_version + 1),
            ":count": _n(state.opens_today),
            ":tunnels": {"SS": [opened.tunnel_id]},
            ":tunnel": _s(opened.tunnel_id),
        }
        sets = ["version = :version", "opensToday = :count"]
        removes = []
        if state.day is not None:
            names["#day"], names["#cnt"] = "day", _day_attributes(state.day)[0]
            values[":day"] = _s(state.day)
            sets += ["#day = :day", "#cnt = :count"]
        for name, value in (
            ("lastTunnelId", state.last_tunnel_id),
            ("lastOpenedAt", state.last_opened_at),
            ("lastExpiresAt", state.last_expires_at),
            ("lastClosedAt", state.last_closed_at),
        ):
            if value is None:
                removes.append(name)
            else:
                values[f":{name}"] = _s(value) if isinstance(value, str) else _n(_epoch(value))
                sets.append(f"{name} = :{name}")
        horizon = max(
            t
            for t in (state.last_expires_at, state.last_opened_at, datetime.now(UTC))
            if t is not None
        )
        values[":ttl"] = _n(_epoch(horizon + self.retention))
        sets.append("#ttl = :ttl")
        if expected_version == 0:
            condition = "attribute_not_exists(version)"
        else:
            condition = "version = :expected"
            values[":expected"] = _n(expected_version)
        expression = "SET " + ", ".join(sets) + " ADD #seen :tunnels"
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={KEY: _s(f"thing#{thing_name}")},
                UpdateExpression=expression,
                ConditionExpression=f"{condition} AND NOT contains(#seen, :tunnel)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            old = error.response.get("Item") or {}
            return "duplicate" if _seen(old, day, opened.tunnel_id) else "conflict"
        return "applied"

    def record_open(
        self, opened: TunnelOpened, thing_name: str, result: dict[str, Any]
    ) -> datetime | None:
        """Put the tunnel (open, in the sweep's index) with the open's result.

        If its close was recorded first, keep it closed, store the result only and
        return the close time.
        """
        values = {
            ":thing": _s(thing_name),
            ":opened": _n(_epoch(opened.opened_at)),
            ":expires": _n(_epoch(opened.expires_at)),
            ":ttl": _n(_epoch(opened.expires_at + self.retention)),
            ":open": _s(_OPEN),
            ":result": _s(json.dumps(result, sort_keys=True)),
        }
        key = {KEY: _s(f"tunnel#{opened.tunnel_id}")}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET thingName = :thing, openedAt = :opened, "
                "expiresAt = :expires, #ttl = :ttl, openIndex = :open, openResult = :result",
                ConditionExpression="attribute_not_exists(closedAt)",
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET openResult = :result",
                ExpressionAttributeValues={":result": values[":result"]},
            )
            return _time(error.response.get("Item") or {}, "closedAt")
        return None

    def open_result(self, tunnel_id: str) -> dict[str, Any] | None:
        """What the first delivery of the tunnel's open returned, if recorded."""
        item = self.client.get_item(
            TableName=self.table_name, Key={KEY: _s(f"tunnel#{tunnel_id}")}, ConsistentRead=True
        ).get("Item")
        text = (item or {}).get("openResult", {}).get("S")
        result: dict[str, Any] | None = json.loads(text) if text else None
        return result

    def claim_close(
        self, tunnel_id: str, closed_at: datetime, event_id: str, closed_text: str
    ) -> tuple[KnownTunnel | None, dict[str, Any]]:
        """Close a tunnel recorded open, once: the tunnel (None if not closed now) and the old item.

        A tunnel already closed is not closed again: the old item then says by
        which event (``closeEvent``), so a redelivery returns the first result.
        """
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={KEY: _s(f"tunnel#{tunnel_id}")},
                UpdateExpression="SET closedAt = :closed, closeEvent = :event, "
                "closeTime = :text, closeFrom = :from REMOVE openIndex",
                ConditionExpression="attribute_exists(openedAt) AND attribute_not_exists(closedAt)",
                ExpressionAttributeValues={
                    ":closed": _n(_epoch(closed_at)),
                    ":event": _s(event_id),
                    ":text": _s(closed_text),
                    ":from": _s("state"),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return None, error.response.get("Item") or {}
            raise
        return self._tunnel(tunnel_id, response["Attributes"]), {}

    def mark_close_recorded(self, tunnel_id: str, seq: int) -> None:
        """Note on the tunnel that its close is access-ledger record ``seq``."""
        self.client.update_item(
            TableName=self.table_name,
            Key={KEY: _s(f"tunnel#{tunnel_id}")},
            UpdateExpression="SET ledgerSeq = :seq",
            ExpressionAttributeValues={":seq": _n(seq)},
        )

    def put_described_close(self, tunnel: KnownTunnel, event_id: str, closed_text: str) -> None:
        """Record a tunnel learned from DescribeTunnel, closed by ``event_id`` (one put)."""
        self.put_closed_tunnel(
            tunnel,
            extra={
                "closeEvent": _s(event_id),
                "closeTime": _s(closed_text),
                "closeFrom": _s("DescribeTunnel"),
            },
        )


class SecureTunnelingDirectory:
    """:class:`~iot_remote_access.core.tunnel_metrics.TunnelDirectory` over DescribeTunnel.

    DescribeTunnel returns no access tokens; nothing it returns is logged except
    the error code on failure.
    """

    def __init__(self, client: TunnelingClient) -> None:
        self.client = client

    def describe(self, tunnel_id: str) -> KnownTunnel:
        try:
            tunnel = self.client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "unknown")
            raise LookupError(f"DescribeTunnel {code}") from None
        except BotoCoreError as error:
            raise LookupError(f"DescribeTunnel {type(error).__name__}") from None
        created = tunnel.get("createdAt")
        if not isinstance(created, datetime):
            raise LookupError("DescribeTunnel returned no createdAt")
        minutes = (tunnel.get("timeoutConfig") or {}).get("maxLifetimeTimeoutMinutes")
        lifetime = timedelta(minutes=minutes) if isinstance(minutes, int) else DEFAULT_LIFETIME
        thing = (tunnel.get("destinationConfig") or {}).get("thingName")
        try:
            thing = validate_thing_name(thing) if thing is not None else None
        except TopicModelError:
            thing = None
        opened = created.astimezone(UTC)
        return KnownTunnel(
            tunnel_id=tunnel_id, thing_name=thing, opened_at=opened, expires_at=opened + lifetime
        )
