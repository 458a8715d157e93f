"""An in-memory stand-in for the DynamoDB client (NOT DynamoDB; not moto either).

Just enough of the low-level client for the tunnel-metrics state table, fast, so a
benchmark measures the handler rather than moto (which took 78 % of the old
benchmark's time): ``get_item``, ``put_item``, ``update_item`` (SET / ADD /
REMOVE, ``if_not_exists``, ``+``/``-``), condition expressions (comparisons,
AND / OR / NOT, parentheses, ``attribute_exists``, ``attribute_not_exists``,
``contains``, ``begins_with``, ``size``), ``ReturnValues`` ALL_OLD / ALL_NEW,
``ReturnValuesOnConditionCheckFailure`` and a ``query`` paginator over the sparse
open-tunnel index. Conditional failures raise botocore's ClientError with the
code DynamoDB uses. ``tests/test_tunnel_metrics_standin.py`` runs the same events
through it and through moto and compares results and items.

Every call is counted in ``calls``; with ``record=True`` every call is also kept
in ``log``, so a benchmark can replay them on a fresh stand-in and subtract the
stand-in's own CPU time from the handler's (timing each call inside would cost
more than the call).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

Item = dict[str, dict[str, Any]]
_TOKEN = re.compile(r"\s*(#\w+|:\w+|<>|<=|>=|[=<>(),+-]|[A-Za-z_][\w.]*)")
_CLAUSES = ("SET", "ADD", "REMOVE", "DELETE")


def _copy(item: Item) -> Item:
    """Items hold attribute values of strings and lists of strings: two levels suffice."""
    return {
        name: {kind: list(x) if isinstance(x, list) else x for kind, x in value.items()}
        for name, value in item.items()
    }


@lru_cache(maxsize=1024)
def _tokens(text: str) -> tuple[str, ...]:
    found, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"stand-in cannot parse {text[position:]!r}")
        found.append(match.group(1))
        position = match.end()
    return tuple(found)


class _Expression:
    """Recursive-descent evaluation of one expression over one item."""

    def __init__(self, text: str, names: dict[str, str], values: dict[str, Any]) -> None:
        self.tokens, self.at = _tokens(text), 0
        self.names, self.values = names, values

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        if expected is not None and token.upper() != expected:
            raise ValueError(f"expected {expected}, got {token}")
        self.at += 1
        return token

    def name(self, token: str) -> str:
        return self.names[token] if token.startswith("#") else token

    # -- conditions --

    def condition(self, item: Item) -> bool:
        result = self.conjunction(item)
        while (self.peek() or "").upper() == "OR":
            self.take()
            right = self.conjunction(item)
            result = result or right
        return result

    def conjunction(self, item: Item) -> bool:
        result = self.negation(item)
        while (self.peek() or "").upper() == "AND":
            self.take()
            right = self.negation(item)
            result = result and right
        return result

    def negation(self, item: Item) -> bool:
        if (self.peek() or "").upper() == "NOT":
            self.take()
            return not self.negation(item)
        return self.primary(item)

    def primary(self, item: Item) -> bool:
        token = self.peek()
        if token == "(":
            self.take()
            result = self.condition(item)
            self.take(")")
            return result
        if token in ("attribute_exists", "attribute_not_exists", "contains", "begins_with"):
            self.take()
            self.take("(")
            path = self.name(self.take())
            argument = None
            if token in ("contains", "begins_with"):
                self.take(",")
                argument = self.operand(item)
            self.take(")")
            value = item.get(path)
            if token == "attribute_exists":
                return value is not None
            if token == "attribute_not_exists":
                return value is None
            return _contains(value, argument) if token == "contains" else _begins(value, argument)
        left = self.operand(item)
        operator = self.take()
        right = self.operand(item)
        return _compare(left, operator, right)

    # -- values --

    def operand(self, item: Item) -> Any:
        token = self.take()
        if token.startswith(":"):
            value = self.values[token]
        elif token == "if_not_exists":
            self.take("(")
            path = self.name(self.take())
            self.take(",")
            default = self.operand(item)
            self.take(")")
            value = item.get(path, default)
        elif token == "size":
            self.take("(")
            found = item.get(self.name(self.take()))
            self.take(")")
            value = None if found is None else {"N": str(_size(found))}
        else:
            value = item.get(self.name(token))
        if self.peek() in ("+", "-"):
            sign = self.take()
            other = self.operand(item)
            total = Decimal(value["N"]) + (1 if sign == "+" else -1) * Decimal(other["N"])
            value = {"N": str(total)}
        return value

    # -- updates --

    def update(self, item: Item) -> Item:
        """The item after the update; every operand reads the item as it was before."""
        before, after = item, _copy(item)
        clause = None
        while self.peek() is not None:
            if self.peek().upper() in _CLAUSES:  # type: ignore[union-attr]
                clause = self.take().upper()
                continue
            if self.peek() == ",":
                self.take()
                continue
            path = self.name(self.take())
            if clause == "SET":
                self.take("=")
                after[path] = self.operand(before)
            elif clause == "REMOVE":
                after.pop(path, None)
            elif clause == "ADD":
                after[path] = _add(before.get(path), self.operand(before))
            else:
                raise ValueError(f"stand-in has no {clause}")
        return after


def _number(value: dict[str, Any]) -> Decimal:
    return Decimal(value["N"])


def _compare(left: Any, operator: str, right: Any) -> bool:
    if left is None or right is None:
        return False
    if "N" in left and "N" in right:
        a, b = _number(left), _number(right)
    elif "S" in left and "S" in right:
        a, b = left["S"], right["S"]
    else:
        return operator == "<>"
    return {
        "=": a == b,
        "<>": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[operator]


def _contains(value: Any, argument: Any) -> bool:
    if value is None or argument is None:
        return False
    if "SS" in value:
        return argument.get("S") in value["SS"]
    if "S" in value:
        return argument.get("S", "") in value["S"]
    if "L" in value:
        return argument in value["L"]
    return False


def _begins(value: Any, argument: Any) -> bool:
    return bool(value and "S" in value and value["S"].startswith(argument.get("S", "")))


def _size(value: dict[str, Any]) -> int:
    (kind, content), *_ = value.items()
    return len(content) if kind in ("S", "SS", "NS", "L", "M", "B") else 0


def _add(current: Any, addend: dict[str, Any]) -> dict[str, Any]:
    if "N" in addend:
        return {"N": str((_number(current) if current else 0) + _number(addend))}
    (kind, members), *_ = addend.items()
    merged = list((current or {}).get(kind, []))
    merged += [m for m in members if m not in merged]
    return {kind: merged}


def _conditional_failure(operation: str, old: Item | None, wanted: str | None) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": "ConditionalCheckFailedException", "Message": "condition failed"}
    }
    if wanted == "ALL_OLD" and old is not None:
        response["Item"] = _copy(old)
    return ClientError(response, operation)  # type: ignore[arg-type]


class InMemoryDynamoDB:
    """Stand-in for ``boto3.client("dynamodb")`` on one table keyed by ``key``."""

    def __init__(self, key: str = "pk", *, record: bool = False) -> None:
        self.key = key
        self.items: dict[str, Item] = {}
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, dict[str, Any]]] | None = [] if record else None

    def _count(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls[operation] += 1
        if self.log is not None:
            self.log.append((operation, kwargs))

    def replay(self, log: list[tuple[str, dict[str, Any]]]) -> None:
        """Make the recorded calls again (conditional failures included)."""
        methods = {"GetItem": self.get_item, "PutItem": self.put_item}
        methods["UpdateItem"] = self.update_item
        for operation, kwargs in log:
            try:
                if operation == "Query":
                    list(self.get_paginator("query").paginate(**kwargs))
                else:
                    methods[operation](**kwargs)
            except ClientError:
                pass

    def _key(self, key: Item) -> str:
        return str(key[self.key]["S"])

    def _check(self, operation: str, item: Item | None, kwargs: dict[str, Any]) -> None:
        condition = kwargs.get("ConditionExpression")
        if condition is None:
            return
        expression = _Expression(
            condition,
            kwargs.get("ExpressionAttributeNames", {}),
            kwargs.get("ExpressionAttributeValues", {}),
        )
        if not expression.condition(item or {}):
            raise _conditional_failure(
                operation, item, kwargs.get("ReturnValuesOnConditionCheckFailure")
            )

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self._count("GetItem", kwargs)
        item = self.items.get(self._key(kwargs["Key"]))
        return {"Item": _copy(item)} if item is not None else {}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        self._count("PutItem", kwargs)
        key = self._key(kwargs["Item"])
        self._check("PutItem", self.items.get(key), kwargs)
        self.items[key] = _copy(kwargs["Item"])
        return {}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self._count("UpdateItem", kwargs)
        key = self._key(kwargs["Key"])
        old = self.items.get(key)
        self._check("UpdateItem", old, kwargs)
        expression = _Expression(
            kwargs["UpdateExpression"],
            kwargs.get("ExpressionAttributeNames", {}),
            kwargs.get("ExpressionAttributeValues", {}),
        )
        new = expression.update(old or dict(kwargs["Key"]))
        self.items[key] = new
        wanted = kwargs.get("ReturnValues", "NONE")
        if wanted == "ALL_OLD":
            return {"Attributes": _copy(old)} if old else {}
        if wanted == "ALL_NEW":
            return {"Attributes": _copy(new)}
        return {}

    def get_paginator(self, operation: str) -> _QueryPaginator:
        if operation != "query":
            raise ValueError(f"stand-in has no {operation} paginator")
        return _QueryPaginator(self)


class _QueryPaginator:
    """Query on a sparse index: items having the index's key attribute, one page."""

    def __init__(self, table: InMemoryDynamoDB) -> None:
        self.table = table

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.table._count("Query", kwargs)
        names = kwargs.get("ExpressionAttributeNames", {})
        values = kwargs.get("ExpressionAttributeValues", {})
        found = [
            _copy(item)
            for item in self.table.items.values()
            if _Expression(kwargs["KeyConditionExpression"], names, values).condition(item)
        ]
        yield {"Items": found}
