"""AccessLedger: the tamper-evident ledger of remote-access decisions on AWS.

The chain lives in DynamoDB (one item per record, partition = ledger id, sort key =
sequence number): a conditional put on the sequence number lets exactly one of two
racing writers take a number, so the chain cannot fork, and Query on one partition
reads it back in order. A scheduled function checks the records written since the
last anchor and writes the new anchor (sequence + head digest) to an S3 bucket with
Object Lock in compliance mode: no one, the account's root user included, can delete
or overwrite an anchor before its retention ends. Editing, deleting, reordering or
truncating records is then detected by ``iot-remote-access evidence verify``.

Writers (the tunnel broker and sweeper, the certificate handlers) get ``connect``
(``grant_append`` and ``writer_environment()``), and use
``lambdas/ledger/recording.Recorder`` (``LedgerWriter`` underneath).
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from iot_remote_access.constructs.aws import props
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.core.ledger import (
    DEFAULT_ANCHOR_MINUTES,
    DEFAULT_LEDGER_ID,
    DEFAULT_RETENTION_DAYS,
    anchor_interval_problem,
    ledger_id_problem,
    retention_problem,
)

#: Anchors outlive the records they vouch for, so the oldest records still verify
#: until DynamoDB's TTL (which may lag by days) has removed them.
ANCHOR_GRACE_DAYS = 31
#: What DynamoDB and S3 call on the caller's behalf with the ledger's key (exact names, so
#: a writer's role needs no wildcard acknowledgement).
_KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")


class AccessLedger(Construct):
    """A DynamoDB hash chain plus hourly anchors in an S3 Object Lock (compliance) bucket.

    :param retention_days: how long records and anchors are kept (records: DynamoDB
        TTL; anchors: Object Lock compliance retention, which cannot be shortened).
        Default: 400; allowed: 366 (one year of logs, DPDP Rules 2025 rule 6(1)(e)) to 3650.
    :param anchor_interval_minutes: how often the anchor function runs. Default: 60.
    :param ledger_id: the chain's partition key; several ledgers may share a table.
        Default: ``access``.
    :param key: KMS key for the table, the bucket and the function. Default: a new key
        with rotation.
    :param alarm_topic: where the anchor function's failures (a broken tail is one)
        are sent. Default: no alarm action (the alarm still exists).
    :param removal_policy: for the table, bucket and key. Default: RETAIN.

    Public attributes: ``table``, ``bucket``, ``key``, ``anchor_function`` (a
    ``LibraryFunction``), ``schedule``, ``anchor_failures_alarm``.

    Example::

        from aws_cdk import aws_iam as iam
        from iot_remote_access.constructs.aws import AccessLedger

        ledger = AccessLedger(stack, "Ledger", retention_days=730)
        writer = iam.Role(
            stack, "Writer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
        )
        ledger.grant_append(writer)
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        anchor_interval_minutes: int = DEFAULT_ANCHOR_MINUTES,
        ledger_id: str = DEFAULT_LEDGER_ID,
        key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "AccessLedger",
            retention_days=(retention_days, props.WHOLE_NUMBER),
            anchor_interval_minutes=(anchor_interval_minutes, props.WHOLE_NUMBER),
            ledger_id=(ledger_id, str),
            key=(key, props.optional(props.I_KEY)),
            alarm_topic=(alarm_topic, props.optional(props.I_TOPIC)),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        for field, problem in (
            ("retention_days", retention_problem(retention_days)),
            ("anchor_interval_minutes", anchor_interval_problem(anchor_interval_minutes)),
            ("ledger_id", ledger_id_problem(ledger_id)),
        ):
            if problem is not None:
                raise ValueError(f"{field}: {problem}")
        self.ledger_id = ledger_id
        self.retention_days = retention_days
        self.key = key or kms.Key(
            self,
            "Key",
            description="iot-remote-access access ledger (records and anchors)",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.table = self._table(removal_policy)
        self.bucket = self._bucket(removal_policy)
        self.anchor_function = LibraryFunction(
            self,
            "Anchor",
            handler_package="ledger_anchor",
            shared_packages=["ledger"],
            description="Checks the ledger's new records and anchors its head in Object Lock",
            environment={**self.writer_environment(), "ANCHOR_BUCKET": self.bucket.bucket_name},
            # Verifying a day's tail (a few thousand records) takes seconds; room for gaps.
            timeout=cdk.Duration.minutes(5),
            # One run at a time: two runs would anchor the same head twice, harmlessly,
            # but there is no reason to pay for it.
            reserved_concurrent_executions=1,
        )
        self._grant_anchor(self.anchor_function.role)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"Anchors the {ledger_id} ledger every {anchor_interval_minutes} min",
            schedule=events.Schedule.rate(cdk.Duration.minutes(anchor_interval_minutes)),
            targets=[targets.LambdaFunction(self.anchor_function.function, retry_attempts=2)],
        )
        self.anchor_failures_alarm = cloudwatch.Alarm(
            self,
            "AnchorFailures",
            metric=self.anchor_function.function.metric_errors(
                period=cdk.Duration.minutes(anchor_interval_minutes), statistic="Sum"
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=(
                f"The {ledger_id} ledger was not anchored: its newest records failed "
                "verification (see the function's log: the record and why) or the store "
                "could not be read. Run `iot-remote-access evidence verify` on an export."
            ),
        )
        if alarm_topic is not None:
            self.anchor_failures_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))

    def writer_environment(self) -> dict[str, str]:
        """What a writer's function needs in its environment (``LedgerWriter.from_environment``)."""
        return {
            "LEDGER_TABLE": self.table.table_name,
            "LEDGER_ID": self.ledger_id,
            "LEDGER_RETENTION_DAYS": str(self.retention_days),
        }

    def connect(self, *functions: LibraryFunction) -> None:
        """Make each function a writer: ``grant_append`` on its role and
        ``writer_environment()`` in its environment. The function must have been built
        with ``shared_packages`` holding ``"ledger"`` (the library's deciding functions
        are); without these variables it records nothing, exactly as before."""
        for function in functions:
            props.check("AccessLedger.connect", function=(function, LibraryFunction))
            if "ledger" not in function.shared_packages:
                raise ValueError(
                    f"AccessLedger.connect: {function.node.path} was built without the "
                    "ledger package; allowed: a LibraryFunction with shared_packages "
                    "including 'ledger'"
                )
            self.grant_append(function.role)
            for name, value in self.writer_environment().items():
                function.function.add_environment(name, value)

    def grant_append(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the head of this ledger and append records to it (no update,
        no delete), on this ledger's partition only."""
        props.check("AccessLedger.grant_append", grantee=(grantee, props.I_GRANTABLE))
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:Query", "dynamodb:PutItem"],
            resource_arns=[self.table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [self.ledger_id]}},
        )
        self.key.grant(grantee, *_KEY_ACTIONS)
        return grant

    # -- resources --

    def _table(self, removal_policy: cdk.RemovalPolicy) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "Records",
            partition_key=dynamodb.Attribute(name="ledger", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="seq", type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            time_to_live_attribute="expiresAt",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=removal_policy,
        )

    def _bucket(self, removal_policy: cdk.RemovalPolicy) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Anchors",
            object_lock_enabled=True,
            object_lock_default_retention=s3.ObjectLockRetention.compliance(
                cdk.Duration.days(self.retention_days)
            ),
            versioned=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AnchorRetention",
                    expiration=cdk.Duration.days(self.retention_days + ANCHOR_GRACE_DAYS),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        cdk.Validations.of(bucket).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-S1",
                reason="The bucket holds only anchors (sequence numbers and SHA-256 digests, "
                "no personal data), written by one function and locked in compliance mode; "
                "an access-log bucket would need an unlogged bucket of its own. Enable S3 "
                "data events in the AuditTrail to record reads.",
            )
        )
        return bucket

    def _grant_anchor(self, role: iam.IRole) -> None:
        prefix = f"anchors/{self.ledger_id}/"
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadLedger",
                actions=["dynamodb:Query"],
                resources=[self.table.table_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteAndReadAnchors",
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{prefix}*")],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindLastAnchor",
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            )
        )
        self.key.grant(role, *_KEY_ACTIONS)
        # Only the anchor function may add anchors: a forged "latest" anchor would make the
        # next run verify from a head of the forger's choosing. Explicit deny, any principal.
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheAnchorFunctionWritesAnchors",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": role.role_arn}},
            )
        )
        stack = cdk.Stack.of(self)
        bucket_id = stack.get_logical_id(cast(cdk.CfnElement, self.bucket.node.default_child))
        cdk.Validations.of(role).acknowledge(
            cdk.Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}*]",
                reason="One anchor object per run, named by the time it was taken; the grant "
                "is this ledger's prefix of this bucket only, and Object Lock forbids "
                "overwriting or deleting what was written.",
            )
        )
