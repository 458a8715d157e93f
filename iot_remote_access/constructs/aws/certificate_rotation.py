"""CertificateRotation: staggered issuance and rotation of device certificates.

Composes the private CA, the inventory table, the four rotation functions (signer,
confirm, planner, worker), the IoT rules on the devices' rotation topics, the
daily and hourly schedules, the SQS fan-out queue, an IoT job template, the
Device Defender audit and the alarms. The protocol is described in docs/certificate-rotation.md
("Certificate rotation") and in ``iot_remote_access/lambdas/certs``.
"""

from __future__ import annotations

import json
import math

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from iot_remote_access.constructs.aws import alarms, nag, props
from iot_remote_access.constructs.aws.alarm_topic import AlarmTopic
from iot_remote_access.constructs.aws.certificate_inventory import CertificateInventory
from iot_remote_access.constructs.aws.device_defender_audit import DeviceDefenderAudit
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.constructs.aws.private_ca import PrivateCa
from iot_remote_access.core.aws_schema import PASSTHROUGH_TEMPLATE_ARN
from iot_remote_access.core.topics import THING_PLACEHOLDER, TopicModel
from iot_remote_access.settings.certificates import CertificateSettings

METRICS_NAMESPACE = "IotRemoteAccess"
#: "ledger": the handlers record decisions when ``AccessLedger.connect``-ed.
SHARED = ("certs", "ledger")
#: What the daily planner reports (one data point per day each).
PLANNER_METRICS = (
    "ExpiringWithin30Days",
    "ExpiringWithin60Days",
    "ExpiringWithin90Days",
    "RotationsPending",
    "RotationsInFlight",
    "RotationsTimedOut",
    "RotationsExhausted",
    "CriticalWithoutRotation",
    "CertificatesExpired",
    "LateRotationSlots",
)
_WORKER_TIMEOUT = cdk.Duration.minutes(2)
_VISIBILITY_TIMEOUT = cdk.Duration.minutes(12)  # 6x the worker timeout (AWS guidance)


def _mqtt_filter(template: str) -> str:
    """The IoT rule's topic filter for every thing's topic (``+`` for the thing level)."""
    if "'" in template or "\\" in template:
        # The filter is quoted in the rule's SQL; a quote would end the string early.
        raise ValueError(f"topic: {template!r} contains a quote or backslash; allowed: neither")
    return template.replace(THING_PLACEHOLDER, "+")


def _planner_metric(name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": "iot-remote-access-cert_planner"},
        statistic="Maximum",
        period=cdk.Duration.days(1),
    )


class CertificateRotation(Construct):
    """Staggered certificate validity, rotation over the devices' own topics, inventory.

    Turns on the device policy's rotation switch (each device may publish only its
    own CSR and confirmation topics and receive its own certificate topic).

    :param settings: the ``certificates`` settings section. Default: ``CertificateSettings()``.
    :param device_policy: the fleet's policy; attached to every new certificate.
    :param alarm_topic: where alarms and audit findings go (e.g. an ``AlarmTopic``'s
        topic). Default: a new ``AlarmTopic``.
    :param audit: configure Device Defender audit (one per account and region). Default: True.
    :param encryption_key: KMS key for the inventory, the queues, the functions'
        environment and the log groups; it must let CloudWatch Logs use it (see
        ``allow_cloudwatch_logs``; an imported key gets a synthesis warning naming
        the grant). Default: a new key with rotation.
    :param log_retention: of the functions' and rule errors' log groups. Default: one year.
    :param removal_policy: of the inventory table and the log groups. Default:
        RETAIN (the inventory is the fleet's asset list; with DESTROY its deletion
        protection is off too).

    Example::

        from aws_cdk import aws_sns as sns
        from iot_remote_access.constructs.aws import CertificateRotation, DevicePolicy
        from iot_remote_access.settings import FleetSettings

        settings = FleetSettings.parse({"certificates": {"leadTimeDays": 60}}).certificates
        CertificateRotation(
            stack,
            "Rotation",
            device_policy=DevicePolicy(stack, "Fleet"),
            settings=settings,
            alarm_topic=sns.Topic(stack, "OnCall"),  # any sns.ITopic
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        device_policy: DevicePolicy,
        settings: CertificateSettings | None = None,
        alarm_topic: sns.ITopic | None = None,
        audit: bool = True,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "CertificateRotation",
            device_policy=(device_policy, DevicePolicy),
            settings=(settings, props.optional(CertificateSettings)),
            alarm_topic=(alarm_topic, props.optional(props.I_TOPIC)),
            audit=(audit, bool),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            log_retention=(log_retention, logs.RetentionDays),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        self.settings = settings = settings or CertificateSettings()
        device_policy.enable_rotation()
        self.alarm_topic = alarm_topic or AlarmTopic(self, "Alarms").topic
        self._log_retention, self._removal_policy = log_retention, removal_policy
        self.key = encryption_key or kms.Key(
            self,
            "Key",
            description="iot-remote-access certificate rotation",
            enable_key_rotation=True,
        )
        self.ca = PrivateCa(
            self, "Ca", existing_ca_arn=settings.ca_arn, common_name=settings.ca_common_name
        )
        self.inventory = CertificateInventory(
            self, "Inventory", encryption_key=self.key, removal_policy=removal_policy
        )
        self.table = self.inventory.table
        self._queues()
        self._functions(device_policy)
        self._grants(device_policy.access.topics)
        self._rules(device_policy.access.topics)
        self._schedules()
        self._job_template(device_policy.access.topics)
        # -- audit ---------------------------------------------------------------
        self.audit = (
            DeviceDefenderAudit(
                self,
                "Audit",
                findings_topic=self.alarm_topic,
                expiring_threshold_days=settings.lead_time_days,
            )
            if audit
            else None
        )
        self._alarms()

    def metric_planner(self, name: str) -> cloudwatch.Metric:
        """One of the daily planner's metrics (``PLANNER_METRICS``; Maximum, 1 day).

        E.g. ``metric_planner("ExpiringWithin30Days")``.
        """
        props.check("CertificateRotation.metric_planner", name=(name, str))
        if name not in PLANNER_METRICS:
            raise ValueError(
                f"name: {name!r} is not a planner metric; allowed: {', '.join(PLANNER_METRICS)}"
            )
        return _planner_metric(name)

    # -- queues: the planner fans work out to the worker --------------------------

    def _queues(self) -> None:
        self.dead_letter_queue = sqs.Queue(
            self,
            "WorkDeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        nag.acknowledge(
            self.dead_letter_queue,
            "SQS3",
            "This is the dead-letter queue of the work queue; an alarm watches it.",
        )
        self.queue = sqs.Queue(
            self,
            "Work",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            visibility_timeout=_VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=5, queue=self.dead_letter_queue
            ),
        )

    # -- functions -----------------------------------------------------------------

    def _functions(self, device_policy: DevicePolicy) -> None:
        settings, topics = self.settings, device_policy.access.topics
        environment = {
            "INVENTORY_TABLE": self.table.table_name,
            "CA_ARN": self.ca.ca_arn,
            "DEVICE_POLICY_NAME": device_policy.policy_name,
            "COMMANDS_TOPIC": topics.commands,
            "ROTATION_CSR_TOPIC": topics.rotation_csr,
            "ROTATION_CERTIFICATE_TOPIC": topics.rotation_certificate,
            "ROTATION_CONFIRM_TOPIC": topics.rotation_confirm,
            "BASE_VALIDITY_DAYS": str(settings.base_validity_days),
            "STAGGER_WINDOW_DAYS": str(settings.stagger_window_days),
            "LEAD_DAYS": str(settings.lead_time_days),
            "HOURLY_BUDGET": str(settings.hourly_rotation_budget),
            "MAX_ATTEMPTS": str(settings.max_attempts),
            "BACKOFF_HOURS": str(settings.retry_backoff_hours),
            "MAX_BACKOFF_HOURS": str(settings.max_retry_backoff_hours),
            "ATTEMPT_TIMEOUT_HOURS": str(settings.attempt_timeout_hours),
            "GRACE_DAYS": str(settings.grace_period_days),
            "WORK_QUEUE_URL": self.queue.queue_url,
        }

        def function(name: str, package: str, description: str, timeout: int) -> LibraryFunction:
            return LibraryFunction(
                self,
                name,
                handler_package=package,
                description=description,
                environment=environment,
                timeout=cdk.Duration.seconds(timeout),
                encryption_key=self.key,
                shared_packages=SHARED,
                log_retention=self._log_retention,
                removal_policy=self._removal_policy,
            )

        self.signer = function("Signer", "cert_signer", "Signs device CSRs with the private CA", 60)
        self.confirm = function("Confirm", "cert_confirm", "Takes rotation confirmations", 30)
        self.planner = function("Planner", "cert_planner", "Plans and starts rotations", 300)
        self.worker = function(
            "Worker",
            "cert_worker",
            "Does fanned-out rotation work",
            int(_WORKER_TIMEOUT.to_seconds()),
        )

    # -- grants ----------------------------------------------------------------------

    def _iot_arn(self, resource: str, name: str) -> str:
        return cdk.Stack.of(self).format_arn(
            service="iot",
            resource=resource,
            resource_name=name,
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _topic_arn(self, template: str) -> str:
        return self._iot_arn("topic", template.replace(THING_PLACEHOLDER, "*"))

    @property
    def _all_functions(self) -> tuple[LibraryFunction, ...]:
        return (self.signer, self.confirm, self.planner, self.worker)

    def _grants(self, topics: TopicModel) -> None:
        certs, things = self._iot_arn("cert", "*"), self._iot_arn("thing", "*")
        for fn in self._all_functions:
            self.table.grant_read_write_data(fn.role)
        self._grant_signer(certs, things)
        cleanup = iam.PolicyStatement(
            actions=[
                "iot:DescribeCertificate",
                "iot:UpdateCertificate",
                "iot:DeleteCertificate",
                "iot:DetachPolicy",
                "iot:DetachThingPrincipal",
            ],
            resources=[certs, things],
        )
        for fn in (self.signer, self.planner, self.worker):
            fn.role.add_to_principal_policy(cleanup)
        self.confirm.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["iot:UpdateCertificate"], resources=[certs])
        )
        for fn in (self.signer, self.confirm):
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["iot:Publish"],
                    resources=[self._topic_arn(topics.rotation_certificate)],
                )
            )
        for fn in (self.planner, self.worker):
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["iot:Publish"], resources=[self._topic_arn(topics.commands)]
                )
            )
            fn.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["acm-pca:RevokeCertificate"], resources=[self.ca.ca_arn]
                )
            )
        self.queue.grant_send_messages(self.planner.role)
        self.worker.function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=5, report_batch_item_failures=True)
        )
        self._acknowledge_grants(topics.commands, topics.rotation_certificate)

    def _grant_signer(self, certs: str, things: str) -> None:
        role = self.signer.role
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["acm-pca:IssueCertificate"],
                resources=[self.ca.ca_arn],
                conditions={"StringEquals": {"acm-pca:TemplateArn": PASSTHROUGH_TEMPLATE_ARN}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["acm-pca:GetCertificate", "acm-pca:DescribeCertificateAuthority"],
                resources=[self.ca.ca_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "iot:RegisterCertificateWithoutCA",
                    "iot:AttachPolicy",
                    "iot:AttachThingPrincipal",
                ],
                resources=[certs, things],
            )
        )

    def _acknowledge_grants(self, *templates: str) -> None:
        """cdk-nag IAM5 findings of the exact grants above, each with its reason.

        Derived from the same ARNs the grants use, so they hold with or without an
        explicit ``env`` on the stack.
        """
        resources = {
            f"{self.table.table_arn}/index/*": "Queries use this table's own three "
            "indexes (by expiry day, slot, retirement day); index/* is limited to this table.",
            self._iot_arn("cert", "*"): (
                "Device certificates are registered at run time, one per device and rotation; "
                "their ids cannot be known at synthesis. Limited to this account and region."
            ),
            self._iot_arn("thing", "*"): (
                "Certificates are attached to the fleet's things, which are created outside "
                "this stack. Limited to this account and region."
            ),
        }
        for template in templates:
            resources[self._topic_arn(template)] = (
                f"Publishes only on {template!r} of every device; the thing level is the one "
                "wildcard (IAM has no per-thing variable for a backend publisher)."
            )
        for fn in self._all_functions:
            for arn, reason in resources.items():
                nag.acknowledge_wildcard_resources(fn.role, reason, [arn])
            nag.acknowledge_wildcard_actions(
                fn.role,
                "Writing the KMS-encrypted table and queue needs GenerateDataKey variants on "
                "this construct's own key only.",
                ["kms:GenerateDataKey*"],
            )
            nag.acknowledge_wildcard_actions(
                fn.role,
                "Granted by DynamoDB's encrypted-table grant on this construct's own key only.",
                ["kms:ReEncrypt*"],
            )

    # -- IoT rules: device topics -> functions ----------------------------------------

    def _rules(self, topics: TopicModel) -> None:
        self.rule_errors = logs.LogGroup(
            self,
            "RuleErrors",
            retention=self._log_retention,
            encryption_key=self.key,
            removal_policy=self._removal_policy,
        )
        region = cdk.Stack.of(self).region
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{region}.amazonaws.com"))
        error_role = iam.Role(
            self, "RuleErrorRole", assumed_by=iam.ServicePrincipal("iot.amazonaws.com")
        )
        self.rule_errors.grant_write(error_role)
        self.csr_rule = self._rule(
            "CsrRule",
            "SELECT csr, topic() AS topic, principal() AS principal "  # noqa: S608 (quote-free filter)
            f"FROM '{_mqtt_filter(topics.rotation_csr)}'",
            self.signer.function,
            error_role,
        )
        self.confirm_rule = self._rule(
            "ConfirmRule",
            "SELECT topic() AS topic, principal() AS principal "  # noqa: S608 (quote-free filter)
            f"FROM '{_mqtt_filter(topics.rotation_confirm)}'",
            self.confirm.function,
            error_role,
        )

    # -- schedules -------------------------------------------------------------------

    def _schedules(self) -> None:
        def planner_run(name: str, schedule: events.Schedule, action: str) -> events.Rule:
            return events.Rule(
                self,
                name,
                schedule=schedule,
                targets=[
                    targets.LambdaFunction(
                        self.planner.function,
                        event=events.RuleTargetInput.from_object({"action": action}),
                    )
                ],
            )

        hour = str(self.settings.daily_run_hour)
        self.daily_plan = planner_run(
            "DailyPlan", events.Schedule.cron(minute="0", hour=hour), "plan"
        )
        self.hourly_dispatch = planner_run(
            "HourlyDispatch", events.Schedule.cron(minute="5"), "dispatch"
        )

    # -- job template (for fleets whose firmware acts on IoT Jobs) ------------------------

    def _job_template(self, topics: TopicModel) -> None:
        settings = self.settings
        self.job_template = iot.CfnJobTemplate(
            self,
            "RotateJobTemplate",
            job_template_id=f"{cdk.Stack.of(self).stack_name}-rotate-certificate"[:64],
            description="Tell devices to rotate their certificate over their rotation topics",
            document=json.dumps(
                {
                    "operation": "rotate-certificate",
                    "csrTopic": topics.rotation_csr,
                    "certificateTopic": topics.rotation_certificate,
                    "confirmTopic": topics.rotation_confirm,
                }
            ),
            # These three are typed loosely in the L1 and rendered verbatim, so they are
            # written with CloudFormation's own (PascalCase) keys.
            job_executions_rollout_config={
                "MaximumPerMinute": max(
                    1, min(1000, math.ceil(settings.hourly_rotation_budget / 60))
                )
            },
            timeout_config={"InProgressTimeoutInMinutes": settings.attempt_timeout_hours * 60},
            abort_config={
                "CriteriaList": [
                    {
                        "Action": "CANCEL",
                        "FailureType": "FAILED",
                        "MinNumberOfExecutedThings": 10,
                        "ThresholdPercentage": 20,
                    }
                ]
            },
            job_executions_retry_config=iot.CfnJobTemplate.JobExecutionsRetryConfigProperty(
                retry_criteria_list=[
                    iot.CfnJobTemplate.RetryCriteriaProperty(
                        failure_type="TIMED_OUT", number_of_retries=min(10, settings.max_attempts)
                    )
                ]
            ),
        )

    # -- metrics and alarms ------------------------------------------------------------

    def _alarms(self) -> None:
        self.metrics = {name: _planner_metric(name) for name in PLANNER_METRICS}
        topic = self.alarm_topic
        self.critical_alarm = alarms.alarm(
            self,
            "CriticalWithoutRotationAlarm",
            description="A device certificate expires within 30 days and has not been "
            "rotated (or the daily planner did not report).",
            metric=self.metrics["CriticalWithoutRotation"],
            threshold=1,
            topic=topic,
            # The planner reports every day: silence means it did not run.
            missing=alarms.BREACHING,
        )
        self.exhausted_alarm = alarms.alarm(
            self,
            "RotationsExhaustedAlarm",
            description="Devices failed every rotation attempt (they keep their old "
            "certificate and are still retried).",
            metric=self.metrics["RotationsExhausted"],
            threshold=1,
            topic=topic,
        )
        self.dead_letter_alarm = alarms.alarm(
            self,
            "WorkDeadLettersAlarm",
            description="Rotation work items failed five times.",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(5)
            ),
            threshold=1,
            topic=topic,
        )
        self.signer_errors_alarm = alarms.alarm(
            self,
            "SignerErrorsAlarm",
            description="The CSR signer failed (CA or IoT errors after retries).",
            metric=self.signer.function.metric_errors(period=cdk.Duration.hours(1)),
            threshold=5,
            topic=topic,
        )

    def _rule(
        self, name: str, sql: str, function: lambda_.IFunction, error_role: iam.IRole
    ) -> iot.CfnTopicRule:
        rule = iot.CfnTopicRule(
            self,
            name,
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=sql,
                aws_iot_sql_version="2016-03-23",
                rule_disabled=False,
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(
                            function_arn=function.function_arn
                        )
                    )
                ],
                error_action=iot.CfnTopicRule.ActionProperty(
                    cloudwatch_logs=iot.CfnTopicRule.CloudwatchLogsActionProperty(
                        log_group_name=self.rule_errors.log_group_name,
                        role_arn=error_role.role_arn,
                    )
                ),
            ),
        )
        function.add_permission(
            f"{name}Invoke",
            principal=iam.ServicePrincipal("iot.amazonaws.com"),
            source_arn=rule.attr_arn,
            source_account=cdk.Stack.of(self).account,
        )
        return rule
