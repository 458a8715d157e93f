"""SecurityMonitoring: detections over AWS IoT's own records, alarms, security events, export."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from aws_cdk import aws_sns as sns
from constructs import Construct

from iot_remote_access.constructs.aws import alarms, props
from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.iot_logging import IotLogging
from iot_remote_access.constructs.aws.lambda_options import LambdaOptions
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.constructs.aws.log_encryption import allow_cloudwatch_logs
from iot_remote_access.constructs.aws.security_topic_rule import SecurityTopicRule
from iot_remote_access.constructs.aws.siem_export import SiemExport
from iot_remote_access.core.security_detections import (
    ALARM_ROUTES_ENVIRONMENT_VARIABLE,
    AUTHORIZATION_FAILURE_FILTER_PATTERN,
    CONFIG_ENVIRONMENT_VARIABLE,
    DETECTIONS,
    EVENT_SOURCE,
    METRIC_NAMESPACE,
    AlarmRoute,
    Detection,
    DetectionConfig,
    Severity,
    compile_client_pattern,
    parse_network,
    telemetry_rule_sql,
)
from iot_remote_access.core.topics import DeviceAccess
from iot_remote_access.settings.monitoring import MonitoringSettings

#: The telemetry-count records only feed Contributor Insights and one metric
#: filter (both evaluate on arrival), so they are kept briefly.
TELEMETRY_COUNT_RETENTION = logs.RetentionDays.ONE_WEEK
#: The period of the detection alarms (and of ``metric_detection``'s default).
DETECTION_PERIOD = cdk.Duration.minutes(5)
#: Lambda allows 4 KB of environment variables per function in all.
MAX_CONFIG_BYTES = 3000


class SecurityMonitoring(Construct):
    """Detects misbehaving devices from AWS IoT's logs and lifecycle events.

    Detections (docs/security-monitoring.md, "Runbook"): authorization failures, unexpected
    subscriptions, connections from outside the allowed networks, publish-rate
    anomalies (fleet band and top device) and connection churn. Each has a
    metric in ``IotRemoteAccess/Security`` and a fleet-wide alarm on the alarm
    topic; high-severity alarms also go to the incident topic. Every finding is
    also an EventBridge event (``source: iot-remote-access.security``). The IoT
    log group, the lifecycle log group and ``log_groups_to_export`` stream into
    S3 for a SIEM (:class:`SiemExport`).

    :param device_access: the topics each device may use: a DevicePolicy (read
        at synthesis, so switches turned on later count) or a DeviceAccess.
    :param settings: Default: ``MonitoringSettings()``.
    :param alarm_topic: where alarms go. Default: a new :class:`AlarmTopic`.
    :param incident_topic: where high-severity alarms also go. Default: a new
        :class:`AlarmTopic` named "incidents".
    :param event_bus: where security events go. Default: the account's default bus.
    :param log_groups_to_export: more log groups for the SIEM export (e.g. the
        CloudTrail log group, the tunnel audit log group). Default: none.
    :param encryption_key: KMS key for the log groups, functions and export; a
        statement letting CloudWatch Logs use it for this account's log groups is
        added to its policy (an imported key gets a synthesis warning quoting that
        statement instead). Default: a new key with rotation.
    :param removal_policy: of every log group, the SIEM export's buckets included.
        Default: records are retained (IoT log, lifecycle events, rule errors,
        function logs, export), the short-lived telemetry counts destroyed. How long
        logs are kept is ``settings.log_retention_days`` (Default: 365).
    :param lambda_options: VPC, subnets, security groups, reserved concurrency and dead-letter
        queue (:class:`LambdaOptions`) for the detector and the alarm-events function. Default: none
        of them.

    Example::

        from aws_cdk import aws_sns as sns
        from iot_remote_access.constructs.aws import DevicePolicy, SecurityMonitoring
        from iot_remote_access.settings import FleetSettings

        settings = FleetSettings.parse({"monitoring": {"allowedSourceCidrs": ["198.51.100.0/24"]}})
        SecurityMonitoring(
            stack,
            "Monitoring",
            device_access=DevicePolicy(stack, "Fleet"),
            settings=settings.monitoring,
            alarm_topic=sns.Topic(stack, "OnCall"),  # any sns.ITopic
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        device_access: DeviceAccess | DevicePolicy,
        settings: MonitoringSettings | None = None,
        alarm_topic: sns.ITopic | None = None,
        incident_topic: sns.ITopic | None = None,
        event_bus: events.IEventBus | None = None,
        log_groups_to_export: Sequence[logs.ILogGroup] = (),
        encryption_key: kms.IKey | None = None,
        removal_policy: cdk.RemovalPolicy | None = None,
        lambda_options: LambdaOptions | None = None,
    ) -> None:
        props.check(
            "SecurityMonitoring",
            device_access=(device_access, (DeviceAccess, DevicePolicy)),
            settings=(settings, props.optional(MonitoringSettings)),
            alarm_topic=(alarm_topic, props.optional(props.I_TOPIC)),
            incident_topic=(incident_topic, props.optional(props.I_TOPIC)),
            event_bus=(event_bus, props.optional(props.I_EVENT_BUS)),
            log_groups_to_export=(log_groups_to_export, props.SequenceOf(props.I_LOG_GROUP)),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            removal_policy=(removal_policy, props.optional(cdk.RemovalPolicy)),
            lambda_options=(lambda_options, props.optional(LambdaOptions)),
        )
        super().__init__(scope, construct_id)
        self._lambda_options = lambda_options
        self._removal_policy = removal_policy
        self.settings = settings or MonitoringSettings()
        s = self.settings
        self._device_access = device_access
        self._networks = tuple(parse_network(c) for c in s.allowed_source_cidrs)
        self._exempt = (
            compile_client_pattern(s.exempt_client_id_pattern)
            if s.exempt_client_id_pattern
            else None
        )
        self._config_json()  # refuse an oversized configuration now, not at synthesis
        self._retention = getattr(logs.RetentionDays, _RETENTION_NAMES[s.log_retention_days])
        self.key = encryption_key or kms.Key(
            self,
            "Key",
            description="iot-remote-access security monitoring",
            enable_key_rotation=True,
        )
        allow_cloudwatch_logs(self.key, self)
        self._topics(alarm_topic, incident_topic)
        self.event_bus = event_bus or events.EventBus.from_event_bus_name(
            self, "DefaultBus", "default"
        )
        self._records()
        self._detector()
        self._rules()
        # -- metrics, insight rules, alarms -------------------------------------------
        self.alarms: dict[Detection, cloudwatch.AlarmBase] = {}
        self.insight_rules: dict[Detection, cloudwatch.CfnInsightRule] = {}
        self._detection_alarms(s)
        self._rate_alarms(s)
        self._alarm_events()
        # -- SIEM export -----------------------------------------------------------------
        self.siem_export: SiemExport | None = None
        if s.siem_export:
            self.siem_export = SiemExport(
                self,
                "SiemExport",
                log_groups=[self.iot_log_group, self.lifecycle_log_group, *log_groups_to_export],
                encryption_key=self.key,
                retention_days=s.siem_retention_days,
                log_retention=self._retention,
                removal_policy=self._kept,
            )

    # -- public -----------------------------------------------------------------------------

    @property
    def iot_log_group(self) -> logs.ILogGroup:
        """``AWSIotLogsV2``: AWS IoT's v2 log."""
        return self.iot_logging.log_group

    @property
    def device_access(self) -> DeviceAccess:
        """The topic model subscriptions are checked against (the device policy's, if given)."""
        if isinstance(self._device_access, DevicePolicy):
            return self._device_access.access
        return self._device_access

    def detection_config(self) -> DetectionConfig:
        """What the detector function checks against (its ``DETECTION_CONFIG``)."""
        return DetectionConfig(
            access=self.device_access,
            allowed_networks=self._networks,
            exempt_client_ids=self._exempt,
        )

    def metric_detection(
        self, detection: Detection, *, period: cdk.Duration = DETECTION_PERIOD
    ) -> cloudwatch.Metric:
        """The fleet metric of ``detection`` in ``IotRemoteAccess/Security`` (Sum).

        E.g. ``metric_detection(Detection.AUTHORIZATION_FAILURE)`` for your own
        dashboard or a stricter alarm.
        """
        props.check(
            "SecurityMonitoring.metric_detection",
            detection=(detection, Detection),
            period=(period, cdk.Duration),
        )
        return self._metric(detection, period)

    def export_log_group(self, log_group: logs.ILogGroup) -> None:
        """Add a log group to the SIEM export (e.g. one built after this construct)."""
        if self.siem_export is None:
            raise ValueError(
                "log_group: SIEM export is off (monitoring.siemExport is false); "
                "allowed: turn it on first"
            )
        self.siem_export.add_log_group(log_group)

    @property
    def _kept(self) -> cdk.RemovalPolicy:
        """The removal policy of records: the user's, or RETAIN."""
        return self._removal_policy or cdk.RemovalPolicy.RETAIN

    # -- parts ----------------------------------------------------------------------------

    def _topics(self, alarm_topic: sns.ITopic | None, incident_topic: sns.ITopic | None) -> None:
        s = self.settings
        if alarm_topic is None:
            own_alarms = AlarmTopic(self, "Alarms", email_addresses=s.alarm_emails)
            alarm_topic = own_alarms.topic
            # The incident topic shares the key of a topic made here, not a user's.
            incident_key: kms.IKey | None = own_alarms.key
        else:
            incident_key = None
        self.alarm_topic = alarm_topic
        self.incident_topic = (
            incident_topic
            or AlarmTopic(
                self,
                "Incidents",
                display_name="iot-remote-access incidents",
                email_addresses=s.incident_emails,
                key=incident_key,
            ).topic
        )

    # -- records -------------------------------------------------------------------------

    def _records(self) -> None:
        s, retention = self.settings, self._retention
        self.iot_logging = IotLogging(
            self,
            "IotLogging",
            level=s.iot_log_level,
            encryption_key=self.key,
            retention=retention,
            manage=s.configure_iot_logging,
            removal_policy=self._kept,
        )
        self.lifecycle_log_group = logs.LogGroup(
            self,
            "LifecycleEvents",
            encryption_key=self.key,
            retention=retention,
            removal_policy=self._kept,
        )
        self.telemetry_count_log_group = logs.LogGroup(
            self,
            "TelemetryCounts",
            encryption_key=self.key,
            retention=TELEMETRY_COUNT_RETENTION,
            removal_policy=self._removal_policy or cdk.RemovalPolicy.DESTROY,
        )
        self.rule_error_log_group = logs.LogGroup(
            self,
            "RuleErrors",
            encryption_key=self.key,
            retention=retention,
            removal_policy=self._kept,
        )

    # -- functions -----------------------------------------------------------------------

    def _detector(self) -> None:
        self.detector = LibraryFunction(
            self,
            "Detector",
            lambda_options=self._lambda_options,
            handler_package="security_detections",
            description="iot-remote-access: checks IoT lifecycle events and refused "
            "publish/subscribe log entries",
            encryption_key=self.key,
            log_retention=self._retention,
            removal_policy=self._kept,
            environment={
                CONFIG_ENVIRONMENT_VARIABLE: cdk.Lazy.string(_Producer(self._config_json)),
                "EVENT_BUS_NAME": self.event_bus.event_bus_name,
            },
        )
        self._allow_put_security_events(self.detector.role)
        self.iot_log_group.add_subscription_filter(
            "AuthorizationFailuresToDetector",
            destination=destinations.LambdaDestination(self.detector.function),
            filter_pattern=logs.FilterPattern.literal(AUTHORIZATION_FAILURE_FILTER_PATTERN),
        )

    # -- IoT rules: lifecycle events and telemetry counts ------------------------------

    def _rules(self) -> None:
        rule, lifecycle = self._rule, self.lifecycle_log_group
        self.rules = [
            rule(
                "ConnectedRule",
                "$aws/events/presence/connected/+",
                "connected events: connection-source check and lifecycle log",
                log_group=lifecycle,
                invoke_detector=True,
            ),
            rule(
                "PresenceRule",
                "$aws/events/presence/disconnected/+",
                "disconnected events: lifecycle log",
                log_group=lifecycle,
            ),
            rule(
                "ConnectFailedRule",
                "$aws/events/presence/connect_failed/+",
                "refused connections: lifecycle log",
                log_group=lifecycle,
            ),
            rule(
                "SubscribedRule",
                "$aws/events/subscriptions/subscribed/+",
                "subscribe events: topic-model check and lifecycle log",
                log_group=lifecycle,
                invoke_detector=True,
            ),
        ]
        self.telemetry_rule = SecurityTopicRule(
            self,
            "TelemetryCountRule",
            sql=telemetry_rule_sql(self.device_access.topics.telemetry),
            description="iot-remote-access: one record (thing name only) per telemetry message",
            log_group=self.telemetry_count_log_group,
            error_log_group=self.rule_error_log_group,
        )
        self.rules.append(self.telemetry_rule)

    # -- alarm state changes -> security events ------------------------------------------

    def _alarm_events(self) -> None:
        stack = cdk.Stack.of(self)
        routes = {
            Detection.PUBLISH_RATE_ANOMALY: None,
            Detection.PUBLISH_RATE_TOP_DEVICE: self.insight_rules[
                Detection.PUBLISH_RATE_TOP_DEVICE
            ],
            Detection.CONNECTION_CHURN: self.insight_rules[Detection.CONNECTION_CHURN],
        }
        self.alarm_events = LibraryFunction(
            self,
            "AlarmEvents",
            lambda_options=self._lambda_options,
            handler_package="security_alarm_events",
            description="iot-remote-access: security alarm state changes to security events",
            encryption_key=self.key,
            log_retention=self._retention,
            removal_policy=self._kept,
            environment={
                ALARM_ROUTES_ENVIRONMENT_VARIABLE: stack.to_json_string(
                    {
                        self.alarms[d].alarm_arn: AlarmRoute(
                            d, insight.rule_name if insight else None
                        ).to_dict()
                        for d, insight in routes.items()
                    }
                ),
                "EVENT_BUS_NAME": self.event_bus.event_bus_name,
            },
        )
        self._allow_put_security_events(self.alarm_events.role)
        self.alarm_events.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:GetInsightRuleReport"],
                resources=[
                    stack.format_arn(
                        service="cloudwatch", resource="insight-rule", resource_name=r.rule_name
                    )
                    for r in self.insight_rules.values()
                ],
            )
        )
        self.alarm_rule = events.Rule(
            self,
            "AlarmStateChanges",
            description="iot-remote-access: security rate alarms entering ALARM",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[self.alarms[d].alarm_arn for d in routes],
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[targets.LambdaFunction(self.alarm_events.function, retry_attempts=4)],
        )

    def _config_json(self) -> str:
        text = self.detection_config().to_json()
        if len(text) > MAX_CONFIG_BYTES:
            raise ValueError(
                f"allowedSourceCidrs: {len(self._networks)} ranges make the detector's "
                f"configuration {len(text)} bytes; Lambda allows 4 KB of environment in all; "
                f"allowed: at most {MAX_CONFIG_BYTES} bytes, e.g. fewer, wider ranges"
            )
        return text

    def _rule(
        self,
        construct_id: str,
        topic_filter: str,
        purpose: str,
        *,
        log_group: logs.ILogGroup,
        invoke_detector: bool = False,
    ) -> SecurityTopicRule:
        return SecurityTopicRule(
            self,
            construct_id,
            # The filters are the fixed lifecycle topics above, never user input.
            sql=f"SELECT * FROM '{topic_filter}'",  # noqa: S608
            description=f"iot-remote-access security monitoring: {purpose}",
            log_group=log_group,
            function=self.detector.function if invoke_detector else None,
            error_log_group=self.rule_error_log_group,
        )

    def _allow_put_security_events(self, role: iam.IRole) -> None:
        # events:source pins the function to this library's events only.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[self.event_bus.event_bus_arn],
                conditions={"StringEquals": {"events:source": EVENT_SOURCE}},
            )
        )

    def _metric(self, detection: Detection, period: cdk.Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=DETECTIONS[detection].metric_name,
            statistic="Sum",
            period=period,
        )

    def _also(self, detection: Detection) -> tuple[sns.ITopic, ...]:
        # Every state change reaches the alarm topic; high severity also pages.
        high = DETECTIONS[detection].severity is Severity.HIGH
        return (self.incident_topic,) if high else ()

    def _description(self, detection: Detection) -> str:
        return f"[{DETECTIONS[detection].severity}] {DETECTIONS[detection].title}"

    def _detection_alarms(self, s: MonitoringSettings) -> None:
        """Alarms on the metrics the detector function emits, one finding at a time."""
        thresholds = {
            Detection.AUTHORIZATION_FAILURE: s.authorization_failure_threshold,
            Detection.UNEXPECTED_SUBSCRIPTION: 1,
        }
        if self._networks:  # without an allowlist the detection is off
            thresholds[Detection.CONNECTION_OUTSIDE_ALLOWLIST] = 1
        for detection, threshold in thresholds.items():
            self.alarms[detection] = alarms.alarm(
                self,
                f"{DETECTIONS[detection].metric_name}Alarm",
                description=self._description(detection),
                metric=self._metric(detection, cdk.Duration.minutes(5)),
                threshold=threshold,
                topic=self.alarm_topic,
                also=self._also(detection),
                ok=True,
            )

    def _rate_alarms(self, s: MonitoringSettings) -> None:
        """Rates CloudWatch computes: a metric filter, Contributor Insights, anomaly detection."""
        self._rate_metrics()
        self._insight_rules()
        anomaly = Detection.PUBLISH_RATE_ANOMALY
        anomaly_alarm = cloudwatch.AnomalyDetectionAlarm(
            self,
            "PublishRateAnomalyAlarm",
            alarm_description=self._description(anomaly),
            metric=self._metric(anomaly, cdk.Duration.minutes(5)),
            std_devs=s.publish_rate_anomaly_band,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=alarms.NOT_BREACHING,
        )
        alarms.notify(anomaly_alarm, self.alarm_topic, *self._also(anomaly), ok=True)
        self.alarms[anomaly] = anomaly_alarm
        per_device = {
            Detection.PUBLISH_RATE_TOP_DEVICE: (
                "TopDevicePublishRateAlarm",
                cdk.Duration.minutes(1),
                s.max_telemetry_per_device_per_minute,
                5,
                3,
            ),
            Detection.CONNECTION_CHURN: (
                "ConnectionChurnAlarm",
                cdk.Duration.minutes(5),
                s.max_connects_per_device_per_5_minutes,
                1,
                1,
            ),
        }
        for detection, (alarm_id, period, threshold, periods, datapoints) in per_device.items():
            rule = self.insight_rules[detection]
            alarm = alarms.alarm(
                self,
                alarm_id,
                description=self._description(detection),
                metric=cloudwatch.MathExpression(
                    expression=f"INSIGHT_RULE_METRIC('{rule.rule_name}', 'MaxContributorValue')",
                    using_metrics={},
                    period=period,
                    label=f"{DETECTIONS[detection].metric_name} of the top device",
                ),
                threshold=threshold,
                comparison=alarms.ABOVE,
                evaluation_periods=periods,
                datapoints_to_alarm=datapoints,
                topic=self.alarm_topic,
                also=self._also(detection),
                ok=True,
            )
            alarm.node.add_dependency(rule)
            self.alarms[detection] = alarm

    def _rate_metrics(self) -> None:
        """Per-message counts as metrics (the fleet's telemetry rate, its connections)."""
        for construct_id, group, pattern, detection in (
            (
                "TelemetryMessagesMetric",
                self.telemetry_count_log_group,
                "{ $.thingName = * }",
                Detection.PUBLISH_RATE_ANOMALY,
            ),
            (
                "ConnectionsMetric",
                self.lifecycle_log_group,
                '{ $.eventType = "connected" }',
                Detection.CONNECTION_CHURN,
            ),
        ):
            logs.MetricFilter(
                self,
                construct_id,
                log_group=group,
                filter_pattern=logs.FilterPattern.literal(pattern),
                metric_namespace=METRIC_NAMESPACE,
                metric_name=DETECTIONS[detection].metric_name,
                metric_value="1",
                unit=cloudwatch.Unit.COUNT,
            )

    def _insight_rules(self) -> None:
        """Contributor Insights rules: the top device by telemetry and by reconnects."""
        stack = cdk.Stack.of(self)
        insight_specs = {
            Detection.PUBLISH_RATE_TOP_DEVICE: (
                "TopTelemetryPublishers",
                self.telemetry_count_log_group,
                "$.thingName",
                None,
            ),
            Detection.CONNECTION_CHURN: (
                "TopReconnectingDevices",
                self.lifecycle_log_group,
                "$.clientId",
                [{"Match": "$.eventType", "In": ["connected"]}],
            ),
        }
        for detection, (name, group, key, filters) in insight_specs.items():
            contribution: dict[str, object] = {"Keys": [key]}
            if filters:
                contribution["Filters"] = filters
            self.insight_rules[detection] = cloudwatch.CfnInsightRule(
                self,
                name,
                rule_name=cdk.Names.unique_resource_name(self, max_length=100, separator="-")
                + f"-{name}",
                rule_state="ENABLED",
                rule_body=stack.to_json_string(
                    {
                        "Schema": {"Name": "CloudWatchLogRule", "Version": 1},
                        "LogGroupNames": [group.log_group_name],
                        "LogFormat": "JSON",
                        "Contribution": contribution,
                        "AggregateOn": "Count",
                    }
                ),
            )


@jsii.implements(cdk.IStableStringProducer)
class _Producer:
    """Renders a value at synthesis, after every construct has been configured."""

    def __init__(self, produce: Callable[[], str]) -> None:
        self._produce = produce

    def produce(self) -> str:
        return self._produce()


_RETENTION_NAMES = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
