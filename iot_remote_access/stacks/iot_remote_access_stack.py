"""IotRemoteAccessStack: the reference deployment on AWS."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from iot_remote_access.constructs.aws import CertificateRotation, DevicePolicy, SecurityMonitoring
from iot_remote_access.guard.cdk_plugin import IotPolicyGuard
from iot_remote_access.settings import FleetSettings


class IotRemoteAccessStack(cdk.Stack):
    """Composes the AWS constructs from one ``FleetSettings``; wiring only, no logic.

    Registers the IoT policy guard and cdk-nag's AwsSolutions pack on the stack,
    so synthesis fails on an overly permissive IoT policy or an unacknowledged
    AwsSolutions finding.

    :param settings: Default: ``FleetSettings()`` (safe defaults).
    :param checks: run the guard and cdk-nag. Default: True.
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
            self, "DevicePolicy", topics=self.settings.topic_model()
        )
        # Reads the device policy at synthesis: switches turned on later are checked too.
        self.security_monitoring = (
            SecurityMonitoring(self, "SecurityMonitoring", device_access=self.device_policy,
                               settings=self.settings.monitoring)
            if self.settings.monitoring.enabled else None
        )
        self.certificate_rotation = (
            CertificateRotation(
                self,
                "CertificateRotation",
                device_policy=self.device_policy,
                settings=self.settings.certificates,
                alarm_topic=(
                    self.security_monitoring.alarm_topic if self.security_monitoring else None
                ),
            )
            if self.settings.certificates is not None
            else None
        )
        if checks:
            cdk.Validations.of(self).add_plugins(AwsSolutionsChecks(self), IotPolicyGuard())
