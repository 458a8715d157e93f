"""One DynamoDB item per incident, next to the ledger's chain (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from iot_remote_access.core import incident_clock
from iot_remote_access.core.incident_clock import Incident, incident_id, parse_incident_id, z

SUFFIX = "#incidents"


class IncidentConflict(Exception):
    """The item was not in the state the change expects (already sent, not found)."""


def partition(ledger_id: str) -> str:
    return ledger_id + SUFFIX


class IncidentStore:
    def __init__(self, client: Any, table: str, ledger_id: str, retention_days: int = 400) -> None:
        self.client = client
        self.table = table
        self.ledger_id = ledger_id
        self.retention = timedelta(days=retention_days)

    def _key(self, incident: str) -> dict[str, Any]:
        return {
            "ledger": {"S": partition(self.ledger_id)},
            "seq": {"N": str(parse_incident_id(incident))},
        }

    def put_open(self, open_seq: int, data: dict[str, Any], now: datetime) -> None:
        item: dict[str, Any] = {
            "ledger": {"S": partition(self.ledger_id)},
            "seq": {"N": str(open_seq)},
            "status": {"S": "open"},
            "expiresAt": {"N": str(int((now + self.retention).timestamp()))},
        }
        for name in ("detection", "thing", "summary", "detectedAt", "findingId"):
            if isinstance(data.get(name), str):
                item[name] = {"S": data[name]}
        self.client.put_item(
            TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(seq)"
        )

    def get(self, incident: str) -> Incident | None:
        item = self.client.get_item(
            TableName=self.table, Key=self._key(incident), ConsistentRead=True
        ).get("Item")
        return None if item is None else to_incident(item)

    def incidents(self, *, open_only: bool = True) -> Iterator[Incident]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#l = :l",
            "ExpressionAttributeNames": {"#l": "ledger"},
            "ExpressionAttributeValues": {":l": {"S": partition(self.ledger_id)}},
        }
        if open_only:
            kwargs["FilterExpression"] = "#s = :open"
            kwargs["ExpressionAttributeNames"]["#s"] = "status"
            kwargs["ExpressionAttributeValues"][":open"] = {"S": "open"}
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                yield to_incident(item)
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def set_once(
        self, incident: str, name: str, at: datetime, close: bool = False, **extra: str
    ) -> None:
        """Set ``name`` (a report's or an alarm's time) unless it is set already."""
        names = {"#n": name}
        values: dict[str, Any] = {":t": {"S": z(at)}}
        update = "SET #n = :t"
        for index, (key, value) in enumerate(extra.items()):
            names[f"#e{index}"] = key
            values[f":e{index}"] = {"S": value}
            update += f", #e{index} = :e{index}"
        if close:
            names["#s"] = "status"
            values[":closed"] = {"S": "closed"}
            update += ", #s = :closed"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(incident),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(seq) AND attribute_not_exists(#n)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise IncidentConflict(f"{incident}: {name} is already recorded") from None
            raise


def _time(item: dict[str, Any], name: str) -> datetime | None:
    text = item.get(name, {}).get("S")
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def to_incident(item: dict[str, Any]) -> Incident:
    sent = {
        kind: moment for kind in incident_clock.KINDS if (moment := _time(item, f"sent:{kind}"))
    }
    alarms = tuple(kind for kind in incident_clock.KINDS if f"alarmed:{kind}" in item)
    detected = _time(item, "detectedAt") or datetime.fromtimestamp(0, UTC)
    return Incident(
        id=incident_id(int(item["seq"]["N"])),
        detected_at=detected,
        detection=item.get("detection", {}).get("S", ""),
        thing=item.get("thing", {}).get("S"),
        summary=item.get("summary", {}).get("S", ""),
        acknowledged_at=_time(item, "acknowledgedAt"),
        acknowledged_by=item.get("acknowledgedBy", {}).get("S"),
        significant=item.get("significant", {}).get("S", "yes") != "no",
        sent=sent,
        alarms=alarms,
    )
