"""Reusable building blocks. AWS constructs are re-exported here for short imports.

This package sits inside ``iot_remote_access`` on purpose: a top-level folder
named ``constructs`` would shadow the ``constructs`` library that aws-cdk-lib
imports (aws/aws-cdk#19301).

The AWS re-exports load on first use, so that the Azure and GCP subpackages do
not start aws-cdk-lib (and its Node.js process) when imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iot_remote_access.constructs.aws import DevicePolicy

__all__ = ["DevicePolicy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from iot_remote_access.constructs import aws

        return getattr(aws, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
