"""The access ledger's anchor bucket on Google Cloud: plan and deploy, like the Pub/Sub topology.

A GCS bucket whose retention policy is *locked*: every object is kept (no delete, no
overwrite) until it is ``retention_days`` old, and a locked policy can be lengthened,
never shortened or removed, by anyone (Google's "Bucket Lock", SEC 17a-4(f) assessed).
Uniform bucket-level access (IAM only, no ACLs) and public access prevention are on;
Object Versioning stays off (Cloud Storage refuses it with a retention policy).

``plan`` compares the desired bucket with what is live; ``deploy`` creates or updates
it and locks the policy (``lockRetentionPolicy`` with the bucket's metageneration, so
it locks exactly the policy just read). Through google-cloud-storage (the ``gcp``
extra); the anchor writer is ``lambdas/anchor_sinks/sinks.GcsAnchors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from iot_remote_access.core.ledger import DEFAULT_RETENTION_DAYS, retention_problem

DAY_SECONDS = 86_400
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]")


class BucketAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    #: The live bucket cannot become the desired one (a locked policy would shorten, or the
    #: location differs): deploy changes nothing.
    BLOCKED = "blocked"


@dataclass(frozen=True)
class AnchorBucket:
    """The desired anchor bucket.

    :param name: a globally unique bucket name (3-63 of a-z, 0-9, ``-``, ``_``).
    :param location: e.g. ``EU`` or ``europe-west1``.
    :param retention_days: at least 366 (one year of logs, DPDP Rules 2025 rule 6(1)(e)).
        Default: 400.
    :param labels: added to ``managed-by: iot-remote-access``.
    """

    name: str
    location: str
    retention_days: int = DEFAULT_RETENTION_DAYS
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _BUCKET_NAME.fullmatch(self.name) or "goog" in self.name:
            raise ValueError(
                f"name: {self.name[:70]!r} is not allowed; allowed: 3-63 of a-z, 0-9, '-' "
                "and '_', starting and ending with a letter or digit, without 'goog'"
            )
        problem = retention_problem(self.retention_days)
        if problem is not None:
            raise ValueError(f"retention_days: {problem}")

    @property
    def retention_seconds(self) -> int:
        return self.retention_days * DAY_SECONDS

    def desired(self) -> dict[str, Any]:
        """The fields this library manages, as the JSON API names them."""
        return {
            "location": self.location.upper(),
            "retentionPeriod": self.retention_seconds,
            "retentionLocked": True,
            "uniformBucketLevelAccess": True,
            "publicAccessPrevention": "enforced",
            "versioning": False,
            "labels": {**self.labels, "managed-by": "iot-remote-access"},
        }


@dataclass(frozen=True)
class BucketPlan:
    action: BucketAction
    #: field -> (live, desired) for the fields that differ.
    changes: dict[str, tuple[Any, Any]]
    reason: str = ""

    def summary(self) -> str:
        fields = ", ".join(sorted(self.changes)) or "nothing"
        text = f"anchor bucket: {self.action} ({fields})"
        return f"{text}: {self.reason}" if self.reason else text


def live_state(bucket: Any) -> dict[str, Any]:
    """The managed fields of a live ``google.cloud.storage.Bucket``."""
    iam = bucket.iam_configuration
    return {
        "location": str(bucket.location or "").upper(),
        "retentionPeriod": bucket.retention_period,
        "retentionLocked": bool(bucket.retention_policy_locked),
        "uniformBucketLevelAccess": bool(iam.uniform_bucket_level_access_enabled),
        "publicAccessPrevention": iam.public_access_prevention,
        "versioning": bool(bucket.versioning_enabled),
        "labels": dict(bucket.labels or {}),
    }


def plan(client: Any, spec: AnchorBucket) -> BucketPlan:
    """What ``deploy`` would do; reads only."""
    live = client.lookup_bucket(spec.name)
    desired = spec.desired()
    if live is None:
        return BucketPlan(BucketAction.CREATE, {k: (None, v) for k, v in desired.items()})
    state = live_state(live)
    changes = {k: (state.get(k), v) for k, v in desired.items() if state.get(k) != v}
    if "location" in changes:
        return BucketPlan(BucketAction.BLOCKED, changes, "a bucket's location cannot change")
    period = state["retentionPeriod"]
    if state["retentionLocked"] and isinstance(period, int) and period > spec.retention_seconds:
        return BucketPlan(
            BucketAction.BLOCKED,
            changes,
            f"its locked retention policy keeps objects {period // DAY_SECONDS} days; it "
            f"can be lengthened, never shortened to {spec.retention_days}",
        )
    return BucketPlan(BucketAction.UPDATE if changes else BucketAction.UNCHANGED, changes)


def deploy(client: Any, spec: AnchorBucket, *, project: str) -> BucketPlan:
    """Create or update the bucket, then lock its retention policy; returns the plan done."""
    done = plan(client, spec)
    if done.action in (BucketAction.UNCHANGED, BucketAction.BLOCKED):
        return done
    if done.action is BucketAction.CREATE:
        bucket = client.bucket(spec.name)
        _configure(bucket, spec)
        bucket = client.create_bucket(bucket, project=project, location=spec.location)
    else:
        bucket = client.get_bucket(spec.name)
        _configure(bucket, spec)
        bucket.patch()
    if not bucket.retention_policy_locked:
        # Locks the policy of exactly this metageneration: a change made meanwhile by
        # someone else fails the lock (412) instead of being locked unseen.
        bucket.lock_retention_policy()
    return done


def _configure(bucket: Any, spec: AnchorBucket) -> None:
    bucket.retention_period = spec.retention_seconds
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.versioning_enabled = False
    bucket.labels = spec.desired()["labels"]
