"""Read a settings file (JSON or YAML) within limits, before pydantic sees it.

Limits (each refusal is one line naming the file): 1 MiB, nesting 32 levels,
100,000 values, UTF-8 text only, duplicate keys refused (naming the key), and
no YAML aliases (``*name``): a 249-byte alias "bomb" would otherwise expand to
millions of values. Dates stay strings, as JSON would have them, so the same
strict rules apply to both formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iot_remote_access.core.bounded_input import (
    BoundedInputError,
    check_shape,
    excerpt,
    one_line,
    parse_json,
    read_text,
)

MAX_SETTINGS_BYTES = 1024 * 1024
MAX_SETTINGS_DEPTH = 32
MAX_SETTINGS_NODES = 100_000
YAML_SUFFIXES = (".yaml", ".yml")


def read_settings_file(path: Path) -> Any:
    """The parsed content of ``path``; raises BoundedInputError (one line) on any problem."""
    source = str(path)
    text = read_text(path, max_bytes=MAX_SETTINGS_BYTES, what="settings")
    if path.suffix.lower() in YAML_SUFFIXES:
        data = load_yaml(text, source)
    else:
        data = parse_json(text, source, max_depth=MAX_SETTINGS_DEPTH)
    check_settings_shape(data, source)
    return data


def check_settings_shape(data: Any, source: str) -> None:
    """The limits every settings source shares (files and cdk.json context)."""
    check_shape(data, source, max_depth=MAX_SETTINGS_DEPTH, max_nodes=MAX_SETTINGS_NODES)


def load_yaml(text: str, source: str) -> Any:
    """One YAML document with :class:`_SettingsLoader`'s limits."""
    loader = None
    try:
        # The reader checks the characters already in the constructor.
        loader = _SettingsLoader(text, source)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = one_line(error.problem or error.context or "syntax error", 120)
        raise BoundedInputError(source, f"not valid YAML: {problem}{where}") from None
    except yaml.YAMLError as error:
        raise BoundedInputError(source, f"not valid YAML: {one_line(str(error), 120)}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _SettingsLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a depth limit and duplicate keys refused."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._source = source
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1 if event.start_mark else 0
            raise BoundedInputError(
                self._source,
                f"YAML alias at line {line}; allowed: no aliases (*name) in settings files, "
                "write the value out",
            )
        # The composer recurses once per level: stop before Python's own limit.
        self._depth += 1
        try:
            if self._depth > MAX_SETTINGS_DEPTH:
                raise BoundedInputError(
                    self._source,
                    f"nested deeper than {MAX_SETTINGS_DEPTH} levels; "
                    f"allowed: at most {MAX_SETTINGS_DEPTH}",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merge keys (<<) first, as SafeConstructor does
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise BoundedInputError(
                    self._source,
                    f"key {excerpt(key)} at line {key_node.start_mark.line + 1} is not a string; "
                    "allowed: string keys",
                )
            if key in seen:
                raise BoundedInputError(
                    self._source,
                    f"duplicate key {excerpt(key)} at line {key_node.start_mark.line + 1}; "
                    "allowed: each key once per object",
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Dates stay strings (as in JSON); everything else is SafeLoader's.
_SettingsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
