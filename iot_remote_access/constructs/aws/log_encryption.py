"""allow_cloudwatch_logs: let CloudWatch Logs encrypt this account's log groups with a key."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import IConstruct

from iot_remote_access.constructs.aws.key_policy import add_to_key_policy


def allow_cloudwatch_logs(
    key: kms.IKey, scope: IConstruct, *, sid: str = "AllowCloudWatchLogsForThisAccountsLogGroups"
) -> None:
    """Add the key-policy statement an encrypted log group needs.

    Limited by the encryption context to log groups of the stack's account and
    region, as the CloudWatch Logs user guide recommends. An imported key's policy
    is managed where the key is: synthesis then warns with the statement to add
    there. ``sid`` names the statement (a key policy's statement ids must be unique).
    """
    stack = cdk.Stack.of(scope)
    add_to_key_policy(
        key,
        scope,
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            resources=["*"],  # in a key policy, "*" means this key
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        ),
    )
