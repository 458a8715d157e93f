"""AWS CDK constructs."""

from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.audit_trail import AuditTrail
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.constructs.aws.secure_tunneling import SecureTunneling

__all__ = ["AlarmTopic", "AuditTrail", "DevicePolicy", "LibraryFunction", "SecureTunneling"]
