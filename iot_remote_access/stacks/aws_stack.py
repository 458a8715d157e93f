"""IotRemoteAccessStack: the reference deployment on AWS."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from iot_remote_access.constructs.aws import (
    AccessLedger,
    AuditTrail,
    CertificateRotation,
    CommandBroker,
    DevicePolicy,
    SecureTunneling,
    SecurityMonitoring,
    TunnelAlarms,
)
from iot_remote_access.core.aws_schema import LEDGER_OWN_CLOSERS_VARIABLE
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
from iot_remote_access.guard.nag import aws_solutions_plugins
from iot_remote_access.settings import FleetSettings


class IotRemoteAccessStack(cdk.Stack):
    """Composes the AWS constructs from one ``FleetSettings``; wiring only, no logic.

    Registers the IoT policy guard and cdk-nag's AwsSolutions pack on the stack,
    so synthesis fails on an overly permissive IoT policy or an unacknowledged
    AwsSolutions finding.

    With ``settings.tunneling.enabled`` (the default) it adds ``audit_trail``
    (AuditTrail) and ``secure_tunneling`` (SecureTunneling); both are None otherwise.
    With ``settings.commands.enabled`` it adds ``commands`` (CommandBroker) with the
    settings' catalogue; None otherwise.
    With a ``ledger`` section in the settings it adds ``access_ledger`` (AccessLedger),
    connected to the tunnel broker and sweeper, the certificate handlers and the
    command functions.

    :param settings: Default: ``FleetSettings()`` (safe defaults).
    :param checks: run the guard and cdk-nag's AwsSolutions pack (cdk-nag 3, the ``nag``
        extra; without it, or with cdk-nag 2, a synthesis warning says so). Default: True.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FleetSettings | None = None,
        checks: bool = True,
        **stack_props: Any,
    ) -> None:
        super().__init__(scope, construct_id, **stack_props)
        self.settings = settings or FleetSettings()
        self.device_policy = DevicePolicy(
            self, "DevicePolicy", access=self.settings.device_access()
        )
        self.audit_trail: AuditTrail | None = None
        self.secure_tunneling: SecureTunneling | None = None
        if self.settings.tunneling.enabled:
            self._tunneling()
        # Before monitoring: the SIEM export ships the command functions' audit records too.
        self.commands = self._commands() if self.settings.commands.enabled else None
        # Reads the device policy at synthesis: switches turned on later are checked too.
        self.security_monitoring = self._monitoring() if self.settings.monitoring.enabled else None
        self.certificate_rotation = (
            self._certificates() if self.settings.certificates is not None else None
        )
        self.access_ledger = self._access_ledger() if self._ledger_configured() else None
        # Sees OpenTunnel/CloseTunnel only through a CloudTrail trail: audit_trail
        # (settings.tunneling), or the account's own where tunneling is off here.
        self.tunnel_alarms = self._tunnel_alarms() if self.settings.tunnel_alarms.enabled else None
        if self.access_ledger is not None and self.tunnel_alarms is not None:
            self._record_operator_closes(self.access_ledger, self.tunnel_alarms)
        if checks:
            cdk.Validations.of(self).add_plugins(*aws_solutions_plugins(self), IotPolicyGuard())

    def _tunneling(self) -> None:
        tunneling = self.settings.tunneling
        self.audit_trail = AuditTrail(
            self, "AuditTrail", retention_days=tunneling.audit_retention_days
        )
        self.secure_tunneling = tunnels = SecureTunneling(
            self,
            "SecureTunneling",
            device_policy=self.device_policy,
            policy=tunneling.policy(self.settings.thing_name_pattern),
            sweep_interval=cdk.Duration.minutes(tunneling.sweep_interval_minutes),
            encryption_key=self.audit_trail.key,
            operator_principal=iam.AccountRootPrincipal() if tunneling.operator_role else None,
        )
        for name, value in {
            "TunnelBrokerUrl": tunnels.broker_url.url,
            "TunnelOperatorPolicyArn": tunnels.operator_policy.managed_policy_arn,
            "TunnelBrokerAuditLogGroup": tunnels.broker.log_group.log_group_name,
            "TunnelSweeperAuditLogGroup": tunnels.sweeper.log_group.log_group_name,
            "AuditTrailLogGroup": self.audit_trail.log_group.log_group_name,
            "AuditTrailBucket": self.audit_trail.bucket.bucket_name,
        }.items():
            cdk.CfnOutput(self, name, value=value)
        if tunnels.operator_role is not None:
            cdk.CfnOutput(self, "TunnelOperatorRoleArn", value=tunnels.operator_role.role_arn)

    def _monitoring(self) -> SecurityMonitoring:
        # The SIEM gets who opened which tunnel (broker/sweeper audit records) and
        # every management API call (CloudTrail), next to the IoT logs.
        audit_log_groups = (
            [
                self.audit_trail.log_group,
                self.secure_tunneling.broker.log_group,
                self.secure_tunneling.sweeper.log_group,
            ]
            if self.audit_trail is not None and self.secure_tunneling is not None
            else []
        )
        if self.commands is not None:
            audit_log_groups += [f.log_group for f in self._command_functions(self.commands)]
        return SecurityMonitoring(
            self,
            "SecurityMonitoring",
            device_access=self.device_policy,
            settings=self.settings.monitoring,
            log_groups_to_export=audit_log_groups,
        )

    def _commands(self) -> CommandBroker:
        commands = CommandBroker(
            self,
            "Commands",
            catalogue=self.settings.commands.command_catalogue(),
            topics=self.settings.topic_model(),
            thing_name_pattern=self.settings.thing_name_pattern,
            encryption_key=self.audit_trail.key if self.audit_trail is not None else None,
            device_policy=self.device_policy,
            # The access ledger, where the stack has one, connects ``commands.writers``.
        )
        cdk.CfnOutput(self, "CommandBrokerUrl", value=commands.broker_url.url)
        cdk.CfnOutput(
            self, "CommandOperatorPolicyArn", value=commands.operator_policy.managed_policy_arn
        )
        for function in self._command_functions(commands):
            name = function.node.id
            cdk.CfnOutput(
                self, f"Command{name}AuditLogGroup", value=function.log_group.log_group_name
            )
        return commands

    @staticmethod
    def _command_functions(commands: CommandBroker) -> list[Any]:
        """The functions that write command audit records (one log group each)."""
        return list(commands.writers)

    def _certificates(self) -> CertificateRotation:
        return CertificateRotation(
            self,
            "CertificateRotation",
            device_policy=self.device_policy,
            settings=self.settings.certificates,
            alarm_topic=(
                self.security_monitoring.alarm_topic if self.security_monitoring else None
            ),
        )

    # -- access ledger (settings ``ledger``; docs/ledger.md) ----------------------------

    def _ledger_configured(self) -> bool:
        # Only with a ``ledger`` section in the settings: its anchors are locked for the
        # retention (Object Lock, compliance mode), so it is never added by surprise.
        return "ledger" in self.settings.model_fields_set and self.settings.ledger.enabled

    def _access_ledger(self) -> AccessLedger:
        section = self.settings.ledger
        ledger = AccessLedger(
            self,
            "AccessLedger",
            retention_days=section.retention_days,
            anchor_interval_minutes=section.anchor_interval_minutes,
            ledger_id=section.ledger_id,
            alarm_topic=self.security_monitoring.alarm_topic if self.security_monitoring else None,
        )
        # Every function that decides remote access records its decisions.
        if self.secure_tunneling is not None:
            ledger.connect(self.secure_tunneling.broker, self.secure_tunneling.sweeper)
        if self.certificate_rotation is not None:
            rotation = self.certificate_rotation
            ledger.connect(rotation.signer, rotation.confirm, rotation.planner, rotation.worker)
        if self.commands is not None:
            # Broker, responses, sweeper and fan-out dispatcher: every command decision.
            ledger.connect(*self.commands.writers)
        cdk.CfnOutput(self, "LedgerTable", value=ledger.table.table_name)
        cdk.CfnOutput(self, "LedgerAnchorBucket", value=ledger.bucket.bucket_name)
        return ledger

    def _record_operator_closes(self, ledger: AccessLedger, alarms: TunnelAlarms) -> None:
        """The tunnel-metrics function appends CloseTunnel calls of operators; the
        sweeper's and the broker's own closes are recorded by them (skipped by role)."""
        ledger.connect(alarms.handler)
        if self.secure_tunneling is not None:
            own = [self.secure_tunneling.broker.role, self.secure_tunneling.sweeper.role]
            alarms.function.add_environment(
                LEDGER_OWN_CLOSERS_VARIABLE, cdk.Fn.join(",", [role.role_arn for role in own])
            )

    def _tunnel_alarms(self) -> TunnelAlarms:
        tunnel = self.settings.tunnel_alarms
        return TunnelAlarms(
            self,
            "TunnelAlarms",
            max_opens_per_thing_per_day=tunnel.max_opens_per_thing_per_day,
            renewal_window_minutes=tunnel.renewal_window_minutes,
            max_open_hours=tunnel.max_open_hours,
            email_addresses=tunnel.email_addresses,
        )
