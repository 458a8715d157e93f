"""Certificate rotation on AWS: the code the rotation Lambdas share.

Thin AWS glue (DynamoDB, IoT, ACM Private CA) around ``iot_remote_access.core``
(stagger, rotation plan, CSR checks). Imports only the standard library, boto3
and the core, so it runs in the Lambda runtime as staged by ``LibraryFunction``.
"""
