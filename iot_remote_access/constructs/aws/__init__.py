"""AWS CDK constructs."""

from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.constructs.aws.tunnel_alarms import TunnelAlarms

__all__ = ["AlarmTopic", "DevicePolicy", "LibraryFunction", "TunnelAlarms"]
