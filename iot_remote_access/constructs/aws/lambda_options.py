"""LambdaOptions: where and how every Lambda function of a construct runs.

Compliance packs (cdk-nag's NIST 800-53 R5 and HIPAA packs, checkov) ask that
functions run in a VPC, have reserved concurrency and a dead-letter queue. Those
choices belong to the team that deploys (their VPC, their concurrency budget), so
they are opt-in: one ``LambdaOptions`` passed as ``lambda_options=`` to a construct
applies to every function the construct creates, through :class:`LibraryFunction`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sqs as sqs

from iot_remote_access.constructs.aws import props

I_VPC = props.Interface("ec2.IVpc", "vpc_id")
I_SECURITY_GROUP = props.Interface("ec2.ISecurityGroup", "security_group_id")
I_QUEUE = props.Interface("sqs.IQueue", "queue_arn")


@dataclass(frozen=True, kw_only=True)
class LambdaOptions:
    """VPC, reserved concurrency and dead-letter queue for a construct's functions.

    :param vpc: any ``ec2.IVpc`` (yours, or ``Vpc.from_lookup``). The functions need
        a route to the AWS APIs they call (IoT, DynamoDB, CloudWatch, SSM, ...): a
        NAT gateway or VPC endpoints. Default: no VPC (Lambda's own network).
    :param vpc_subnets: where in ``vpc``. Default: the VPC's private subnets.
    :param security_groups: Default: one new group per function, all outbound
        traffic allowed and no inbound.
    :param reserved_concurrent_executions: for each function (1 or more). A
        construct that needs a fixed value for correctness keeps it (the access
        ledger's anchor runs one at a time). Default: unreserved.
    :param dead_letter_queue: any ``sqs.IQueue``, shared by every function of the
        construct; its role is granted ``sqs:SendMessage`` (and the queue key's use).
        Default: none.
    :param dead_letter_queue_enabled: True without ``dead_letter_queue``: a new
        encrypted queue per function (KMS with the construct's ``encryption_key``,
        else SQS-managed; TLS only; 14 days). Default: False.

    A dead-letter queue receives failed asynchronous invocations only (schedules,
    EventBridge, IoT rules); a function called through its URL never writes to it.

    Example::

        from aws_cdk import aws_ec2 as ec2
        from iot_remote_access.constructs.aws import DevicePolicy, LambdaOptions, SecureTunneling

        vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
        SecureTunneling(
            stack,
            "Tunnels",
            device_policy=DevicePolicy(stack, "Fleet"),
            lambda_options=LambdaOptions(
                vpc=vpc,
                vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                reserved_concurrent_executions=5,
                dead_letter_queue_enabled=True,
            ),
        )

    """

    vpc: ec2.IVpc | None = None
    vpc_subnets: ec2.SubnetSelection | None = None
    security_groups: Sequence[ec2.ISecurityGroup] | None = None
    reserved_concurrent_executions: int | None = None
    dead_letter_queue: sqs.IQueue | None = None
    dead_letter_queue_enabled: bool = False

    def __post_init__(self) -> None:
        props.check(
            "LambdaOptions",
            vpc=(self.vpc, props.optional(I_VPC)),
            vpc_subnets=(self.vpc_subnets, props.optional(ec2.SubnetSelection)),
            security_groups=(
                self.security_groups,
                props.optional(props.SequenceOf(I_SECURITY_GROUP)),
            ),
            reserved_concurrent_executions=(
                self.reserved_concurrent_executions,
                props.optional(props.WHOLE_NUMBER),
            ),
            dead_letter_queue=(self.dead_letter_queue, props.optional(I_QUEUE)),
            dead_letter_queue_enabled=(self.dead_letter_queue_enabled, bool),
        )
        if self.vpc is None:
            for name in ("vpc_subnets", "security_groups"):
                if getattr(self, name) is not None:
                    raise ValueError(f"LambdaOptions {name}: set without vpc; allowed: with vpc")
        concurrency = self.reserved_concurrent_executions
        if isinstance(concurrency, int) and concurrency < 1:
            raise ValueError(
                f"LambdaOptions reserved_concurrent_executions: {concurrency} would stop "
                "every function; allowed: 1 or more"
            )

    @property
    def wants_dead_letter_queue(self) -> bool:
        """Whether the functions get a dead-letter queue (given or new)."""
        return self.dead_letter_queue is not None or self.dead_letter_queue_enabled
