"""Pure, cloud-agnostic logic (standard library only).

Lambdas, the CLI and every cloud's constructs call into here; nothing in this
package imports CDK, boto3 or any cloud SDK.
"""
