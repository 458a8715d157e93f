"""Reference deployments: thin compositions of the constructs.

``IotRemoteAccessStack`` is imported on first use: the Azure and GCP stacks
live here too, and their commands should not pay for starting aws-cdk-lib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iot_remote_access.stacks.aws_stack import IotRemoteAccessStack

__all__ = ["IotRemoteAccessStack"]


def __getattr__(name: str) -> Any:
    if name == "IotRemoteAccessStack":
        from iot_remote_access.stacks.aws_stack import IotRemoteAccessStack

        return IotRemoteAccessStack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
