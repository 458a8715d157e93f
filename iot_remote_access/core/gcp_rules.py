"""Google Cloud's naming rules, written once (like ``aws_policy`` and ``azure_rules``).

Project ids, Pub/Sub topic and subscription ids and service-account e-mails are
checked by the settings, the Pub/Sub desired state, the manifests and the bridge;
each rule lives here so they cannot disagree.
"""

from __future__ import annotations

import re

PROJECT_RULE = "6-30 of a-z, 0-9 and '-', starting with a letter, not ending with '-'"
_PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_PROJECT_RE = re.compile(rf"\A{_PROJECT}\Z")

PUBSUB_ID_RULE = "[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}, not starting with 'goog'"
_PUBSUB_ID_RE = re.compile(r"\A[a-zA-Z][a-zA-Z0-9._~%+-]{2,254}\Z")

#: A user-managed service account: the account id follows the project id's rule.
SERVICE_ACCOUNT_RULE = (
    "NAME@PROJECT.iam.gserviceaccount.com (NAME and PROJECT: 6-30 of a-z, 0-9, '-')"
)
_SERVICE_ACCOUNT_RE = re.compile(rf"\A{_PROJECT}@{_PROJECT}\.iam\.gserviceaccount\.com\Z")


class GcpRuleError(ValueError):
    """A value Google Cloud would refuse; ``problem`` is the message without the field."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}" if field_name else problem)
        self.field_name = field_name
        self.problem = problem


def validate_project_id(value: object, *, field_name: str) -> str:
    """A Google Cloud project id, or raise naming the field."""
    if not isinstance(value, str) or not _PROJECT_RE.match(value):
        raise GcpRuleError(
            field_name, f"{value!r} is not a Google Cloud project id; allowed: {PROJECT_RULE}"
        )
    return value


def validate_pubsub_id(value: object, *, field_name: str) -> str:
    """A Pub/Sub topic or subscription id, or raise naming the field."""
    if (
        not isinstance(value, str)
        or not _PUBSUB_ID_RE.match(value)
        or value.lower().startswith("goog")
    ):
        raise GcpRuleError(field_name, f"{value!r} is not a Pub/Sub id; allowed: {PUBSUB_ID_RULE}")
    return value


def validate_service_account(value: object, *, field_name: str) -> str:
    """A Google service account e-mail (IAM members, Workload Identity), or raise."""
    if not isinstance(value, str) or not _SERVICE_ACCOUNT_RE.match(value):
        raise GcpRuleError(
            field_name,
            f"{value!r} is not a Google service account; allowed: {SERVICE_ACCOUNT_RULE}",
        )
    return value
