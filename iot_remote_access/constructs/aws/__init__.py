"""AWS CDK constructs."""

from iot_remote_access.constructs.aws.access_ledger import AccessLedger
from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.audit_trail import AuditTrail
from iot_remote_access.constructs.aws.certificate_inventory import CertificateInventory
from iot_remote_access.constructs.aws.certificate_rotation import CertificateRotation
from iot_remote_access.constructs.aws.command_broker import CommandBroker
from iot_remote_access.constructs.aws.device_defender_audit import DeviceDefenderAudit
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.incident_clocks import IncidentClocks
from iot_remote_access.constructs.aws.iot_logging import IotLogging
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.constructs.aws.private_ca import PrivateCa
from iot_remote_access.constructs.aws.secure_tunneling import SecureTunneling
from iot_remote_access.constructs.aws.security_monitoring import SecurityMonitoring
from iot_remote_access.constructs.aws.security_topic_rule import SecurityTopicRule
from iot_remote_access.constructs.aws.siem_export import SiemExport
from iot_remote_access.constructs.aws.tunnel_alarms import TunnelAlarms

__all__ = [
    "AccessLedger",
    "AlarmTopic",
    "AuditTrail",
    "CertificateInventory",
    "CertificateRotation",
    "CommandBroker",
    "DeviceDefenderAudit",
    "DevicePolicy",
    "IncidentClocks",
    "IotLogging",
    "LibraryFunction",
    "PrivateCa",
    "SecureTunneling",
    "SecurityMonitoring",
    "SecurityTopicRule",
    "SiemExport",
    "TunnelAlarms",
]
