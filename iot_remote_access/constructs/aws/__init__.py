"""AWS CDK constructs."""

from iot_remote_access.constructs.aws.device_policy import DevicePolicy

__all__ = ["DevicePolicy"]
