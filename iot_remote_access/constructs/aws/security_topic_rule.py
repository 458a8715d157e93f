"""SecurityTopicRule: an AWS IoT topic rule whose actions may do exactly one thing each."""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from iot_remote_access.constructs.aws import props

#: IoT SQL version that keeps JSON arrays (the subscribe event's ``topics``);
#: the default 2015-10-08 turns them into empty lists.
SQL_VERSION = "2016-03-23"
_RULE_NAME = re.compile(r"[a-zA-Z0-9_]{1,128}")


class SecurityTopicRule(Construct):
    """A topic rule that writes matches to one log group and/or invokes one function.

    Least privilege: the rule gets its own role, assumable only by AWS IoT for
    this very rule (``aws:SourceArn`` is the rule's ARN), allowed to write to the
    given log group and the error log group and nothing else. The function
    permission is likewise limited to this rule's ARN and account.

    :param sql: the rule's SQL (version 2016-03-23), e.g.
        ``SELECT * FROM '$aws/events/presence/connected/+'``.
    :param description: shown in the AWS IoT console.
    :param error_log_group: where the rules engine reports failed actions.
    :param log_group: write each match there as one log event. Default: none.
    :param function: invoke it (asynchronously) with each match. Default: none.
    :param rule_name: Default: generated from the construct path (IoT rule names
        allow letters, digits and ``_``).

    Example::

        from aws_cdk import aws_logs as logs
        from iot_remote_access.constructs.aws import SecurityTopicRule

        SecurityTopicRule(
            stack,
            "TelemetryArchive",
            sql="SELECT * FROM 'plant/+/up'",
            description="keep the fleet's telemetry",
            log_group=logs.LogGroup(stack, "Telemetry"),
            error_log_group=logs.LogGroup(stack, "RuleErrors"),
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        sql: str,
        description: str,
        error_log_group: logs.ILogGroup,
        log_group: logs.ILogGroup | None = None,
        function: lambda_.IFunction | None = None,
        rule_name: str | None = None,
    ) -> None:
        props.check(
            "SecurityTopicRule",
            sql=(sql, str),
            description=(description, str),
            error_log_group=(error_log_group, props.I_LOG_GROUP),
            log_group=(log_group, props.optional(props.I_LOG_GROUP)),
            function=(function, props.optional(props.I_FUNCTION)),
            rule_name=(rule_name, props.optional(str)),
        )
        super().__init__(scope, construct_id)
        if log_group is None and function is None:
            raise ValueError("log_group, function: both are None; allowed: at least one action")
        stack = cdk.Stack.of(self)
        self.rule_name = rule_name or cdk.Names.unique_resource_name(
            self, max_length=128, separator="_", allowed_special_characters="_"
        )
        if not cdk.Token.is_unresolved(self.rule_name) and not _RULE_NAME.fullmatch(self.rule_name):
            raise ValueError(
                f"rule_name: {self.rule_name!r} is not an IoT rule name; "
                "allowed: [a-zA-Z0-9_]{1,128}"
            )
        # Built from the name (not the rule's Arn attribute) so the role's trust
        # policy can name the rule without a dependency cycle.
        self.rule_arn = stack.format_arn(
            service="iot", resource="rule", resource_name=self.rule_name
        )
        self._role(log_group, error_log_group)
        actions = self._actions(log_group, function)
        self.rule = iot.CfnTopicRule(
            self,
            "Resource",
            rule_name=self.rule_name,
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=sql,
                aws_iot_sql_version=SQL_VERSION,
                description=description,
                rule_disabled=False,
                actions=actions,
                error_action=iot.CfnTopicRule.ActionProperty(
                    cloudwatch_logs=iot.CfnTopicRule.CloudwatchLogsActionProperty(
                        log_group_name=error_log_group.log_group_name,
                        role_arn=self.role.role_arn,
                    )
                ),
            ),
        )
        # AWS IoT checks it can assume the role when the rule is created.
        self.rule.node.add_dependency(self.role)
        if function is not None:
            function.add_permission(
                f"InvokedBy{construct_id}",
                principal=iam.ServicePrincipal("iot.amazonaws.com"),
                source_arn=self.rule_arn,
                source_account=stack.account,
            )

    def _role(self, log_group: logs.ILogGroup | None, error_log_group: logs.ILogGroup) -> None:
        stack = cdk.Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            description=f"AWS IoT rule {self.rule_name}: its actions only",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnEquals": {"aws:SourceArn": self.rule_arn},
                }
            ),
        )
        for group in (log_group, error_log_group):
            if group is not None:
                group.grant(
                    self.role,
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                )

    def _actions(
        self, log_group: logs.ILogGroup | None, function: lambda_.IFunction | None
    ) -> list[iot.CfnTopicRule.ActionProperty]:
        actions: list[iot.CfnTopicRule.ActionProperty] = []
        if log_group is not None:
            actions.append(
                iot.CfnTopicRule.ActionProperty(
                    cloudwatch_logs=iot.CfnTopicRule.CloudwatchLogsActionProperty(
                        log_group_name=log_group.log_group_name,
                        role_arn=self.role.role_arn,
                        batch_mode=False,
                    )
                )
            )
        if function is not None:
            actions.append(
                iot.CfnTopicRule.ActionProperty(
                    lambda_=iot.CfnTopicRule.LambdaActionProperty(
                        function_arn=function.function_arn
                    )
                )
            )
        return actions
