"""core.tree: the plain-Python construct tree the Azure and Pub/Sub desired states hang on."""

from __future__ import annotations

import pytest

from iot_remote_access.core.tree import Construct, Root


def test_paths_and_pre_order_like_constructs() -> None:
    root = Root("azure")
    stack = Construct(root, "Fleet")
    hub = Construct(stack, "IotHub")
    cert = Construct(hub, "CaCertificate")
    dps = Construct(stack, "Provisioning")
    assert cert.node.path == "azure/Fleet/IotHub/CaCertificate"
    assert root.node.path == "azure"
    assert stack.node.find_all() == [stack, hub, cert, dps]
    assert stack.node.children == [hub, dps]
    assert cert.node.scopes == [root, stack, hub, cert]
    assert cert.node.root is root and cert.node.scope is hub
    assert stack.node.find_child("IotHub") is hub and stack.node.find_child("x") is None
    assert Construct(Root(), "S").node.path == "S"  # an empty root id is left out


def test_ids_unique_among_siblings_non_empty_without_slash() -> None:
    root = Root()
    Construct(root, "A")
    with pytest.raises(ValueError, match="construct id 'A' is used twice under 'the root'"):
        Construct(root, "A")
    with pytest.raises(ValueError, match="allowed: up to 255 characters, no '/'"):
        Construct(root, "a/b")
    with pytest.raises(ValueError, match="construct id is empty"):
        Construct(root, "")
    assert [c.node.id for c in root.node.children] == ["A"]


def test_a_jsii_style_scope_is_refused_with_what_is_allowed() -> None:
    class ForeignConstruct:  # what a jsii constructs.RootConstruct looks like to us
        node = None

    with pytest.raises(TypeError, match=r"scope: a .*ForeignConstruct; allowed: an iot_remote"):
        Construct(ForeignConstruct(), "S")  # type: ignore[arg-type]


def test_a_deep_tree_is_walked_without_recursion() -> None:
    root = Root()
    node: Construct = root
    for depth in range(5000):
        node = Construct(node, f"n{depth}")
    assert len(root.node.find_all()) == 5001
    assert node.node.path.count("/") == 4999
