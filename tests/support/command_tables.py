"""The command execution records' table as the CommandBroker construct creates it, in moto."""

from __future__ import annotations

from typing import Any

from iot_remote_access.core.command_executions import (
    BY_STATUS_ATTRIBUTES,
    BY_STATUS_INDEX,
    INDEX_KEYS,
)


def create_executions_table(dynamodb: Any, name: str = "executions") -> Any:
    """A table with the construct's key and secondary indexes (``INDEX_KEYS``)."""
    attributes = sorted({"id", *(key for keys in INDEX_KEYS.values() for key in keys)})
    return dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": sort, "KeyType": "RANGE"},
                ],
                "Projection": (
                    {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(BY_STATUS_ATTRIBUTES)}
                    if index == BY_STATUS_INDEX
                    else {"ProjectionType": "ALL"}
                ),
            }
            for index, (partition, sort) in INDEX_KEYS.items()
        ],
    )
