"""A plain-Python construct tree for the desired states that need no CDK.

Azure and Pub/Sub have no CDK: their constructs only need a tree to hang
resources on, with the construct-style API (``scope``, ``construct_id``,
``x.node.path``, ``x.node.find_all()``). jsii's ``constructs`` would start a
Node.js process for that; this module is the same shape in the standard
library, so ``azure plan|deploy`` and ``gcp plan|deploy`` run without Node.js.

Paths and order follow ``constructs``: a path joins the non-empty ids from the
root down with ``/``; ``find_all`` walks pre-order, children in the order they
were added (stacks add resources in dependency order).
"""

from __future__ import annotations

from collections.abc import Iterator

#: The separator of path components; not allowed inside an id.
PATH_SEP = "/"
_MAX_ID = 255


class Node:
    """The tree bookkeeping of one construct: its id, parent, children and path."""

    def __init__(self, host: Construct, scope: Construct | None, construct_id: str) -> None:
        self.host = host
        self.scope = scope
        self.id = construct_id
        self._children: dict[str, Construct] = {}

    @property
    def children(self) -> list[Construct]:
        """Direct children, in the order they were added."""
        return list(self._children.values())

    @property
    def scopes(self) -> list[Construct]:
        """Every construct from the root down to this one (itself included)."""
        chain: list[Construct] = []
        current: Construct | None = self.host
        while current is not None:
            chain.append(current)
            current = current.node.scope
        return chain[::-1]

    @property
    def root(self) -> Construct:
        return self.scopes[0]

    @property
    def path(self) -> str:
        """``Root/Stack/Resource``: the non-empty ids from the root down."""
        return PATH_SEP.join(s.node.id for s in self.scopes if s.node.id)

    def find_child(self, construct_id: str) -> Construct | None:
        return self._children.get(construct_id)

    def find_all(self) -> list[Construct]:
        """This construct and everything under it, pre-order."""
        return list(self._walk())

    def _walk(self) -> Iterator[Construct]:
        # Iterative, so a deep tree cannot exhaust the interpreter's recursion limit.
        stack: list[Construct] = [self.host]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(reversed(current.node.children))

    def _adopt(self, child: Construct) -> None:
        existing = self._children.get(child.node.id)
        if existing is not None:
            where = self.path or "the root"
            raise ValueError(
                f"construct id {child.node.id!r} is used twice under {where!r}; "
                "allowed: ids unique among siblings"
            )
        self._children[child.node.id] = child


class Construct:
    """A node of a plain construct tree; subclasses add the resource they stand for.

    :param scope: the parent: another ``Construct`` of this module, or None for a root.
    :param construct_id: unique among the parent's children; no ``/``. May be
        empty only for a root.
    """

    def __init__(self, scope: Construct | None, construct_id: str) -> None:
        if scope is not None and not isinstance(scope, Construct):
            raise TypeError(
                f"scope: a {type(scope).__module__}.{type(scope).__name__}; allowed: "
                "an iot_remote_access.core.tree.Construct (e.g. tree.Root()): Azure and "
                "Pub/Sub trees are plain Python, not jsii constructs"
            )
        _check_id(construct_id, root=scope is None)
        self.node = Node(self, scope, construct_id)
        if scope is not None:
            scope.node._adopt(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node.path or '(root)'}>"


class Root(Construct):
    """The root of a plain construct tree (the stand-alone ``constructs.RootConstruct``).

    :param construct_id: Default: empty (then paths start at the first child).
    """

    def __init__(self, construct_id: str = "") -> None:
        super().__init__(None, construct_id)


def _check_id(construct_id: str, *, root: bool) -> None:
    if not isinstance(construct_id, str):
        raise TypeError(f"construct id {construct_id!r}; allowed: a string")
    if not construct_id and not root:
        raise ValueError("construct id is empty; allowed: a non-empty id (only a root's is empty)")
    if PATH_SEP in construct_id or len(construct_id) > _MAX_ID:
        raise ValueError(
            f"construct id {construct_id[:40]!r}; allowed: up to {_MAX_ID} characters, "
            f"no {PATH_SEP!r}"
        )
