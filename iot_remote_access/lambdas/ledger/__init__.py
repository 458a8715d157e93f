"""The access ledger's runtime side, shared by every Lambda that records a decision.

Thin AWS glue (DynamoDB, S3) around ``iot_remote_access.core.ledger``. Imports only
the standard library, boto3 and the core, so it runs in the Lambda runtime as staged
by ``LibraryFunction`` (``shared_packages=["ledger"]``).
"""
