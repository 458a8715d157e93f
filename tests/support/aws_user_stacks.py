"""Each AWS construct composed the way a platform team would: in their own stack.

``PlatformStack`` stands for a user's stack: it holds their own KMS key, alert
topic and application log group, registers cdk-nag's AwsSolutions pack and the
IoT policy guard, and takes an ``env`` (or none). ``CASES`` adds one of this
library's constructs to it, wired to those resources and with non-default props
where that costs nothing, so the matrix test proves each construct synthesizes
cleanly where users deploy it.
"""

from __future__ import annotations

from collections.abc import Callable

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from iot_remote_access.constructs.aws import (
    AccessLedger,
    AlarmTopic,
    AuditTrail,
    CertificateInventory,
    CertificateRotation,
    CommandBroker,
    DeviceDefenderAudit,
    DevicePolicy,
    IncidentClocks,
    IotLogging,
    LibraryFunction,
    PrivateCa,
    SecureTunneling,
    SecurityMonitoring,
    SecurityTopicRule,
    SiemExport,
    TunnelAlarms,
)
from iot_remote_access.constructs.aws.log_encryption import allow_cloudwatch_logs
from iot_remote_access.core.topics import TopicModel
from iot_remote_access.core.tunnel_rules import TunnelPolicy
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack

#: The environment platform teams pin in production.
PINNED = cdk.Environment(account="123456789012", region="eu-central-1")
CA_ARN = (
    "arn:aws:acm-pca:eu-central-1:123456789012:certificate-authority/"
    "0b9f0a9e-1111-2222-3333-444455556666"
)
#: The reference stack with every optional part on (certificates, allowlist, alarms).
FULL_SETTINGS = {
    "certificates": {},
    "monitoring": {"allowedSourceCidrs": ["10.0.0.0/8"], "alarmEmails": ["sec@example.com"]},
    "tunnelAlarms": {"emailAddresses": ["ops@example.com"]},
    "tunneling": {"operatorRole": True},
}


class PlatformStack(cdk.Stack):
    """A user's stack with their own key, alert topic and log group, checks on."""

    def __init__(self, scope: Construct, construct_id: str, *, env: cdk.Environment | None):
        super().__init__(scope, construct_id, env=env)
        self.key = kms.Key(self, "PlatformKey", enable_key_rotation=True)
        # Their log groups are encrypted with it, as the library's docs ask.
        allow_cloudwatch_logs(self.key, self)
        self.alerts = sns.Topic(self, "PlatformAlerts", master_key=self.key, enforce_ssl=True)
        self.app_logs = logs.LogGroup(
            self, "AppLogs", encryption_key=self.key, retention=logs.RetentionDays.ONE_MONTH
        )
        cdk.Validations.of(self).add_plugins(AwsSolutionsChecks(self), IotPolicyGuard())


def _fleet_policy(stack: PlatformStack) -> DevicePolicy:
    return DevicePolicy(
        stack,
        "Fleet",
        topics=TopicModel(telemetry="plant/{thing}/up", commands="plant/{thing}/down"),
        policy_name="platform-fleet",
    )


def _access_ledger(stack: PlatformStack) -> None:
    ledger = AccessLedger(
        stack, "Ledger", retention_days=730, key=stack.key, alarm_topic=stack.alerts
    )
    writer = iam.Role(
        stack, "LedgerWriter", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
    )
    ledger.grant_append(writer)


def _incident_clocks(stack: PlatformStack) -> None:
    ledger = AccessLedger(stack, "Ledger", key=stack.key, alarm_topic=stack.alerts)
    IncidentClocks(stack, "Incidents", ledger=ledger, alarm_topic=stack.alerts)


def _command_broker(stack: PlatformStack) -> None:
    CommandBroker(
        stack,
        "Commands",
        encryption_key=stack.key,
        device_policy=_fleet_policy(stack),
        log_retention=logs.RetentionDays.TWO_YEARS,
    )


def _alarm_topic(stack: PlatformStack) -> None:
    AlarmTopic(
        stack,
        "Alarms",
        display_name="platform alarms",
        email_addresses=["ops@example.com"],
        key=stack.key,
    )


def _audit_trail(stack: PlatformStack) -> None:
    AuditTrail(
        stack,
        "Audit",
        retention_days=90,
        log_retention=logs.RetentionDays.THREE_MONTHS,
        trail_name="platform-audit",
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def _certificate_inventory(stack: PlatformStack) -> None:
    CertificateInventory(
        stack, "Inventory", encryption_key=stack.key, removal_policy=cdk.RemovalPolicy.DESTROY
    )


def _certificate_rotation(stack: PlatformStack) -> None:
    settings = FleetSettings.parse(
        {"certificates": {"caArn": CA_ARN, "leadTimeDays": 60, "hourlyRotationBudget": 120}}
    ).certificates
    CertificateRotation(
        stack,
        "Rotation",
        device_policy=_fleet_policy(stack),
        settings=settings,
        alarm_topic=stack.alerts,
        encryption_key=stack.key,
        log_retention=logs.RetentionDays.SIX_MONTHS,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def _certificate_rotation_own_ca(stack: PlatformStack) -> None:
    # The default path (a new private CA, own alarm topic): the one that failed with env.
    CertificateRotation(stack, "Rotation", device_policy=_fleet_policy(stack), audit=False)


def _device_defender_audit(stack: PlatformStack) -> None:
    DeviceDefenderAudit(
        stack,
        "DefenderAudit",
        findings_topic=stack.alerts,
        expiring_threshold_days=60,
        checks=["DEVICE_CERTIFICATE_EXPIRING_CHECK", "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"],
    )


def _device_policy(stack: PlatformStack) -> None:
    _fleet_policy(stack).enable_jobs("firmware-update")


def _iot_logging(stack: PlatformStack) -> None:
    IotLogging(
        stack,
        "IotLogging",
        level="WARN",
        encryption_key=stack.key,
        retention=logs.RetentionDays.SIX_MONTHS,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def _library_function(stack: PlatformStack) -> None:
    LibraryFunction(
        stack,
        "Sweeper",
        handler_package="tunnel_sweeper",
        description="platform: the library's tunnel sweeper on its own",
        environment={"TUNNEL_POLICY": TunnelPolicy().to_json()},
        timeout=cdk.Duration.minutes(1),
        memory_size=512,
        encryption_key=stack.key,
    )


def _private_ca(stack: PlatformStack) -> None:
    PrivateCa(stack, "Ca", common_name="Platform device CA", validity_years=5)


def _secure_tunneling(stack: PlatformStack) -> None:
    tunnels = SecureTunneling(
        stack,
        "Tunnels",
        device_policy=_fleet_policy(stack),
        policy=TunnelPolicy(allowed_services=("SSH", "RDP"), thing_groups=("field",)),
        sweep_interval=cdk.Duration.minutes(10),
        encryption_key=stack.key,
        operator_principal=iam.AccountRootPrincipal(),
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    # The team's own on-call role may request tunnels through the broker.
    tunnels.grant_open(iam.Role(stack, "OnCall", assumed_by=iam.AccountRootPrincipal()))


def _security_monitoring(stack: PlatformStack) -> None:
    settings = FleetSettings.parse(
        {"monitoring": {"allowedSourceCidrs": ["198.51.100.0/24"], "siemRetentionDays": 90}}
    ).monitoring
    SecurityMonitoring(
        stack,
        "Monitoring",
        device_access=_fleet_policy(stack),
        settings=settings,
        alarm_topic=stack.alerts,
        log_groups_to_export=[stack.app_logs],
        encryption_key=stack.key,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def _security_topic_rule(stack: PlatformStack) -> None:
    SecurityTopicRule(
        stack,
        "TelemetryArchive",
        sql="SELECT * FROM 'plant/+/up'",
        description="platform: keep the fleet's telemetry",
        error_log_group=stack.app_logs,
        log_group=logs.LogGroup(stack, "Telemetry", encryption_key=stack.key),
        rule_name="platform_telemetry_archive",
    )


def _siem_export(stack: PlatformStack) -> None:
    SiemExport(
        stack,
        "Siem",
        log_groups=[stack.app_logs],
        encryption_key=stack.key,
        retention_days=30,
        log_retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def _tunnel_alarms(stack: PlatformStack) -> None:
    TunnelAlarms(
        stack,
        "TunnelAlarms",
        max_opens_per_thing_per_day=5,
        renewal_window_minutes=30,
        max_open_hours=4,
        alarm_topic=stack.alerts,  # the team's own sns.Topic
        dashboard_name="platform-tunnels",
        encryption_key=stack.key,
        log_retention=logs.RetentionDays.THREE_MONTHS,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )


#: Resources that already exist in the team's account, imported by ARN.
IMPORTED_KEY_ARN = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
IMPORTED_TOPIC_ARN = "arn:aws:sns:eu-central-1:123456789012:on-call"


def _tunnel_alarms_imported(stack: PlatformStack) -> None:
    # Existing resources: their key policy is managed elsewhere (synthesis warns with
    # the grant to add there), their topic is the account's on-call topic.
    TunnelAlarms(
        stack,
        "TunnelAlarms",
        alarm_topic=sns.Topic.from_topic_arn(stack, "OnCall", IMPORTED_TOPIC_ARN),
        encryption_key=kms.Key.from_key_arn(stack, "ExistingKey", IMPORTED_KEY_ARN),
    )


def _siem_export_imported(stack: PlatformStack) -> None:
    SiemExport(
        stack,
        "Siem",
        log_groups=[logs.LogGroup.from_log_group_name(stack, "Existing", "legacy-app")],
        encryption_key=kms.Key.from_key_arn(stack, "ExistingKey", IMPORTED_KEY_ARN),
    )


#: construct class name -> how a platform team adds it. Every construct in
#: ``iot_remote_access.constructs.aws`` must have an entry (the test checks).
CASES: dict[str, Callable[[PlatformStack], None]] = {
    "AccessLedger": _access_ledger,
    "AlarmTopic": _alarm_topic,
    "AuditTrail": _audit_trail,
    "CertificateInventory": _certificate_inventory,
    "CertificateRotation": _certificate_rotation,
    "CertificateRotation(own CA)": _certificate_rotation_own_ca,
    "CommandBroker": _command_broker,
    "DeviceDefenderAudit": _device_defender_audit,
    "DevicePolicy": _device_policy,
    "IncidentClocks": _incident_clocks,
    "IotLogging": _iot_logging,
    "LibraryFunction": _library_function,
    "PrivateCa": _private_ca,
    "SecureTunneling": _secure_tunneling,
    "SecurityMonitoring": _security_monitoring,
    "SecurityTopicRule": _security_topic_rule,
    "SiemExport": _siem_export,
    "SiemExport(imported key and log group)": _siem_export_imported,
    "TunnelAlarms": _tunnel_alarms,
    "TunnelAlarms(imported topic and key)": _tunnel_alarms_imported,
}


def platform_stack(case: str, env: cdk.Environment | None) -> Callable[[cdk.App], cdk.Stack]:
    """A ``synth_checked`` builder: the user's stack with the construct of ``case``."""

    def build(app: cdk.App) -> cdk.Stack:
        stack = PlatformStack(app, "Platform", env=env)
        CASES[case](stack)
        return stack

    return build


def reference_stack(env: cdk.Environment | None) -> Callable[[cdk.App], cdk.Stack]:
    """The reference stack with every optional part on, as ``app.py`` composes it."""

    def build(app: cdk.App) -> cdk.Stack:
        return IotRemoteAccessStack(
            app, "IotRemoteAccess", settings=FleetSettings.parse(FULL_SETTINGS), env=env
        )

    return build
