"""The wildcard-policy guard: find overly permissive IoT policies anywhere.

``core.policy_check`` holds the rules; this package feeds it from CDK apps
(a CDK policy-validation plugin), from files in CI (``lint``) and from a live
account (``audit``), and reports the findings as a table, JSON or SARIF.
"""

from iot_remote_access.guard.scan import PolicyResult, scan_documents

__all__ = ["PolicyResult", "scan_documents"]
