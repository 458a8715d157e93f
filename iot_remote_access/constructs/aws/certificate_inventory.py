"""CertificateInventory: the DynamoDB table of devices and their certificates."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from iot_remote_access.constructs.aws import props
from iot_remote_access.core.aws_schema import EXPIRY_INDEX, REVOKE_INDEX, SLOT_INDEX


class CertificateInventory(Construct):
    """One item per thing; indexes by expiry day, rotation slot and retirement day.

    Point-in-time recovery and customer-managed KMS encryption on; retained on
    stack deletion (it is the fleet's asset inventory).

    :param encryption_key: any ``kms.IKey``. Default: a new key with rotation.
    :param removal_policy: Default: RETAIN, with deletion protection (DESTROY turns
        deletion protection off, or the stack could not delete the table).

    Example::

        from aws_cdk import aws_iam as iam
        from iot_remote_access.constructs.aws import CertificateInventory

        inventory = CertificateInventory(stack, "Inventory")
        auditors = iam.Role(stack, "Auditors", assumed_by=iam.AccountRootPrincipal())
        inventory.grant_read(auditors)

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        encryption_key: kms.IKey | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "CertificateInventory",
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        self.key = encryption_key or kms.Key(
            self,
            "Key",
            description="iot-remote-access certificate inventory",
            enable_key_rotation=True,
        )
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="thing", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=removal_policy != cdk.RemovalPolicy.DESTROY,
            removal_policy=removal_policy,
        )
        self._indexes()

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the inventory (items and indexes) and decrypt it with its key.

        For reports and audits, e.g. the role that runs ``iot-remote-access certs inventory``.
        """
        props.check("CertificateInventory.grant_read", grantee=(grantee, props.I_GRANTABLE))
        return self.table.grant_read_data(grantee)

    def _indexes(self) -> None:
        for name, key, projection in (
            (EXPIRY_INDEX, "expiryDay", dynamodb.ProjectionType.ALL),
            (SLOT_INDEX, "slotHour", dynamodb.ProjectionType.KEYS_ONLY),
            (REVOKE_INDEX, "revokeDay", dynamodb.ProjectionType.ALL),
        ):
            self.table.add_global_secondary_index(
                index_name=name,
                partition_key=dynamodb.Attribute(name=key, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name="thing", type=dynamodb.AttributeType.STRING),
                projection_type=projection,
            )
