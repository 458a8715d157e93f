"""Reusable building blocks. AWS constructs are re-exported here for short imports.

This package sits inside ``iot_remote_access`` on purpose: a top-level folder
named ``constructs`` would shadow the ``constructs`` library that aws-cdk-lib
imports (aws/aws-cdk#19301).
"""

from iot_remote_access.constructs.aws import DevicePolicy

__all__ = ["DevicePolicy"]
