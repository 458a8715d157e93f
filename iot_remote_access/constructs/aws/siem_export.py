"""SiemExport: CloudWatch log groups -> Kinesis Data Firehose -> an encrypted S3 bucket by date."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from iot_remote_access.constructs.aws import nag, props
from iot_remote_access.constructs.aws.log_encryption import allow_cloudwatch_logs

#: Objects land under ``logs/YYYY/MM/DD/`` (UTC, the time Firehose received the
#: records); the Athena table in docs/security-monitoring.md projects the date from this layout.
DATA_PREFIX = "logs/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/"
ERROR_PREFIX = (
    "errors/!{firehose:error-output-type}/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/"
)
#: Move objects to Glacier Instant Retrieval after this many days (if kept longer).
COLD_STORAGE_AFTER_DAYS = 90
#: CloudWatch Logs delivers gzip'd batches; without these processors the objects
#: would be gzip inside gzip with no record separators.
_RECORDS_ONE_PER_LINE = firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
    enabled=True,
    processors=[
        firehose.CfnDeliveryStream.ProcessorProperty(
            type="Decompression",
            parameters=[
                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                    parameter_name="CompressionFormat", parameter_value="GZIP"
                )
            ],
        ),
        firehose.CfnDeliveryStream.ProcessorProperty(type="AppendDelimiterToRecord"),
    ],
)


class SiemExport(Construct):
    """Streams log groups to S3 in one format any SIEM or Athena can read.

    Each log group gets a subscription filter into one Firehose stream. Firehose
    decompresses the CloudWatch Logs batches and writes them one JSON object per
    line (``messageType``, ``owner``, ``logGroup``, ``logStream``,
    ``logEvents[{id, timestamp, message}]``), gzip-compressed, under
    ``logs/YYYY/MM/DD/``. The bucket is KMS-encrypted, TLS-only, blocks public
    access, is versioned, logs its access to a second bucket and expires objects
    after ``retention_days``.

    A log group has at most two subscription filters (a CloudWatch Logs limit);
    this construct uses one of them on every group it exports.

    :param log_groups: exported from the start; add more with :meth:`add_log_group`.
    :param encryption_key: for the bucket, the stream and its error log group; it
        must let CloudWatch Logs use it (see ``allow_cloudwatch_logs``; for an
        imported key synthesis warns with that statement). Default: a new key with
        rotation that does.
    :param retention_days: days objects are kept. Default: 400.
    :param log_retention: of Firehose's own error log group. Default: one year.
    :param removal_policy: of both buckets, the error log group and its stream.
        Default: RETAIN (exported records outlive the stack).

    Example::

        from aws_cdk import aws_logs as logs
        from iot_remote_access.constructs.aws import SiemExport

        export = SiemExport(stack, "Siem", retention_days=90)
        export.add_log_group(logs.LogGroup(stack, "AppLogs"))

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_groups: Sequence[logs.ILogGroup] = (),
        encryption_key: kms.IKey | None = None,
        retention_days: int = 400,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "SiemExport",
            log_groups=(log_groups, props.SequenceOf(props.I_LOG_GROUP)),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            retention_days=(retention_days, int),
            log_retention=(log_retention, logs.RetentionDays),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        self._removal_policy = removal_policy
        if retention_days < 1:
            raise ValueError(
                f"retention_days: {retention_days!r} is below 1; allowed: days, e.g. 400"
            )
        if encryption_key is None:
            encryption_key = kms.Key(
                self, "Key", description="iot-remote-access SIEM export", enable_key_rotation=True
            )
            allow_cloudwatch_logs(encryption_key, self)
        elif not isinstance(encryption_key, kms.Key):
            # An imported key: its policy is not ours, so this warns with the statement.
            allow_cloudwatch_logs(encryption_key, self)
        self.key = encryption_key
        self._buckets(retention_days)
        self.error_log_group = logs.LogGroup(
            self,
            "DeliveryErrors",
            encryption_key=self.key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self._delivery_role()
        self._stream()
        self._subscription_role()
        self.subscription_filters: list[logs.CfnSubscriptionFilter] = []
        self._exported: list[logs.ILogGroup] = []
        for group in log_groups:
            self.add_log_group(group)

    # -- buckets: the export and its access log ----------------------------------------

    def _buckets(self, retention_days: int) -> None:
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logs can only be delivered to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(retention_days))],
            removal_policy=self._removal_policy,
        )
        nag.acknowledge(
            self.access_log_bucket,
            "S1",
            "This bucket receives the SIEM bucket's server access logs; logging its "
            "own access would log the logging without end.",
        )
        transitions = []
        if retention_days > COLD_STORAGE_AFTER_DAYS + 30:
            transitions.append(
                s3.Transition(
                    storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                    transition_after=cdk.Duration.days(COLD_STORAGE_AFTER_DAYS),
                )
            )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="siem-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=cdk.Duration.days(retention_days),
                    transitions=transitions,
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                )
            ],
            removal_policy=self._removal_policy,
        )

    # -- Firehose: its role and the stream ------------------------------------------------

    def _delivery_role(self) -> None:
        stack = cdk.Stack.of(self)
        # Written by hand rather than with the DeliveryStream L2, whose grants
        # include s3:DeleteObject* and kms:ReEncrypt*: Firehose needs exactly
        # these (Amazon Data Firehose developer guide, "Grant access to S3").
        self.delivery_role = iam.Role(
            self,
            "DeliveryRole",
            description="Firehose writing the SIEM export into its bucket",
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                }
            ),
        )
        objects = self.bucket.arn_for_objects("*")
        self.delivery_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:AbortMultipartUpload",
                    "s3:GetBucketLocation",
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:PutObject",
                ],
                resources=[self.bucket.bucket_arn, objects],
            )
        )
        self.delivery_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            )
        )
        self.error_log_group.grant(self.delivery_role, "logs:PutLogEvents")
        nag.acknowledge_wildcard_resources(
            self.delivery_role,
            "Firehose writes one object per buffer under logs/YYYY/MM/DD/ with "
            "names it chooses; the grant is limited to this bucket's objects.",
            [objects],
        )

    def _stream(self) -> None:
        error_stream = logs.LogStream(
            self,
            "DeliveryErrorStream",
            log_group=self.error_log_group,
            removal_policy=self._removal_policy,
        )
        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=(
                firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                    key_type="CUSTOMER_MANAGED_CMK", key_arn=self.key.key_arn
                )
            ),
            extended_s3_destination_configuration=(
                firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                    bucket_arn=self.bucket.bucket_arn,
                    role_arn=self.delivery_role.role_arn,
                    prefix=DATA_PREFIX,
                    error_output_prefix=ERROR_PREFIX,
                    compression_format="GZIP",
                    buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                        interval_in_seconds=300, size_in_m_bs=64
                    ),
                    encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                        kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                            awskms_key_arn=self.key.key_arn
                        )
                    ),
                    cloud_watch_logging_options=(
                        firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                            enabled=True,
                            log_group_name=self.error_log_group.log_group_name,
                            log_stream_name=error_stream.log_stream_name,
                        )
                    ),
                    processing_configuration=_RECORDS_ONE_PER_LINE,
                )
            ),
        )
        # Firehose checks the role's access when the stream is created.
        self.delivery_stream.node.add_dependency(self.delivery_role)

    # -- CloudWatch Logs -> the stream ------------------------------------------------------

    def _subscription_role(self) -> None:
        stack = cdk.Stack.of(self)
        # One role for every subscription filter: CloudWatch Logs of this account
        # and region may put records into this stream, nothing else.
        self.subscription_role = iam.Role(
            self,
            "SubscriptionRole",
            description="CloudWatch Logs subscription filters into the SIEM export stream",
            assumed_by=iam.ServicePrincipal("logs.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="logs", resource="*", arn_format=cdk.ArnFormat.NO_RESOURCE_NAME
                        )
                    },
                }
            ),
        )
        self.subscription_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[self.delivery_stream.attr_arn],
            )
        )

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (a SIEM's or Athena's role) read the exported objects.

        Read on the bucket and its objects, and decrypt with its key; nothing that
        writes or deletes.
        """
        props.check("SiemExport.grant_read", grantee=(grantee, props.I_GRANTABLE))
        return self.bucket.grant_read(grantee)

    def add_log_group(
        self, log_group: logs.ILogGroup, *, filter_pattern: str = ""
    ) -> logs.CfnSubscriptionFilter:
        """Export ``log_group`` (all events, unless ``filter_pattern`` narrows them)."""
        if any(log_group is seen for seen in self._exported):
            raise ValueError(
                f"log_group: {log_group.node.path!r} is already exported; allowed: each "
                "log group once (a log group takes at most two subscription filters)"
            )
        self._exported.append(log_group)
        subscription = logs.CfnSubscriptionFilter(
            self,
            f"Export{len(self._exported)}",
            log_group_name=log_group.log_group_name,
            destination_arn=self.delivery_stream.attr_arn,
            role_arn=self.subscription_role.role_arn,
            filter_pattern=filter_pattern,
        )
        # CloudWatch Logs tests delivery when the filter is created: the stream
        # must be active and the role's policy in place.
        subscription.node.add_dependency(self.subscription_role)
        subscription.node.add_dependency(self.delivery_stream)
        self.subscription_filters.append(subscription)
        return subscription
