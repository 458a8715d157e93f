"""The AWS side of the tunnel ledger: DynamoDB state and Secure Tunneling's DescribeTunnel.

One table holds three kinds of items, told apart by the partition key ``pk``:

* ``thing#<name>``: the thing's day, opens that day, its latest tunnel and a
  ``version`` for optimistic locking;
* ``tunnel#<id>``: thing, open/expiry/close times; while open it also carries
  ``openIndex``, which puts it in the sparse ``OpenTunnels`` index the sweep
  queries (so the sweep never scans the table);
* Powertools idempotency records (their own key prefix).

All three expire through the one TTL attribute, ``expiration``, which is also
Powertools' default expiry attribute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

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
    ThingState,
    TunnelOpened,
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

    def put_closed_tunnel(self, tunnel: KnownTunnel) -> None:
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
        self.client.put_item(TableName=self.table_name, Item=item)

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
        item = response.get("Item")
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
