"""TunnelAlarms: metrics, alarms and a dashboard for AWS IoT Secure Tunneling.

Secure Tunneling publishes no CloudWatch metrics, so this construct derives
them: an EventBridge rule takes the OpenTunnel/CloseTunnel CloudTrail
management events to a Lambda function, which keeps per-thing state in DynamoDB
and writes the metrics as EMF (see ``iot_remote_access.core.tunnel_metrics``).
A second rule runs the same function every 5 minutes to measure the tunnels
still open, since a tunnel that expires leaves no CloudTrail event.

**It needs a CloudTrail trail in the account and region** that records
management events (write events at least): EventBridge only receives CloudTrail
management events that a trail logs. This construct creates none; pass yours to
the stack (the library's ``AuditTrail`` is one).
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iot_remote_access.constructs.aws import alarms, nag, props
from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.lambda_options import LambdaOptions
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.core.aws_schema import (
    OPEN_INDEX,
    OPEN_INDEX_KEY,
    OPEN_INDEX_SORT,
    TUNNEL_STATE_KEY,
    TUNNEL_STATE_TTL_ATTRIBUTE,
)
from iot_remote_access.core.tunnel_metrics import (
    CLOSE_TUNNEL,
    CLOUDTRAIL_EVENT_SOURCE,
    DEFAULT_MAX_OPEN_HOURS,
    DEFAULT_MAX_OPENS_PER_THING_PER_DAY,
    DEFAULT_RENEWAL_WINDOW_MINUTES,
    EVENTBRIDGE_SOURCE,
    NAMESPACE,
    OPEN_AGE,
    OPEN_COUNT,
    OPEN_DURATION,
    OPEN_TUNNEL,
    OPENS_TODAY,
    RENEWAL_LOOP,
    SWEEP_MINUTES,
    THING_DIMENSION,
    TUNNELS_OPEN,
    UNRESOLVED,
    max_open_hours_problem,
    max_opens_problem,
    renewal_window_problem,
)

_PERIOD = cdk.Duration.minutes(SWEEP_MINUTES)
_HOUR, _DAY = cdk.Duration.hours(1), cdk.Duration.days(1)
#: The metrics the tunnel-metrics function publishes (namespace ``IotRemoteAccess``).
TUNNEL_METRICS = (
    OPEN_COUNT,
    OPENS_TODAY,
    RENEWAL_LOOP,
    OPEN_DURATION,
    OPEN_AGE,
    TUNNELS_OPEN,
    UNRESOLVED,
)
_FIND_THE_DEVICE = (
    "Find the device: each notification of this alarm is for one contributor, whose "
    f"attributes carry the {THING_DIMENSION}; or run `aws cloudwatch "
    "describe-alarm-contributors --alarm-name <this alarm's name>`; or open the "
    "dashboard's top-things widgets."
)


_QUERY_FUNCTIONS = ("AVG", "COUNT", "MAX", "MIN", "SUM")


def per_thing_query(function: str, metric: str, *, limit: int | None = None) -> str:
    """A Metrics Insights query with one time series per thing, worst first."""
    if function not in _QUERY_FUNCTIONS or not metric.isalnum():
        raise ValueError(
            f"per_thing_query: {function}({metric}) is not allowed; allowed: one of "
            f"{', '.join(_QUERY_FUNCTIONS)} over a metric name of letters and digits"
        )
    # CloudWatch Metrics Insights, not a database: built only from the names checked above.
    query = (
        f'SELECT {function}({metric}) FROM SCHEMA("{NAMESPACE}", {THING_DIMENSION}) '  # noqa: S608
        f"GROUP BY {THING_DIMENSION} ORDER BY {function}() DESC"
    )
    return query if limit is None else f"{query} LIMIT {limit}"


class TunnelAlarms(Construct):
    """Tunnel metrics from CloudTrail, alarms to one encrypted topic, and a dashboard.

    Alarms (each notifies ``alarm_topic``):

    * ``too_many_opens_alarm``: one thing opened more than
      ``max_opens_per_thing_per_day`` tunnels in a UTC day. One alarm for the
      fleet: a Metrics Insights query grouped by ``ThingName``, so each device
      is a contributor and its notification names it.
    * ``renewal_loop_alarm``: a thing got a new tunnel within
      ``renewal_window_minutes`` after its previous one closed or expired.
    * ``open_too_long_alarm``: a tunnel has been open longer than ``max_open_hours``.
    * ``errors_alarm`` / ``throttles_alarm``: the function failed or was throttled.
    * ``failed_events_alarm``: an event reached the dead-letter queue after retries.

    Needs a CloudTrail trail recording management events in the account (not
    created here).

    Its metrics, for your own alarms and dashboards: ``metric_opens``,
    ``metric_opens_today``, ``metric_renewal_loops``, ``metric_open_duration``,
    ``metric_open_age``, ``metric_tunnels_open``, ``metric_unresolved_events``
    (or ``metric(name, statistic=...)``).

    :param max_opens_per_thing_per_day: Default: 3.
    :param renewal_window_minutes: Default: 15.
    :param max_open_hours: Default: 2.
    :param email_addresses: subscribed to the topic when this construct creates it.
        Default: none.
    :param alarm_topic: any ``sns.ITopic`` (a team's own topic, or an
        ``AlarmTopic``, whose topic is used). Default: a new ``AlarmTopic``.
    :param dashboard_name: Default: generated by CloudFormation.
    :param encryption_key: KMS key for the function's log group and environment.
        Default: AWS-owned keys, as ``LibraryFunction`` (the log holds thing names
        and tunnel ids, never tokens).
    :param log_retention: of the function's log group. Default: one year.
    :param removal_policy: for the state table and the function's log group.
        Default: the table is destroyed with the stack (derived state: losing it
        only restarts today's counts), the log group retained.

    Public attributes: ``alarm_topic`` (the ``sns.ITopic`` alarms go to),
    ``own_alarm_topic`` (the ``AlarmTopic`` made here, or None), ``table``,
    ``function``, ``dead_letter_queue``, ``dashboard``, the alarms.
    :param lambda_options: VPC, subnets, security groups, reserved concurrency and dead-letter
        queue (:class:`LambdaOptions`) for the metrics function (it keeps its own on-failure queue
        for asynchronous invocations too). Default: none of them.

    Example::

        from aws_cdk import aws_cloudwatch as cloudwatch
        from aws_cdk import aws_sns as sns
        from iot_remote_access.constructs.aws import TunnelAlarms

        tunnels = TunnelAlarms(stack, "TunnelAlarms", alarm_topic=sns.Topic(stack, "OnCall"))
        cloudwatch.Alarm(
            stack,
            "PumpSevenOpens",
            metric=tunnels.metric_opens(thing_name="pump-7"),
            threshold=2,
            evaluation_periods=1,
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_opens_per_thing_per_day: int = DEFAULT_MAX_OPENS_PER_THING_PER_DAY,
        renewal_window_minutes: int = DEFAULT_RENEWAL_WINDOW_MINUTES,
        max_open_hours: float = DEFAULT_MAX_OPEN_HOURS,
        email_addresses: Sequence[str] = (),
        alarm_topic: sns.ITopic | AlarmTopic | None = None,
        dashboard_name: str | None = None,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy | None = None,
        lambda_options: LambdaOptions | None = None,
    ) -> None:
        props.check(
            "TunnelAlarms",
            max_opens_per_thing_per_day=(max_opens_per_thing_per_day, props.WHOLE_NUMBER),
            renewal_window_minutes=(renewal_window_minutes, props.WHOLE_NUMBER),
            max_open_hours=(max_open_hours, float),
            email_addresses=(email_addresses, props.SequenceOf(str)),
            alarm_topic=(alarm_topic, props.optional((props.I_TOPIC, AlarmTopic))),
            dashboard_name=(dashboard_name, props.optional(str)),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            log_retention=(log_retention, logs.RetentionDays),
            removal_policy=(removal_policy, props.optional(cdk.RemovalPolicy)),
            lambda_options=(lambda_options, props.optional(LambdaOptions)),
        )
        super().__init__(scope, construct_id)
        self._lambda_options = lambda_options
        _check_props(max_opens_per_thing_per_day, renewal_window_minutes, max_open_hours)
        if alarm_topic is not None and email_addresses:
            raise ValueError(
                f"email_addresses: {list(email_addresses)!r} given with an alarm_topic; "
                "allowed: subscribe them on the shared topic instead"
            )
        self.own_alarm_topic: AlarmTopic | None = None
        if alarm_topic is None:
            self.own_alarm_topic = AlarmTopic(self, "AlarmTopic", email_addresses=email_addresses)
            alarm_topic = self.own_alarm_topic
        self.alarm_topic: sns.ITopic = (
            alarm_topic.topic if isinstance(alarm_topic, AlarmTopic) else alarm_topic
        )
        self.table = self._table(removal_policy or cdk.RemovalPolicy.DESTROY)
        self.dead_letter_queue = self._dead_letter_queue()
        self.handler = LibraryFunction(
            self,
            "Metrics",
            lambda_options=self._lambda_options,
            handler_package="tunnel_metrics",
            # Appends operators' closes when AccessLedger.connect-ed (docs/ledger.md).
            shared_packages=["ledger"],
            description="Derives tunnel metrics from Secure Tunneling CloudTrail events",
            environment={
                "TABLE_NAME": self.table.table_name,
                "RENEWAL_WINDOW_MINUTES": str(renewal_window_minutes),
                "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            },
            encryption_key=encryption_key,
            log_retention=log_retention,
            removal_policy=removal_policy or cdk.RemovalPolicy.RETAIN,
        )
        self.function = self.handler.function
        self._grant()
        self.function.configure_async_invoke(
            retry_attempts=2,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
        self._rules()
        self._tunnel_alarms(max_opens_per_thing_per_day, renewal_window_minutes, max_open_hours)
        self._function_alarms()
        self.dashboard = self._dashboard(dashboard_name, max_open_hours)

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [
            self.too_many_opens_alarm,
            self.renewal_loop_alarm,
            self.open_too_long_alarm,
            self.errors_alarm,
            self.throttles_alarm,
            self.failed_events_alarm,
        ]

    # -- metrics: what the function publishes --

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str,
        thing_name: str | None = None,
        period: cdk.Duration = _PERIOD,
        label: str | None = None,
    ) -> cloudwatch.Metric:
        """One of the tunnel metrics, for the fleet or (with ``thing_name``) one thing.

        Per-thing metrics are published twice: without dimensions (the fleet) and
        with ``ThingName``; ``TunnelsOpen`` and ``TunnelEventUnresolved`` only for
        the fleet. ``metric_name`` is one of ``TUNNEL_METRICS``.
        """
        props.check(
            "TunnelAlarms.metric",
            metric_name=(metric_name, str),
            statistic=(statistic, str),
            thing_name=(thing_name, props.optional(str)),
            period=(period, cdk.Duration),
            label=(label, props.optional(str)),
        )
        if metric_name not in TUNNEL_METRICS:
            raise ValueError(
                f"metric_name: {metric_name!r} is not published here; "
                f"allowed: {', '.join(TUNNEL_METRICS)}"
            )
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=metric_name,
            dimensions_map=None if thing_name is None else {THING_DIMENSION: thing_name},
            statistic=statistic,
            period=period,
            label=label,
        )

    def metric_opens(
        self, *, thing_name: str | None = None, period: cdk.Duration = _DAY
    ) -> cloudwatch.Metric:
        """Tunnels opened (``TunnelOpenCount``, Sum). Default period: one day."""
        return self.metric(OPEN_COUNT, statistic="Sum", thing_name=thing_name, period=period)

    def metric_opens_today(self, *, thing_name: str | None = None) -> cloudwatch.Metric:
        """Opens so far in the UTC day (``TunnelOpensToday``, Maximum, 5 minutes)."""
        return self.metric(OPENS_TODAY, statistic="Maximum", thing_name=thing_name)

    def metric_renewal_loops(
        self, *, thing_name: str | None = None, period: cdk.Duration = _PERIOD
    ) -> cloudwatch.Metric:
        """A new tunnel within the renewal window after the last (``TunnelRenewalLoop``, Sum)."""
        return self.metric(RENEWAL_LOOP, statistic="Sum", thing_name=thing_name, period=period)

    def metric_open_duration(
        self, *, statistic: str = "p90", period: cdk.Duration = _HOUR
    ) -> cloudwatch.Metric:
        """Seconds a tunnel was open, at its close (``TunnelOpenDuration``). Default: p90, 1h."""
        return self.metric(OPEN_DURATION, statistic=statistic, period=period)

    def metric_open_age(self, *, thing_name: str | None = None) -> cloudwatch.Metric:
        """Seconds the oldest open tunnel has been open (``TunnelOpenAge``, Maximum, 5 minutes)."""
        return self.metric(OPEN_AGE, statistic="Maximum", thing_name=thing_name)

    def metric_tunnels_open(self) -> cloudwatch.Metric:
        """Tunnels open at each sweep, fleet-wide (``TunnelsOpen``, Maximum, 5 minutes)."""
        return self.metric(TUNNELS_OPEN, statistic="Maximum")

    def metric_unresolved_events(self) -> cloudwatch.Metric:
        """Events whose thing could not be found (``TunnelEventUnresolved``, Sum, 5 minutes)."""
        return self.metric(UNRESOLVED, statistic="Sum")

    # -- resources --

    def _table(self, removal_policy: cdk.RemovalPolicy) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "State",
            partition_key=dynamodb.Attribute(
                name=TUNNEL_STATE_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TUNNEL_STATE_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )
        table.add_global_secondary_index(
            index_name=OPEN_INDEX,
            partition_key=dynamodb.Attribute(
                name=OPEN_INDEX_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=OPEN_INDEX_SORT, type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["thingName", "openedAt"],
        )
        return table

    def _dead_letter_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        nag.acknowledge(
            queue,
            "SQS3",
            "This queue is the dead-letter queue of the tunnel-metrics function "
            "and its rules; a dead-letter queue needs none of its own.",
        )
        return queue

    def _grant(self) -> None:
        role = self.handler.role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TunnelState",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                ],
                resources=[self.table.table_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="OpenTunnelsIndex",
                actions=["dynamodb:Query"],
                resources=[f"{self.table.table_arn}/index/{OPEN_INDEX}"],
            )
        )
        stack = cdk.Stack.of(self)
        tunnels = stack.format_arn(
            service="iot",
            resource="tunnel",
            resource_name="*",
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeTunnels",
                actions=["iot:DescribeTunnel"],
                resources=[tunnels],
            )
        )
        nag.acknowledge_wildcard_resources(
            role,
            "Tunnel ids exist only once a tunnel is opened, so no exact ARN can be "
            "granted; DescribeTunnel is read-only, limited to this account and region, and "
            "returns no access tokens.",
            [tunnels],
        )

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=8,
            max_event_age=cdk.Duration.hours(24),
        )

    def _rules(self) -> None:
        self.rule = events.Rule(
            self,
            "TunnelEvents",
            description="Secure Tunneling OpenTunnel/CloseTunnel CloudTrail events",
            event_pattern=events.EventPattern(
                source=[EVENTBRIDGE_SOURCE],
                detail={
                    "eventSource": [CLOUDTRAIL_EVENT_SOURCE],
                    "eventName": [OPEN_TUNNEL, CLOSE_TUNNEL],
                    # A failed call opened or closed nothing.
                    "errorCode": events.Match.does_not_exist(),
                },
            ),
            targets=[self._target()],
        )
        self.sweep_rule = events.Rule(
            self,
            "Sweep",
            description="Measures the age of tunnels still open",
            schedule=events.Schedule.rate(_PERIOD),
            targets=[self._target()],
        )

    # -- alarms --

    def _tunnel_alarms(
        self, max_opens_per_thing_per_day: int, renewal_window_minutes: int, max_open_hours: float
    ) -> None:
        self.too_many_opens_alarm = self._alarm(
            "TooManyOpens",
            per_thing_query("MAX", OPENS_TODAY),
            threshold=max_opens_per_thing_per_day,
            description=(
                f"A thing opened more than {max_opens_per_thing_per_day} tunnels today (UTC). "
                "Someone may be scripting tunnels, or a device keeps losing its session. "
            ),
        )
        self.renewal_loop_alarm = self._alarm(
            "RenewalLoop",
            per_thing_query("SUM", RENEWAL_LOOP),
            threshold=0,
            description=(
                f"A thing got a new tunnel within {renewal_window_minutes} minutes after its "
                "previous tunnel closed or expired: something renews access instead of "
                "ending it. "
            ),
        )
        self.open_too_long_alarm = self._alarm(
            "OpenTooLong",
            per_thing_query("MAX", OPEN_AGE),
            threshold=max_open_hours * 3600,
            description=(
                f"A tunnel has been open longer than {max_open_hours:g} hours: likely a "
                "debug session left open. "
            ),
        )

    def _function_alarms(self) -> None:
        self.errors_alarm = self._function_alarm(
            "Errors",
            self.function.metric_errors(period=_PERIOD, statistic="Sum"),
            "The tunnel-metrics function failed; tunnel metrics may be missing "
            "(failed events are retried, then kept in the dead-letter queue).",
        )
        self.throttles_alarm = self._function_alarm(
            "Throttles",
            self.function.metric_throttles(period=_PERIOD, statistic="Sum"),
            "The tunnel-metrics function was throttled; events are retried, then kept in "
            "the dead-letter queue.",
        )
        self.failed_events_alarm = self._function_alarm(
            "FailedEvents",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=_PERIOD, statistic="Maximum"
            ),
            "Tunnel events could not be processed after retries and wait in the "
            "dead-letter queue; they are not counted until replayed.",
        )

    def _alarm(
        self, name: str, query: str, *, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        return alarms.alarm(
            self,
            f"{name}Alarm",
            metric=cloudwatch.MathExpression(
                expression=query, using_metrics={}, period=_PERIOD, label=name
            ),
            threshold=threshold,
            comparison=alarms.ABOVE,
            # 1 of 3 periods: a data point that arrives late (CloudTrail delivers
            # within minutes, not seconds) still falls inside the window.
            evaluation_periods=3,
            datapoints_to_alarm=1,
            description=description + _FIND_THE_DEVICE,
            topic=self.alarm_topic,
        )

    def _function_alarm(
        self, name: str, metric: cloudwatch.IMetric, description: str
    ) -> cloudwatch.Alarm:
        return alarms.alarm(
            self,
            f"{name}Alarm",
            metric=metric,
            threshold=1,
            description=description,
            topic=self.alarm_topic,
        )

    # -- dashboard --

    def _dashboard(self, name: str | None, max_open_hours: float) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=name, default_interval=cdk.Duration.days(7)
        )
        for row in _dashboard_rows(max_open_hours):
            dashboard.add_widgets(*row)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Open tunnels and unattributable events",
                width=12,
                left=[_fleet(TUNNELS_OPEN, "Maximum", _PERIOD, "open tunnels")],
                right=[_fleet(UNRESOLVED, "Sum", _PERIOD, "unresolved events")],
            ),
            cloudwatch.AlarmStatusWidget(title="Tunnel alarms", width=12, alarms=self.alarms),
        )
        return dashboard


def _check_props(
    max_opens_per_thing_per_day: int, renewal_window_minutes: int, max_open_hours: float
) -> None:
    for name, value, problem in (
        ("max_opens_per_thing_per_day", max_opens_per_thing_per_day, max_opens_problem),
        ("renewal_window_minutes", renewal_window_minutes, renewal_window_problem),
        ("max_open_hours", max_open_hours, max_open_hours_problem),
    ):
        message = None if cdk.Token.is_unresolved(value) else problem(value)
        if message is not None:
            raise ValueError(f"{name}: {message}")


def _fleet(metric: str, statistic: str, period: cdk.Duration, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE, metric_name=metric, statistic=statistic, period=period, label=label
    )


def _top(function: str, metric: str, period: cdk.Duration, label: str) -> cloudwatch.MathExpression:
    return cloudwatch.MathExpression(
        expression=per_thing_query(function, metric, limit=10),
        using_metrics={},
        period=period,
        label=label,
    )


def _dashboard_rows(max_open_hours: float) -> list[tuple[cloudwatch.IWidget, ...]]:
    """The graph rows: each a fleet view next to its top-10-things view."""
    day, hour = cdk.Duration.days(1), cdk.Duration.hours(1)
    return [
        (
            cloudwatch.GraphWidget(
                title="Tunnel opens per day (fleet)",
                width=12,
                left=[_fleet(OPEN_COUNT, "Sum", day, "opens")],
                view=cloudwatch.GraphWidgetView.BAR,
            ),
            cloudwatch.GraphWidget(
                title="Top 10 things by opens per day",
                width=12,
                left=[_top("SUM", OPEN_COUNT, day, "opens")],
            ),
        ),
        (
            cloudwatch.GraphWidget(
                title="Renewal loops (fleet, per hour)",
                width=12,
                left=[_fleet(RENEWAL_LOOP, "Sum", hour, "renewal loops")],
            ),
            cloudwatch.GraphWidget(
                title="Top 10 things by renewal loops",
                width=12,
                left=[_top("SUM", RENEWAL_LOOP, hour, "renewal loops")],
            ),
        ),
        (
            cloudwatch.GraphWidget(
                title="Open durations at close (seconds)",
                width=12,
                left=[
                    _fleet(OPEN_DURATION, "p50", hour, "p50"),
                    _fleet(OPEN_DURATION, "p90", hour, "p90"),
                    _fleet(OPEN_DURATION, "Maximum", hour, "max"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Oldest open tunnel per thing (seconds)",
                width=12,
                left=[_top("MAX", OPEN_AGE, _PERIOD, "age")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=max_open_hours * 3600, label="alarm")
                ],
            ),
        ),
    ]
