"""Read one template or policy file for ``lint``, within limits.

``lint`` exits 1 for findings, so input it cannot read must never crash (a
traceback also exits 1, and CI would read it as findings): every problem here
is a :class:`~iot_remote_access.core.bounded_input.BoundedInputError` (exit 2).
Limits: 16 MiB (YAML: 4 MiB), nesting 64 levels, 2,000,000 values after YAML aliases are
expanded, UTF-8 text, duplicate keys refused (a policy with two ``Effect`` keys
means whatever the reader picks; the guard does not guess).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iot_remote_access.core.bounded_input import (
    MAX_DEPTH,
    MAX_NODES,
    BoundedInputError,
    check_shape,
    excerpt,
    parse_json,
    read_text,
)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: YAML is parsed in Python (about 2 s of CPU per MB): 4 MiB, four times
#: CloudFormation's own template limit, bounds a lint run to seconds.
MAX_YAML_CHARS = 4 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml", ".template")


def read_document(path: Path) -> tuple[str, Any]:
    """The file's text and its parsed content (JSON, or YAML with CloudFormation's tags)."""
    source = str(path)
    text = read_text(path, max_bytes=MAX_DOCUMENT_BYTES)
    if path.suffix in YAML_SUFFIXES or not text.lstrip().startswith(("{", "[")):
        if len(text) > MAX_YAML_CHARS:
            raise BoundedInputError(
                source,
                f"YAML larger than {MAX_YAML_CHARS} characters; allowed: a smaller template "
                "(CloudFormation's own limit is 1 MB), or JSON",
            )
        data = _load_yaml(text, source)
    else:
        data = parse_json(text, source, max_depth=MAX_DEPTH)
    check_shape(data, source, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
    return text, data


def _load_yaml(text: str, source: str) -> Any:
    loader = None
    try:
        # The reader checks the characters already in the constructor.
        loader = CloudFormationLoader(text, source)
        return loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BoundedInputError(source, f"not valid YAML{where}") from None
    finally:
        if loader is not None:
            loader.dispose()


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader reading CloudFormation's short forms (!Sub, !Ref, ...) as intrinsics,
    with a nesting limit and duplicate keys refused."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self._source = source
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # The composer recurses once per level: stop before Python's own limit.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise BoundedInputError(
                    self._source,
                    f"nested deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH}",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # merge keys (<<) first, as SafeConstructor does
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    raise BoundedInputError(
                        self._source,
                        f"duplicate key {excerpt(key)} at line {key_node.start_mark.line + 1}; "
                        "allowed: each key once per object",
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else ("Fn::GetAtt" if suffix == "GetAtt" else f"Fn::{suffix}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)
