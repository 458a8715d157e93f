"""``gcp plan|deploy``'s part for the access ledger: the anchor bucket of ``ledger.gcp``.

The bucket's retention is the ledger's ``retentionDays`` and is *locked* by deploy
(``pubsub.anchor_bucket``): plan shows every managed field that differs (live ->
desired), deploy refuses, before changing anything, a bucket it cannot make the desired
one (a locked policy would shorten, a location differs). Cloud Storage is reached
through google-cloud-storage; ``STORAGE_EMULATOR_HOST`` (that library's own variable)
aims it at a local server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console

from iot_remote_access.cli.errors import InputError
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, BucketAction, BucketPlan
from iot_remote_access.settings import FleetSettings

SERVICE = "Cloud Storage"
_SYMBOL = {"create": "+", "update": "~", "unchanged": "=", "blocked": "!"}


@dataclass(frozen=True)
class LedgerAnchors:
    """The anchor bucket of one project, and the client that plans and deploys it."""

    client: Any
    spec: AnchorBucket
    project: str

    @staticmethod
    def spec_of(settings: FleetSettings) -> AnchorBucket | None:
        """The desired bucket (None without ``ledger.gcp``); bad names exit 2."""
        ledger = settings.ledger
        if not ledger.enabled or ledger.gcp is None:
            return None
        try:
            return AnchorBucket(
                name=ledger.gcp.bucket,
                location=ledger.gcp.location,
                retention_days=ledger.retention_days,
            )
        except ValueError as error:
            raise InputError(f"ledger.gcp.bucket: {error}") from None

    @classmethod
    def connect(cls, spec: AnchorBucket, project: str) -> LedgerAnchors:
        import google.cloud.storage as storage

        return cls(storage.Client(project=project), spec, project)

    def plan(self) -> BucketPlan:
        from iot_remote_access.pubsub.anchor_bucket import plan

        return plan(self.client, self.spec)

    def deploy(self) -> BucketPlan:
        from iot_remote_access.pubsub.anchor_bucket import deploy

        return deploy(self.client, self.spec, project=self.project)

    def refuse_blocked(self, planned: BucketPlan) -> None:
        """Exit 2 before anything is deployed when the bucket cannot be made as desired."""
        if planned.action is BucketAction.BLOCKED:
            raise InputError(f"nothing deployed: anchor bucket {self.spec.name}: {planned.reason}")

    def print_plan(self, planned: BucketPlan, console: Console) -> None:
        action = str(planned.action)
        line = f"{_SYMBOL[action]} {action} anchor bucket {self.spec.name}"
        if planned.reason:
            line += f" ({planned.reason})"
        console.print(line, markup=False, highlight=False)
        for name, (live, desired) in sorted(planned.changes.items()):
            console.print(f"    {name}: {live!r} -> {desired!r}", markup=False, highlight=False)

    def print_applied(self, done: BucketPlan, console: Console) -> None:
        action = str(done.action)
        locked = f", retention {self.spec.retention_days} days locked"
        tail = locked if done.action is not BucketAction.BLOCKED else ""
        console.print(
            f"{_SYMBOL[action]} {action} anchor bucket {self.spec.name}{tail}",
            markup=False,
            highlight=False,
        )
