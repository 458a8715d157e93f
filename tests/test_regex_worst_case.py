"""Every regular expression of the library against its worst inputs, time-bounded (issue 14).

A property, not a list: the patterns are *found* in the source (every
``re.compile/match/fullmatch/search/sub/split/findall/finditer`` call under
``core``, ``lambdas``, ``bridge``, ``guard``, ``settings`` and ``cli/tunnel.py``), so a
new pattern is tested without anyone remembering to add it. A pattern built at run
time must be listed in ``BUILT_AT_RUN_TIME`` with what bounds it.

Inputs are built from each pattern's own parts (Python's regex parser gives its
literal runs and character classes): every literal prefix the pattern could get
past, followed by a long run of one or two characters it accepts, followed by a
character that makes it fail. That is the shape of catastrophic backtracking
(``\\s*`` next to ``[..\\s]+?``, nested quantifiers, ``\\w*`` before a literal in a
search). Sizes double from 1 KiB to ``MAX_INPUT``, so a super-linear pattern fails
fast at a small size instead of hanging the suite.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO_ROOT

try:  # Python 3.11+: the parser moved; it is the same one re.compile uses
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore[no-redef]

PACKAGE = REPO_ROOT / "iot_remote_access"
SOURCES = [
    *(PACKAGE / room for room in ("core", "lambdas", "bridge", "guard", "settings")),
    PACKAGE / "cli" / "tunnel.py",
]
#: The largest untrusted text these patterns see: the signer's CSR limit (16 KiB) is
#: the largest bounded input of the library's entry points.
MAX_INPUT = 16 * 1024
#: Generous (the machine is shared): a linear pattern needs milliseconds here.
TIME_BOUND_SECONDS = 0.5
_METHODS = {
    "compile",
    "match",
    "fullmatch",
    "search",
    "sub",
    "subn",
    "split",
    "findall",
    "finditer",
}

#: Patterns not written in the source, and why their input or the pattern is bounded.
BUILT_AT_RUN_TIME = {
    "core/topics.py:thing_from_topic": "re.escape'd template parts and '[^/]+' per {thing} "
    "(tested below with the default templates)",
    "core/tunnel_rules.py:validate_thing": "the deployment's thing_name_pattern, applied "
    "only after AWS's rule bounded the name to 128 characters",
    "core/tunnel_rules.py:__post_init__": "compiles the deployment's thing_name_pattern",
    "core/security_detections.py:compile_client_pattern": "the deployment's exempt "
    "client-id pattern (configuration, not device input)",
    "bridge/telemetry.py:__init__": "the deployment's thing-name pattern",
    "bridge/commands.py:__init__": "the deployment's thing-name pattern",
    "bridge/responses.py:__init__": "the deployment's thing-name pattern",
    "settings/base.py:compiled_pattern": "compiles a pattern from the settings to check it",
    "settings/fleet.py:thing_name_matches": "the deployment's thing-name pattern",
    # Remote commands (on main): catalogue patterns are configuration, at most 200
    # characters, and refused when they nest quantifiers.
    "core/argument_schema.py:_check_string": "compiles a catalogue pattern (<= 200 chars)",
    "core/argument_schema.py:_validate_string": "a catalogue pattern (<= 200 chars, no "
    "nested quantifiers) on an argument of at most maxLength <= 1024 characters",
    "core/commands.py:_validate_things": "compiles the catalogue's things pattern",
    "core/commands.py:parse_send_request": "the catalogue's things pattern on a thing name",
    "core/commands.py:check_thing_for": "the catalogue's things pattern on a thing name "
    "(already bounded by the thing-name rule)",
    "core/commands.py:validate_thing": "the deployment's thing-name pattern, after AWS's rule",
}
#: Patterns whose input is bounded below ``MAX_INPUT`` before they run: pattern -> (the
#: bound, where it is enforced). Each is tested at its own bound.
SMALLER_INPUT = {
    r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{?]": (
        200,
        "core/argument_schema.py: only patterns of at most MAX_PATTERN_LENGTH (200) reach it",
    ),
}


@dataclass(frozen=True)
class Found:
    where: str  # path:function or path:NAME
    pattern: re.Pattern[str] | None
    #: How the code applies it (``search`` is worse than ``match``: every start position).
    methods: frozenset[str] = frozenset({"search", "fullmatch"})


def _innermost_function(tree: ast.Module, node: ast.AST) -> str:
    found = "<module>"
    for candidate in ast.walk(tree):
        if isinstance(candidate, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
            candidate.lineno <= node.lineno <= (candidate.end_lineno or candidate.lineno)
        ):
            found = candidate.name
    return found


def _flags(call: ast.Call) -> int:
    flags = 0
    nodes = [*call.args[2:], *(k.value for k in call.keywords if k.arg == "flags")]
    if call.func.attr == "compile":  # type: ignore[attr-defined]
        nodes = [*call.args[1:], *(k.value for k in call.keywords if k.arg == "flags")]
    for node in nodes:
        for leaf in ast.walk(node):
            if (
                isinstance(leaf, ast.Attribute)
                and isinstance(leaf.value, ast.Name)
                and leaf.value.id == "re"
                and hasattr(re, leaf.attr)
            ):
                flags |= int(getattr(re, leaf.attr))
    return flags


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)


_FILES = sorted(
    p for source in SOURCES for p in ([source] if source.is_file() else source.rglob("*.py"))
)
_APPLY = {"match": "match", "fullmatch": "fullmatch"}  # anything else may scan: search


def _uses(name: str) -> frozenset[str]:
    """How a compiled pattern ``name`` is applied anywhere in the sources."""
    methods: set[str] = set()
    for path in _FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in _METHODS
                and isinstance(node.value, (ast.Name, ast.Attribute))
                and (getattr(node.value, "id", None) or getattr(node.value, "attr", None)) == name
            ):
                methods.add(_APPLY.get(node.attr, "search"))
    return frozenset(methods or {"search", "fullmatch"})


def find_patterns() -> Iterator[Found]:
    for path in _FILES:
        tree = ast.parse(path.read_text(), filename=str(path))
        relative = str(path.relative_to(PACKAGE))
        assigned = {
            id(node.value): node.targets[0].id
            for node in tree.body
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.func.attr in _METHODS
                and node.args
            ):
                continue
            first = node.args[0]
            name = assigned.get(id(node))
            methods = _uses(name) if name else frozenset({node.func.attr})
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                where = f"{relative}:{_innermost_function(tree, node)}:{first.value[:40]}"
                yield Found(where, re.compile(first.value, _flags(node)), methods)
            elif name:  # NAME = re.compile(f"...{RULE}..."): read the module
                value = getattr(importlib.import_module(_module_name(path)), name)
                yield Found(f"{relative}:{name}", value, methods)
            else:
                yield Found(f"{relative}:{_innermost_function(tree, node)}", None)


ALL = list(find_patterns())
LITERAL_PATTERNS = [found for found in ALL if found.pattern is not None]


def test_every_pattern_built_at_run_time_is_accounted_for() -> None:
    dynamic = {found.where for found in ALL if found.pattern is None}
    assert dynamic - BUILT_AT_RUN_TIME.keys() == set(), (
        "a regex is built at run time from something: say in BUILT_AT_RUN_TIME what bounds it"
    )
    assert len(LITERAL_PATTERNS) >= 40  # the scan found the library's patterns


# -- inputs from a pattern's own parts ------------------------------------------------

_ALWAYS = " \t\n-_./:=@+aA0\\\"'{}[]$%~!"
_CATEGORY_SAMPLES = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_SPACE": " \n",
    "CATEGORY_NOT_SPACE": "a-",
    "CATEGORY_WORD": "a_0",
    "CATEGORY_NOT_WORD": "-. ",
}


def _parts(tree: Any, literals: list[str], alphabet: set[str]) -> None:
    """Literal runs (in order) and characters each class accepts, from a parsed pattern."""
    run = ""
    for op, value in tree:
        name = str(op)
        if name == "LITERAL":
            run += chr(value)
            alphabet.add(chr(value))
            continue
        if run:
            literals.append(run)
            run = ""
        if name == "IN":
            for item_op, item in value:
                item_name = str(item_op)
                if item_name == "LITERAL":
                    alphabet.add(chr(item))
                elif item_name == "RANGE":
                    low, high = item
                    alphabet.update({chr(low), chr(high), chr((low + high) // 2)})
                elif item_name == "CATEGORY":
                    alphabet.update(_CATEGORY_SAMPLES.get(str(item), ""))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _parts(value[2], literals, alphabet)
        elif name == "SUBPATTERN":
            _parts(value[-1], literals, alphabet)
        elif name in ("BRANCH",):
            for branch in value[1]:
                _parts(branch, literals, alphabet)
        elif name in ("ASSERT", "ASSERT_NOT"):
            _parts(value[1], literals, alphabet)
    if run:
        literals.append(run)


def hostile_inputs(pattern: re.Pattern[str], size: int) -> Iterator[str]:
    literals: list[str] = []
    alphabet: set[str] = set(_ALWAYS)
    _parts(sre_parse.parse(pattern.pattern, pattern.flags), literals, alphabet)
    prefixes = [""] + ["".join(literals[: i + 1]) for i in range(min(len(literals), 4))]
    prefixes += literals[:4]
    characters = sorted(alphabet)
    # Pairs of the pattern's own characters first (the _ALWAYS ones are generic).
    own = [*sorted(alphabet - set(_ALWAYS))[:4], " ", "-", "a", "0"]
    fillers = characters + ["".join(pair) for pair in itertools.combinations(own, 2)]
    seen: set[str] = set()
    for prefix, filler in itertools.product(dict.fromkeys(prefixes), fillers):
        for suffix in ("", "\x00"):
            body = (filler * (size // len(filler) + 1))[: max(size - len(prefix) - 1, 0)]
            text = prefix + body + suffix
            key = f"{prefix}\x01{filler}\x01{suffix}"
            if key not in seen:
                seen.add(key)
                yield text


def _apply(pattern: re.Pattern[str], methods: frozenset[str], text: str) -> None:
    # search stands for sub, split, findall and finditer too: every start position.
    for method in methods:
        getattr(pattern, _APPLY.get(method, "search"))(text)


@pytest.mark.parametrize("found", LITERAL_PATTERNS, ids=[f.where for f in LITERAL_PATTERNS])
def test_pattern_is_linear_on_its_worst_inputs(found: Found) -> None:
    assert found.pattern is not None
    limit = SMALLER_INPUT.get(found.pattern.pattern, (MAX_INPUT, ""))[0]
    size = min(1024, limit)
    while size <= limit:
        for text in hostile_inputs(found.pattern, size):
            started = time.perf_counter()
            _apply(found.pattern, found.methods, text)
            elapsed = time.perf_counter() - started
            assert elapsed < TIME_BOUND_SECONDS, (
                found.where,
                sorted(found.methods),
                size,
                text[:60],
            )
        if size == limit:
            return
        size = min(16 * size, limit)


def test_topic_templates_are_linear_on_hostile_topics() -> None:
    """thing_from_topic builds its pattern from the template: the default templates
    against long topics."""
    from iot_remote_access.core.topics import TopicModel, thing_from_topic

    model = TopicModel()
    templates = [model.rotation_csr, model.rotation_confirm, model.telemetry, model.commands]
    for template, filler in itertools.product(templates, ["a", "a/", "/", "rot/", "{"]):
        topic = "rot/" + filler * (MAX_INPUT // len(filler))
        started = time.perf_counter()
        thing_from_topic(template, topic + "\x00")
        assert time.perf_counter() - started < TIME_BOUND_SECONDS, (template, filler)
