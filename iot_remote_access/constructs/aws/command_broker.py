"""CommandBroker: structured remote commands, sent only through a broker that checks them.

Operators never publish to a device's command topic themselves: a broker
function does, after checking the request against the fleet's
:class:`~iot_remote_access.core.commands.CommandCatalogue` (who may send which
command, for which stated purpose, to which things, with which arguments), and
records who asked. This is the everyday path of remote operation; Secure
Tunneling stays the exception.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iot_remote_access.constructs.aws import props
from iot_remote_access.constructs.aws.access_ledger import AccessLedger
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.lambda_options import LambdaOptions
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.core.command_executions import (
    BY_STATUS_ATTRIBUTES,
    BY_STATUS_INDEX,
    INDEX_KEYS,
)
from iot_remote_access.core.commands import CommandCatalogue
from iot_remote_access.core.topics import THING_NAME_RULE, THING_PLACEHOLDER, TopicModel

CATALOGUE_VARIABLE = "COMMAND_CATALOGUE"
COMMANDS_TOPIC_VARIABLE = "COMMANDS_TOPIC"
RESPONSES_TOPIC_VARIABLE = "RESPONSES_TOPIC"
THING_NAME_PATTERN_VARIABLE = "THING_NAME_PATTERN"
TABLE_VARIABLE = "EXECUTIONS_TABLE"
QUEUE_VARIABLE = "FANOUT_QUEUE_URL"
DEFAULT_SWEEP_INTERVAL = cdk.Duration.minutes(5)
#: Every command function records its decisions through these shared packages.
AUDIT_PACKAGES = ("command_audit", "command_fanout_counts", "ledger")
#: handler package -> the shared packages staged with it.
SHARED_PACKAGES = {
    "command_broker": AUDIT_PACKAGES,
    "command_responses": AUDIT_PACKAGES,
    "command_sweep": AUDIT_PACKAGES,
    # The dispatcher publishes with the broker's own code and rules.
    "command_fanout": ("command_broker", *AUDIT_PACKAGES),
}
#: Lambda allows 4 KB for all environment variables together; the rest is Powertools' own.
MAX_CATALOGUE_BYTES = 3072


def responses_rule_sql(topics: TopicModel) -> str:
    """The IoT rule over every thing's responses topic.

    The payload is passed base64-encoded, so no field of it can shadow ``topic``:
    the responses function takes the thing from the topic only. A rule may use a
    ``+`` filter; devices never get one.
    """
    topic_filter = topics.responses.replace(THING_PLACEHOLDER, "+")
    if "'" in topic_filter:
        raise ValueError(
            f'responses: {topics.responses!r} contains a quote; allowed: a topic without "\'" '
            "(it is quoted in the IoT rule's SQL)"
        )
    return (
        "SELECT encode(*, 'base64') AS payload, topic() AS topic, "  # noqa: S608 (no quote, above)
        f"get_mqtt_property('correlation_data') AS correlation FROM '{topic_filter}'"
    )


def publish_resource(topics: TopicModel) -> str:
    """The one topic pattern the broker may publish to: the commands template, any thing.

    ``{thing}`` becomes ``*`` and nothing else changes, so the grant covers the
    command topics of the fleet and no other topic. The topic model forbids IAM
    wildcards (``*``, ``?``) in templates, so ``*`` here can only stand for a thing.
    """
    return f"topic/{topics.commands.replace(THING_PLACEHOLDER, '*')}"


class CommandBroker(Construct):
    """A command broker behind an IAM-authenticated function URL, and the operator policy.

    - ``broker``: the only principal this construct allows ``iot:Publish``, and only
      on the fleet's command topics (``topic/cmd/*/commands``). It checks the
      request against the catalogue and that the thing exists, publishes with the
      command id in the payload and as MQTT 5 correlation data next to the thing's
      response topic, and writes one audit record per decision.
    - ``operator_policy``: invoke the broker's URL; an explicit Deny on
      ``iot:Publish`` to the command topics, so an operator's own IoT permissions
      cannot go around the broker.

    - ``executions``: a DynamoDB table with one record per command sent (id, thing,
      command, arguments digest, requester, reason, purpose, status, times),
      written ``pending`` by the broker before it publishes.
    - ``responder``: invoked by an IoT rule on the responses topics; completes a
      record only from the thing it was sent to, while pending and before expiry.

    Devices need the publish grant on their responses topic: the DevicePolicy's
    ``command_responses`` switch (``DeviceAccess(command_responses=True)``).

    :param catalogue: the commands that may be sent. Default: empty (nothing can be sent).
    :param topics: the fleet's topic model. Default: ``TopicModel()``.
    :param thing_name_pattern: the fleet's thing-name rule. Default: AWS's own.
    :param encryption_key: KMS key for the log group (the audit records) and the
        environment. Default: AWS-owned keys.
    :param log_retention: how long the audit records are kept. Default: one year.
    :param device_policy: the fleet's policy; gets ``enable_commands()`` (each device may
        publish on its own responses topic). Default: none (grant it yourself).
    :param lambda_options: VPC, subnets, security groups, reserved concurrency and dead-letter
        queue (:class:`LambdaOptions`) for the broker and the responses function. Default: none of
        them.
    :param ledger: an ``AccessLedger``: every function appends its audit records to it
        (the broker fails closed: a send it cannot record is not sent). Default: none.
    :param sweep_interval: how often ``sweeper`` writes ``timed-out`` into pending records
        past their expiry, 1 to 60 minutes. Default: 5 minutes.

    Also: ``sweeper`` (the scheduled sweep), ``fanout_queue`` and ``dispatcher`` (fleet
    fan-out: one wave per message, at the requested rate).

    Example::

        from iot_remote_access.constructs.aws import CommandBroker, DevicePolicy
        from iot_remote_access.core.commands import CommandCatalogue

        commands = CommandBroker(
            stack,
            "Commands",
            catalogue=CommandCatalogue(),
            device_policy=DevicePolicy(stack, "Fleet"),
        )
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        catalogue: CommandCatalogue | None = None,
        topics: TopicModel | None = None,
        thing_name_pattern: str = THING_NAME_RULE,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        device_policy: DevicePolicy | None = None,
        lambda_options: LambdaOptions | None = None,
        ledger: AccessLedger | None = None,
        sweep_interval: cdk.Duration = DEFAULT_SWEEP_INTERVAL,
    ) -> None:
        props.check(
            "CommandBroker",
            catalogue=(catalogue, props.optional(CommandCatalogue)),
            topics=(topics, props.optional(TopicModel)),
            thing_name_pattern=(thing_name_pattern, str),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            log_retention=(log_retention, logs.RetentionDays),
            device_policy=(device_policy, props.optional(DevicePolicy)),
            lambda_options=(lambda_options, props.optional(LambdaOptions)),
            ledger=(ledger, props.optional(AccessLedger)),
            sweep_interval=(sweep_interval, cdk.Duration),
        )
        _check_interval(sweep_interval)
        super().__init__(scope, construct_id)
        self._lambda_options = lambda_options
        self.catalogue = catalogue or CommandCatalogue()
        self.topics = topics or TopicModel()
        if device_policy is not None:
            # Each device may then publish its answers on its own responses topic only.
            device_policy.enable_commands()
        catalogue_json = _catalogue_json(self.catalogue)
        iot_arn = self._iot_arn
        command_topics = iot_arn(publish_resource(self.topics))
        self.executions = _executions_table(self, encryption_key)
        # The dispatcher sends fan-out waves with the broker's rules: the same settings.
        self._shared_environment = {
            CATALOGUE_VARIABLE: catalogue_json,
            COMMANDS_TOPIC_VARIABLE: self.topics.commands,
            RESPONSES_TOPIC_VARIABLE: self.topics.responses,
            THING_NAME_PATTERN_VARIABLE: thing_name_pattern,
            TABLE_VARIABLE: self.executions.table_name,
        }
        self.broker = LibraryFunction(
            self,
            "Broker",
            lambda_options=self._lambda_options,
            handler_package="command_broker",
            shared_packages=SHARED_PACKAGES["command_broker"],
            description="iot-remote-access command broker: the only sender of commands",
            environment=self._shared_environment,
            encryption_key=encryption_key,
            log_retention=log_retention,
        )
        self.broker_url = self.broker.function.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.AWS_IAM
        )
        self._grant_broker(command_topics, iot_arn("thing/*"))

        self._responses(catalogue_json, encryption_key, log_retention)
        self._sweeper(encryption_key, log_retention, sweep_interval)
        self._fanout(
            command_topics,
            [iot_arn("thinggroup/*"), iot_arn("thing/*")],
            encryption_key,
            log_retention,
        )
        self.operator_policy = self._operator_policy(command_topics)
        #: The functions that write audit records (each built with the ledger package, so
        #: ``AccessLedger.connect(*commands.writers)`` also makes them ledger writers).
        self.writers = [self.broker, self.responder, self.sweeper, self.dispatcher]
        if ledger is not None:
            self._connect(ledger)

    def _iot_arn(self, resource: str) -> str:
        resource_type, name = resource.split("/", 1)
        return cdk.Stack.of(self).format_arn(
            service="iot",
            resource=resource_type,
            resource_name=name,
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _connect(self, ledger: AccessLedger) -> None:
        """Every writer appends its audit records to ``ledger`` too."""
        for function in self.writers:
            ledger.grant_append(function.role)
            for name, value in ledger.writer_environment().items():
                function.function.add_environment(name, value)

    def _grant_broker(self, command_topics: str, things: str) -> None:
        role = self.broker.role
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishCommandsOnly",
                actions=["iot:Publish"],
                resources=[command_topics],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CheckThings", actions=["iot:DescribeThing"], resources=[things]
            )
        )
        # GetItem: retried client tokens, GET /commands/<id>; Query: GET /commands (the
        # table's own indexes); DeleteItem: a fan-out record whose first wave was not queued.
        _grant_table(
            self.executions,
            role,
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
        )
        _grant_table(self.executions, role, ["dynamodb:Query"], indexes=True)
        _acknowledge(
            role,
            "The broker sends commands to any thing of the fleet, chosen per request and "
            "checked against the catalogue first: the thing part of the command topic and "
            "of the thing ARN is not known at deploy time. No other topic is granted.",
            [publish_resource(self.topics), "thing/*"],
        )

    def _sweeper(
        self, key: kms.IKey | None, retention: logs.RetentionDays, interval: cdk.Duration
    ) -> None:
        self.sweeper = LibraryFunction(
            self,
            "Sweeper",
            handler_package="command_sweep",
            shared_packages=SHARED_PACKAGES["command_sweep"],
            lambda_options=self._lambda_options,
            description="iot-remote-access command sweep: writes timed-out into expired records",
            environment={TABLE_VARIABLE: self.executions.table_name},
            encryption_key=key,
            log_retention=retention,
            timeout=cdk.Duration.minutes(2),
        )
        _grant_table(self.executions, self.sweeper.role, ["dynamodb:UpdateItem"])
        _grant_table(self.executions, self.sweeper.role, ["dynamodb:Query"], indexes=True)
        # A failed sweep is not retried: the next scheduled one is minutes away.
        self.sweeper.function.configure_async_invoke(retry_attempts=0)
        self.sweep_rule = events.Rule(
            self,
            "SweepSchedule",
            description="iot-remote-access: time out commands nobody answered",
            schedule=events.Schedule.rate(interval),
            targets=[targets.LambdaFunction(self.sweeper.function, retry_attempts=0)],
        )

    def _fanout(
        self,
        command_topics: str,
        groups_and_things: list[str],
        key: kms.IKey | None,
        retention: logs.RetentionDays,
    ) -> None:
        """The queue of fan-out waves and the dispatcher that sends each wave."""
        # SQS-managed encryption even with a key: a message holds a fan-out id and a cursor
        # only, and a KMS key would need wildcard kms actions for every sender.
        encryption = sqs.QueueEncryption.SQS_MANAGED
        dead_letters = sqs.Queue(
            self,
            "FanoutDeadLetters",
            encryption=encryption,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        dispatch_timeout = cdk.Duration.minutes(2)
        self.fanout_queue = sqs.Queue(
            self,
            "FanoutQueue",
            encryption=encryption,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.minutes(12),  # 6 x the dispatcher's timeout
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=3, queue=dead_letters),
        )
        self.dispatcher = LibraryFunction(
            self,
            "Dispatcher",
            handler_package="command_fanout",
            shared_packages=SHARED_PACKAGES["command_fanout"],
            lambda_options=self._lambda_options,
            description="iot-remote-access fan-out dispatcher: sends one wave per message",
            environment={
                **self._shared_environment,
                QUEUE_VARIABLE: self.fanout_queue.queue_url,
            },
            encryption_key=key,
            log_retention=retention,
            timeout=dispatch_timeout,
        )
        self.dispatcher.function.add_event_source(
            event_sources.SqsEventSource(self.fanout_queue, batch_size=1)
        )
        self.broker.function.add_environment(QUEUE_VARIABLE, self.fanout_queue.queue_url)
        self.fanout_queue.grant_send_messages(self.broker.role)
        self.fanout_queue.grant_send_messages(self.dispatcher.role)
        role = self.dispatcher.role
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishCommandsOnly", actions=["iot:Publish"], resources=[command_topics]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadThingGroups",
                actions=["iot:ListThingsInThingGroup"],
                resources=[groups_and_things[0]],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CheckListedThings",
                actions=["iot:DescribeThing"],
                resources=[groups_and_things[1]],
            )
        )
        _grant_table(
            self.executions, role, ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
        )
        _acknowledge(
            role,
            "The dispatcher sends a fan-out's command to the things of a group or list chosen "
            "per request and checked against the catalogue: neither the thing part of the "
            "command topic nor the group is known at deploy time. No other topic is granted.",
            [publish_resource(self.topics), "thinggroup/*", "thing/*"],
        )

    def _operator_policy(self, command_topics: str) -> iam.ManagedPolicy:
        return iam.ManagedPolicy(
            self,
            "OperatorPolicy",
            description="iot-remote-access operators: commands through the broker only",
            statements=[
                iam.PolicyStatement(
                    sid="InvokeTheBrokerUrl",
                    actions=["lambda:InvokeFunctionUrl"],
                    resources=[self.broker.function.function_arn],
                    conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                ),
                iam.PolicyStatement(
                    sid="InvokeTheBrokerThroughItsUrlOnly",
                    actions=["lambda:InvokeFunction"],
                    resources=[self.broker.function.function_arn],
                    conditions={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                ),
                iam.PolicyStatement(
                    sid="NoCommandsAroundTheBroker",
                    effect=iam.Effect.DENY,
                    actions=["iot:Publish"],
                    resources=[command_topics],
                ),
            ],
        )

    def _responses(
        self, catalogue_json: str, key: kms.IKey | None, retention: logs.RetentionDays
    ) -> None:
        self.responder = LibraryFunction(
            self,
            "Responses",
            lambda_options=self._lambda_options,
            handler_package="command_responses",
            shared_packages=SHARED_PACKAGES["command_responses"],
            description="iot-remote-access command responses: completes execution records",
            environment={
                CATALOGUE_VARIABLE: catalogue_json,
                RESPONSES_TOPIC_VARIABLE: self.topics.responses,
                TABLE_VARIABLE: self.executions.table_name,
            },
            encryption_key=key,
            log_retention=retention,
        )
        _grant_table(
            self.executions, self.responder.role, ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        )
        # Rule errors land in the responder's own log group, next to its audit records.
        error_role = iam.Role(
            self,
            "RuleErrorRole",
            assumed_by=iam.ServicePrincipal("iot.amazonaws.com"),
            description="iot-remote-access: writes command-response rule errors",
        )
        self.responder.log_group.grant_write(error_role)
        self.responses_rule = iot.CfnTopicRule(
            self,
            "ResponsesRule",
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=responses_rule_sql(self.topics),
                aws_iot_sql_version="2016-03-23",
                rule_disabled=False,
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(
                            function_arn=self.responder.function.function_arn
                        )
                    )
                ],
                error_action=iot.CfnTopicRule.ActionProperty(
                    cloudwatch_logs=iot.CfnTopicRule.CloudwatchLogsActionProperty(
                        log_group_name=self.responder.log_group.log_group_name,
                        role_arn=error_role.role_arn,
                    )
                ),
            ),
        )
        self.responder.function.add_permission(
            "ResponsesRuleInvoke",
            principal=iam.ServicePrincipal("iot.amazonaws.com"),
            source_arn=self.responses_rule.attr_arn,
            source_account=cdk.Stack.of(self).account,
        )


def _executions_table(scope: Construct, key: kms.IKey | None) -> dynamodb.Table:
    """One record per command; point-in-time recovery, and TTL ends old records."""
    table = dynamodb.Table(
        scope,
        "Executions",
        partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=(
            dynamodb.TableEncryption.CUSTOMER_MANAGED
            if key
            else dynamodb.TableEncryption.AWS_MANAGED
        ),
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute="ttl",
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    for index, (partition, sort) in INDEX_KEYS.items():
        sweep_only = index == BY_STATUS_INDEX
        table.add_global_secondary_index(
            index_name=index,
            partition_key=dynamodb.Attribute(name=partition, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort, type=dynamodb.AttributeType.STRING),
            # The sweep reads ids and what its audit record names; listings read records.
            projection_type=(
                dynamodb.ProjectionType.INCLUDE if sweep_only else dynamodb.ProjectionType.ALL
            ),
            non_key_attributes=list(BY_STATUS_ATTRIBUTES) if sweep_only else None,
        )
    return table


def _check_interval(interval: cdk.Duration) -> None:
    seconds = interval.to_seconds()
    if not cdk.Token.is_unresolved(seconds) and not 60 <= seconds <= 3600:
        raise ValueError(
            f"sweep_interval: {interval.to_human_string()} is not allowed; allowed: 1 to 60 minutes"
        )


def _grant_table(
    table: dynamodb.Table, role: iam.IRole, actions: list[str], *, indexes: bool = False
) -> None:
    """``actions`` on the table itself, or (``indexes``) on its own secondary indexes only.

    Not ``Table.grant``: with indexes it adds ``index/*`` to every action, so a
    function that only reads and writes items could also query every index.
    """
    arn = f"{table.table_arn}/index/*" if indexes else table.table_arn
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[arn]))
    if table.encryption_key is not None:
        # What DynamoDB asks of the key for item reads and writes (no wildcard actions).
        table.encryption_key.grant(role, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
    if indexes:
        _acknowledge_indexes(role, table)


def _acknowledge_indexes(role: iam.IRole, table: dynamodb.Table) -> None:
    """cdk-nag flags ``<table>/index/*``: the table's own indexes, which CDK grants together."""
    stack = cdk.Stack.of(role)
    logical_id = stack.get_logical_id(table.node.default_child)  # type: ignore[arg-type]
    cdk.Validations.of(role).acknowledge(
        cdk.Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/index/*]",
            reason="Queries on this table's own secondary indexes (listings, the sweep); "
            "no other table is granted.",
        )
    )


def _acknowledge(scope: Construct, reason: str, resources: list[str]) -> None:
    # cdk-nag names the finding by the ARN as synthesized: concrete when the stack
    # has an environment, pseudo parameters otherwise.
    stack = cdk.Stack.of(scope)

    def shown(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if cdk.Token.is_unresolved(value) else value

    prefix = (
        f"arn:{shown(stack.partition, 'Partition')}:iot:{shown(stack.region, 'Region')}:"
        f"{shown(stack.account, 'AccountId')}"
    )
    for resource in resources:
        cdk.Validations.of(scope).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::{prefix}:{resource}]",
                reason=reason,
            )
        )


def _catalogue_json(catalogue: CommandCatalogue) -> str:
    """The catalogue as the functions read it, refused past Lambda's environment limit."""
    catalogue_json = catalogue.to_json()
    size = len(catalogue_json.encode("utf-8"))
    if size > MAX_CATALOGUE_BYTES:
        raise ValueError(
            f"catalogue: {size} bytes as JSON; allowed: at most {MAX_CATALOGUE_BYTES} "
            "(Lambda's 4 KB environment limit); shorten descriptions or schemas"
        )
    return catalogue_json
