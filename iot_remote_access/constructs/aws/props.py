"""Type checks for the constructs' keyword arguments: a wrong type fails at the call.

Python does not check annotations, and jsii checks only what crosses into
JavaScript, so without this ``TunnelPolicy(allowed_services="SSH")`` became
``('S', 'S', 'H')`` and ``DevicePolicy(topics="...")`` ended in an
``AttributeError`` deep inside synthesis. Every public construct calls
:func:`check` first with its keyword arguments and what each allows.

CDK tokens stand in for values known only at deployment: an encoded string
token is already a ``str``, an encoded number token is a ``float``; a number
argument that holds a token passes as long as it is declared ``WHOLE_NUMBER``
(or ``float``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk


@dataclass(frozen=True)
class Interface:
    """A jsii interface (``sns.ITopic``...) checked by the attribute every implementation has.

    jsii interfaces are not ``runtime_checkable`` protocols and imported resources
    (``Key.from_key_arn``) are private proxy classes, so ``isinstance`` cannot tell.
    """

    name: str
    attribute: str

    def accepts(self, value: object) -> bool:
        # jsii declares every interface member as a property on the class: looking it
        # up there costs nothing, while hasattr on the object runs the getter, a round
        # trip to the node process (and policy_fragment builds a new object). A user's
        # own implementation may set the attribute per instance: asked only then.
        return hasattr(type(value), self.attribute) or hasattr(value, self.attribute)


@dataclass(frozen=True)
class SequenceOf:
    """A list or tuple (never a ``str``, whose characters would pass one by one) of ``item``."""

    item: Any

    @property
    def name(self) -> str:
        return f"a list of {_name(self.item)}"

    def accepts(self, value: object) -> bool:
        return isinstance(value, list | tuple) and all(_accepts(self.item, v) for v in value)


@dataclass(frozen=True)
class MappingOf:
    """A mapping of ``str`` to ``str`` (environment variables)."""

    @property
    def name(self) -> str:
        return "a mapping of str to str"

    def accepts(self, value: object) -> bool:
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )


@dataclass(frozen=True)
class WholeNumber:
    """An ``int`` (never a ``bool``), or a CDK number token (``CfnParameter.value_as_number``)."""

    @property
    def name(self) -> str:
        return "int or a CDK number token"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False  # (asking jsii about any other object fails to marshal it)
        # A number token is a float that encodes the token.
        return isinstance(value, int) or cdk.Token.is_unresolved(value)


WHOLE_NUMBER = WholeNumber()
I_KEY = Interface("kms.IKey", "key_arn")
I_TOPIC = Interface("sns.ITopic", "topic_arn")
I_LOG_GROUP = Interface("logs.ILogGroup", "log_group_name")
I_FUNCTION = Interface("lambda.IFunction", "function_arn")
I_PRINCIPAL = Interface("iam.IPrincipal", "policy_fragment")
I_EVENT_BUS = Interface("events.IEventBus", "event_bus_arn")
I_GRANTABLE = Interface("iam.IGrantable", "grant_principal")


def _name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_name(e) for e in expected)
    if expected is None:
        return "None"
    if isinstance(expected, type):
        module = expected.__module__.split(".")[-1]
        return expected.__name__ if module == "builtins" else f"{module}.{expected.__name__}"
    return str(expected.name)


def _accepts(expected: Any, value: object) -> bool:
    if isinstance(expected, tuple):
        return any(_accepts(e, value) for e in expected)
    if expected is None:
        return value is None
    if expected is float:  # number tokens are floats too
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return bool(expected.accepts(value))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check(owner: str, **arguments: tuple[object, Any]) -> None:
    """Raise ``TypeError`` for the first argument whose value is not of its expected type.

    ``arguments`` maps each parameter name to ``(value, expected)``; ``expected`` is a
    type, ``None`` (for optional arguments, inside a tuple), :data:`WHOLE_NUMBER`,
    an :class:`Interface`, a :class:`SequenceOf`, a :class:`MappingOf`, or a tuple of these.
    """
    for parameter, (value, expected) in arguments.items():
        if not _accepts(expected, value):
            raise TypeError(
                f"{owner} {parameter}: got {type(value).__name__} {_shown(value)}; "
                f"allowed: {_name(expected)}"
            )


def optional(expected: Any) -> tuple[Any, None]:
    """``expected`` or ``None``."""
    return (expected, None)
