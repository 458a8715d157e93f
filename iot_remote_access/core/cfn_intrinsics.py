"""Turn CloudFormation values that may hold intrinsic functions into strings.

The policy checker must see resources such as
``{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iot:...:topic/dt/", ...]]}``
as text. Pseudo parameters become harmless sample values; anything that cannot
be known before deployment (a parameter, an attribute, an import) becomes a
visible ``<Ref:Name>`` marker, so a wildcard hidden behind it is reported as
unverifiable instead of passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "region",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
    "AWS::StackId": "stack-id",
}

UNRESOLVED_MARK = "<unresolved:"
#: Fn::If doubles the alternatives per nesting level; past this many the value
#: is treated as unverifiable rather than expanded further.
MAX_ALTERNATIVES = 64

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def unresolved(description: str) -> str:
    return f"{UNRESOLVED_MARK}{description}>"


def is_unresolved(text: str) -> bool:
    return UNRESOLVED_MARK in text


def string_alternatives(value: Any) -> list[str]:
    """Every string ``value`` can evaluate to (more than one through ``Fn::If``)."""
    return _dedupe(_strings(value))[:MAX_ALTERNATIVES]


def list_items(value: Any) -> list[Any]:
    """The items of a property that may be a string, a list or an intrinsic.

    ``Fn::If`` yields the items of both branches: the checker must pass every
    way the template can deploy.
    """
    if value is None:
        return []
    if isinstance(value, list):
        items: list[Any] = []
        for item in value:
            if _is_no_value(item):
                continue
            if isinstance(item, Mapping) and "Fn::If" in item:
                items.extend(list_items(item))
            else:
                items.append(item)
        return items
    if isinstance(value, Mapping) and len(value) == 1 and "Fn::If" in value:
        branches = value["Fn::If"]
        if isinstance(branches, list) and len(branches) == 3:
            return list_items(branches[1]) + list_items(branches[2])
    if _is_no_value(value):
        return []
    return [value]


def _is_no_value(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("Ref") == "AWS::NoValue"


def _dedupe(values: Iterator[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
        if len(seen) > MAX_ALTERNATIVES:
            break
    return list(seen)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        return
    if isinstance(value, bool):
        yield "true" if value else "false"
        return
    if isinstance(value, int | float):
        yield str(value)
        return
    if not isinstance(value, Mapping) or len(value) != 1:
        yield unresolved(type(value).__name__)
        return
    ((function, argument),) = value.items()
    if function == "Ref":
        yield _PSEUDO_PARAMETERS.get(str(argument), unresolved(f"Ref:{argument}"))
    elif function == "Fn::Join":
        yield from _join(argument)
    elif function == "Fn::Sub":
        yield from _sub(argument)
    elif function == "Fn::If":
        if isinstance(argument, list) and len(argument) == 3:
            yield from _strings(argument[1])
            yield from _strings(argument[2])
        else:
            yield unresolved("Fn::If")
    elif function == "Fn::Select":
        yield from _select(argument)
    else:
        # Fn::GetAtt, Fn::ImportValue, Fn::FindInMap, ...: known only at deploy time.
        if isinstance(argument, str):
            name = argument
        elif isinstance(argument, list):
            name = ".".join(map(str, argument))
        else:
            name = type(argument).__name__
        yield unresolved(f"{function}:{name}")


def _join(argument: Any) -> Iterator[str]:
    if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str)):
        yield unresolved("Fn::Join")
        return
    delimiter, parts = argument
    items = list_items(parts) if not isinstance(parts, list) else parts
    combos = [""]
    for index, part in enumerate(items):
        options = string_alternatives(part)
        prefix = delimiter if index else ""
        combos = [c + prefix + o for c in combos for o in options][:MAX_ALTERNATIVES]
    yield from combos


def _sub(argument: Any) -> Iterator[str]:
    if isinstance(argument, str):
        template, variables = argument, {}
    elif (
        isinstance(argument, list)
        and len(argument) == 2
        and isinstance(argument[0], str)
        and isinstance(argument[1], Mapping)
    ):
        template, variables = argument[0], dict(argument[1])
    else:
        yield unresolved("Fn::Sub")
        return

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"  # `${!x}` is CloudFormation's escape for a literal `${x}`
        if name in variables:
            options = string_alternatives(variables[name])
            return options[0] if len(options) == 1 else unresolved(f"Sub:{name}")
        return _PSEUDO_PARAMETERS.get(name, unresolved(f"Sub:{name}"))

    yield _SUB_VARIABLE.sub(replace, template)


def _select(argument: Any) -> Iterator[str]:
    if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], list):
        index = argument[0]
        try:
            position = int(index)
        except (TypeError, ValueError):
            yield unresolved("Fn::Select")
            return
        if 0 <= position < len(argument[1]):
            yield from _strings(argument[1][position])
            return
    yield unresolved("Fn::Select")
