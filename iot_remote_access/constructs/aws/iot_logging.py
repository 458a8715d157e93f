"""IotLogging: AWS IoT v2 logging into its log group, created explicitly (KMS, retention)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from iot_remote_access.constructs.aws import props

#: The log group AWS IoT v2 logging always writes to; its name is fixed by AWS.
IOT_LOG_GROUP_NAME = "AWSIotLogsV2"
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "DISABLED")


class IotLogging(Construct):
    """AWS IoT v2 logging for the account and region, at one level.

    AWS IoT creates ``AWSIotLogsV2`` itself, without encryption and kept forever,
    unless it exists first: this construct creates it with a KMS key and a
    retention, then turns logging on (``AWS::IoT::Logging``) with a role that
    may write to that log group only.

    ``AWS::IoT::Logging`` and ``AWSIotLogsV2`` exist once per account and region.
    Where they are managed elsewhere, pass ``manage=False``: the construct then
    only refers to the existing log group (for detections and export).

    :param level: the default log level. Default: "ERROR" (every refused publish,
        subscribe and connect is logged, successful traffic is not).
    :param encryption_key: KMS key of the log group; the key must let CloudWatch
        Logs use it. Default: none (CloudWatch Logs' own encryption).
    :param retention: Default: one year.
    :param manage: create the logging configuration and the log group. Default: True.
    :param removal_policy: of the log group. Default: RETAIN.

    Example::

        from aws_cdk import aws_logs as logs
        from iot_remote_access.constructs.aws import IotLogging

        IotLogging(stack, "IotLogging", level="WARN", retention=logs.RetentionDays.SIX_MONTHS)

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        level: str = "ERROR",
        encryption_key: kms.IKey | None = None,
        retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        manage: bool = True,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "IotLogging",
            level=(level, str),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            retention=(retention, logs.RetentionDays),
            manage=(manage, bool),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        if not cdk.Token.is_unresolved(level) and level not in LOG_LEVELS:
            raise ValueError(
                f"level: {level!r} is not an AWS IoT log level; allowed: {', '.join(LOG_LEVELS)}"
            )
        self.role: iam.Role | None = None
        self.logging: iot.CfnLogging | None = None
        if not manage:
            self.log_group: logs.ILogGroup = logs.LogGroup.from_log_group_name(
                self, "LogGroup", IOT_LOG_GROUP_NAME
            )
            return
        stack = cdk.Stack.of(self)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=IOT_LOG_GROUP_NAME,
            encryption_key=encryption_key,
            retention=retention,
            removal_policy=removal_policy,
        )
        # aws:SourceAccount/SourceArn: only AWS IoT acting for this account may use the role.
        self.role = iam.Role(
            self,
            "Role",
            description="AWS IoT v2 logging into AWSIotLogsV2 only",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="iot", resource="*", arn_format=cdk.ArnFormat.NO_RESOURCE_NAME
                        )
                    },
                }
            ),
        )
        # The AWSIoTLogging managed policy allows these on every log group; here
        # they are limited to AWSIotLogsV2. CreateLogGroup stays: AWS IoT may call
        # it before writing, and on an existing group it changes nothing.
        self.log_group.grant(
            self.role, "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"
        )
        self.logging = iot.CfnLogging(
            self,
            "Resource",
            account_id=stack.account,
            default_log_level=level,
            role_arn=self.role.role_arn,
        )
        # The role's policy must exist before AWS IoT first writes with it.
        self.logging.node.add_dependency(self.role)
        self.logging.node.add_dependency(self.log_group)
