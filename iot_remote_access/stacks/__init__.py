"""Reference deployments: thin compositions of the constructs."""

from iot_remote_access.stacks.iot_remote_access_stack import IotRemoteAccessStack

__all__ = ["IotRemoteAccessStack"]
