"""DeviceDefenderAudit: the account's IoT audit checks, a daily audit, findings to SNS."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_sns as sns
from constructs import Construct

from iot_remote_access.constructs.aws import nag, props

#: Checks about certificates and policies (Device Defender Audit, unaffected by the
#: closing of Detect to new customers).
CERTIFICATE_CHECKS = (
    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
    "CA_CERTIFICATE_EXPIRING_CHECK",
    "DEVICE_CERTIFICATE_SHARED_CHECK",
    "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK",
    "CA_CERTIFICATE_KEY_QUALITY_CHECK",
    "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK",
    "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK",
    "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK",
    "DEVICE_CERTIFICATE_AGE_CHECK",
    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
    "CONFLICTING_CLIENT_IDS_CHECK",
)


class DeviceDefenderAudit(Construct):
    """``AWS::IoT::AccountAuditConfiguration`` + a daily ``AWS::IoT::ScheduledAudit``.

    The account has one audit configuration: deploy this construct once per account
    and region.

    :param findings_topic: SNS topic for audit findings.
    :param expiring_threshold_days: DEVICE_CERTIFICATE_EXPIRING_CHECK threshold (30..3652).
    :param checks: Default: ``CERTIFICATE_CHECKS``.

    Example::

        from iot_remote_access.constructs.aws import AlarmTopic, DeviceDefenderAudit

        DeviceDefenderAudit(
            stack,
            "DefenderAudit",
            findings_topic=AlarmTopic(stack, "Findings").topic,
            expiring_threshold_days=60,
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        findings_topic: sns.ITopic,
        expiring_threshold_days: int,
        checks: Sequence[str] = CERTIFICATE_CHECKS,
    ) -> None:
        props.check(
            "DeviceDefenderAudit",
            findings_topic=(findings_topic, props.I_TOPIC),
            expiring_threshold_days=(expiring_threshold_days, int),
            checks=(checks, props.SequenceOf(str)),
        )
        super().__init__(scope, construct_id)
        _check_props(expiring_threshold_days, checks)
        stack = cdk.Stack.of(self)
        audit_policy = iam.ManagedPolicy.from_aws_managed_policy_name(
            "service-role/AWSIoTDeviceDefenderAudit"
        )
        self.audit_role = iam.Role(
            self,
            "AuditRole",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
            managed_policies=[audit_policy],
        )
        nag.acknowledge_managed_policy(
            self.audit_role,
            audit_policy,
            "AWS maintains this read-only policy with exactly the describe/list calls "
            "its audit checks make; copying it would fall behind new checks.",
        )
        self.notify_role = iam.Role(
            self, "NotifyRole", assumed_by=iam.ServicePrincipal("iot.amazonaws.com")
        )
        findings_topic.grant_publish(self.notify_role)
        nag.acknowledge_wildcard_actions(
            self.notify_role,
            "Publishing to the KMS-encrypted findings topic needs GenerateDataKey "
            "variants on that topic's key only.",
            ["kms:GenerateDataKey*"],
        )
        self.configuration = iot.CfnAccountAuditConfiguration(
            self,
            "Configuration",
            account_id=stack.account,
            role_arn=self.audit_role.role_arn,
            audit_check_configurations=iot.CfnAccountAuditConfiguration.AuditCheckConfigurationsProperty(),
            audit_notification_target_configurations=iot.CfnAccountAuditConfiguration.AuditNotificationTargetConfigurationsProperty(
                sns=iot.CfnAccountAuditConfiguration.AuditNotificationTargetProperty(
                    enabled=True,
                    role_arn=self.notify_role.role_arn,
                    target_arn=findings_topic.topic_arn,
                )
            ),
        )
        for check in checks:
            key = _CFN_KEYS[check]
            self.configuration.add_property_override(
                f"AuditCheckConfigurations.{key}.Enabled", True
            )
        # The L1 types lack the threshold; CloudFormation's schema has it.
        self.configuration.add_property_override(
            "AuditCheckConfigurations.DeviceCertificateExpiringCheck.Configuration."
            "CertExpirationThresholdInDays",
            str(expiring_threshold_days),
        )
        self.scheduled_audit = iot.CfnScheduledAudit(
            self,
            "DailyAudit",
            frequency="DAILY",
            target_check_names=list(checks),
        )
        self.scheduled_audit.node.add_dependency(self.configuration)


def _check_props(expiring_threshold_days: int, checks: Sequence[str]) -> None:
    if not 30 <= expiring_threshold_days <= 3652:
        raise ValueError(f"expiring_threshold_days: {expiring_threshold_days!r}; allowed: 30..3652")
    unknown = [c for c in checks if c not in CERTIFICATE_CHECKS]
    if unknown or not checks:
        raise ValueError(
            f"checks: {unknown or list(checks)!r}; allowed: a non-empty subset of "
            f"{', '.join(CERTIFICATE_CHECKS)}"
        )


_CFN_KEYS = {
    "DEVICE_CERTIFICATE_EXPIRING_CHECK": "DeviceCertificateExpiringCheck",
    "CA_CERTIFICATE_EXPIRING_CHECK": "CaCertificateExpiringCheck",
    "DEVICE_CERTIFICATE_SHARED_CHECK": "DeviceCertificateSharedCheck",
    "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK": "DeviceCertificateKeyQualityCheck",
    "CA_CERTIFICATE_KEY_QUALITY_CHECK": "CaCertificateKeyQualityCheck",
    "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK": "RevokedDeviceCertificateStillActiveCheck",
    "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK": "RevokedCaCertificateStillActiveCheck",
    "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK": (
        "IntermediateCaRevokedForActiveDeviceCertificatesCheck"
    ),
    "DEVICE_CERTIFICATE_AGE_CHECK": "DeviceCertificateAgeCheck",
    "IOT_POLICY_OVERLY_PERMISSIVE_CHECK": "IotPolicyOverlyPermissiveCheck",
    "CONFLICTING_CLIENT_IDS_CHECK": "ConflictingClientIdsCheck",
}
