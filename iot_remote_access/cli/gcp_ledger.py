"""``gcp plan|deploy``'s part for the access ledger: the anchor bucket of ``ledger.gcp``, and
the subscription the Teleport session writer reads.

The bucket's retention is the ledger's ``retentionDays`` and is *locked* by deploy
(``pubsub.anchor_bucket``): plan shows every managed field that differs (live ->
desired), deploy refuses, before changing anything, a bucket it cannot make the desired
one (a locked policy would shorten, a location differs). Cloud Storage is reached
through google-cloud-storage; ``STORAGE_EMULATOR_HOST`` (that library's own variable)
aims it at a local server.

With ``gcp.accessProxy.auditSinkDestination`` a Pub/Sub topic, the subscription
``iot-remote-access-ledger-sessions`` on it is planned and deployed too, for
``evidence record gcp-sessions``: it never expires (the default, 31 idle days, would
silently end the record), keeps messages 7 days and gives the writer 60 s per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Console

from iot_remote_access.cli.errors import InputError
from iot_remote_access.pubsub.anchor_bucket import AnchorBucket, BucketAction, BucketPlan
from iot_remote_access.settings import FleetSettings

#: Named in a refused call's one line: Cloud Storage (bucket) or Pub/Sub (subscription).
SERVICE = "Google Cloud"
_SYMBOL = {"create": "+", "update": "~", "unchanged": "=", "blocked": "!"}
SESSIONS_SUBSCRIPTION = "iot-remote-access-ledger-sessions"
ACK_DEADLINE_SECONDS = 60
RETENTION = timedelta(days=7)
_PUBSUB = "pubsub.googleapis.com/"
#: Plan's field names (the JSON API's) -> the update mask's.
_FIELD_PATHS = {
    "ackDeadlineSeconds": "ack_deadline_seconds",
    "expirationPolicy": "expiration_policy",
}


@dataclass(frozen=True)
class SubscriptionPlan:
    action: BucketAction
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class SessionSubscription:
    """The session writer's subscription on the Teleport audit sink's topic."""

    name: str
    topic: str

    @staticmethod
    def of(settings: FleetSettings, project: str) -> SessionSubscription | None:
        proxy = settings.gcp.access_proxy if settings.gcp is not None else None
        destination = proxy.audit_sink_destination if proxy is not None else None
        if destination is None or not destination.startswith(_PUBSUB + "projects/"):
            return None
        name = f"projects/{project}/subscriptions/{SESSIONS_SUBSCRIPTION}"
        return SessionSubscription(name, destination.removeprefix(_PUBSUB))

    def plan(self, subscriber: Any) -> SubscriptionPlan:
        from google.api_core.exceptions import NotFound

        try:
            live = subscriber.get_subscription(request={"subscription": self.name})
        except NotFound:
            return SubscriptionPlan(BucketAction.CREATE, {"topic": (None, self.topic)})
        if live.topic != self.topic:
            return SubscriptionPlan(
                BucketAction.BLOCKED,
                {"topic": (live.topic, self.topic)},
                "a subscription's topic cannot change; delete it or choose another sink topic",
            )
        changes: dict[str, tuple[Any, Any]] = {}
        if live.ack_deadline_seconds != ACK_DEADLINE_SECONDS:
            changes["ackDeadlineSeconds"] = (live.ack_deadline_seconds, ACK_DEADLINE_SECONDS)
        if "expiration_policy" in live and "ttl" in live.expiration_policy:
            changes["expirationPolicy"] = (str(live.expiration_policy.ttl), "never")
        action = BucketAction.UPDATE if changes else BucketAction.UNCHANGED
        return SubscriptionPlan(action, changes)

    def deploy(self, subscriber: Any, planned: SubscriptionPlan) -> None:
        wanted = {
            "name": self.name,
            "topic": self.topic,
            "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
            "message_retention_duration": RETENTION,
            "expiration_policy": {},  # no ttl: never expires
        }
        if planned.action is BucketAction.CREATE:
            subscriber.create_subscription(request=wanted)
        elif planned.action is BucketAction.UPDATE:
            paths = [_FIELD_PATHS[name] for name in sorted(planned.changes)]
            subscriber.update_subscription(
                request={"subscription": wanted, "update_mask": {"paths": paths}}
            )


@dataclass(frozen=True)
class LedgerPlan:
    bucket: BucketPlan
    sessions: SubscriptionPlan | None = None


@dataclass(frozen=True)
class LedgerAnchors:
    """The anchor bucket of one project (and the session writer's subscription), with the
    clients that plan and deploy them."""

    client: Any
    spec: AnchorBucket
    project: str
    sessions: SessionSubscription | None = None
    subscriber: Any = None

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
    def connect(cls, settings: FleetSettings, spec: AnchorBucket, project: str) -> LedgerAnchors:
        import google.cloud.storage as storage

        sessions = SessionSubscription.of(settings, project)
        subscriber = None
        if sessions is not None:
            from google.cloud import pubsub_v1

            subscriber = pubsub_v1.SubscriberClient()
        return cls(storage.Client(project=project), spec, project, sessions, subscriber)

    def plan(self) -> LedgerPlan:
        from iot_remote_access.pubsub.anchor_bucket import plan

        sessions = None if self.sessions is None else self.sessions.plan(self.subscriber)
        return LedgerPlan(plan(self.client, self.spec), sessions)

    def deploy(self) -> LedgerPlan:
        from iot_remote_access.pubsub.anchor_bucket import deploy

        bucket = deploy(self.client, self.spec, project=self.project)
        if self.sessions is None:
            return LedgerPlan(bucket)
        planned = self.sessions.plan(self.subscriber)
        self.sessions.deploy(self.subscriber, planned)
        return LedgerPlan(bucket, planned)

    def refuse_blocked(self, planned: LedgerPlan) -> None:
        """Exit 2 before anything is deployed when something cannot be made as desired."""
        if planned.bucket.action is BucketAction.BLOCKED:
            raise InputError(
                f"nothing deployed: anchor bucket {self.spec.name}: {planned.bucket.reason}"
            )
        if planned.sessions is not None and planned.sessions.action is BucketAction.BLOCKED:
            name = self.sessions.name if self.sessions is not None else SESSIONS_SUBSCRIPTION
            raise InputError(
                f"nothing deployed: ledger subscription {name}: {planned.sessions.reason}"
            )

    def print_plan(self, planned: LedgerPlan, console: Console) -> None:
        bucket = planned.bucket
        _line(console, bucket.action, f"anchor bucket {self.spec.name}", bucket.reason)
        _changes(console, bucket.changes)
        if planned.sessions is not None and self.sessions is not None:
            sessions = planned.sessions
            what = f"ledger subscription {self.sessions.name}"
            _line(console, sessions.action, what, sessions.reason)
            _changes(console, sessions.changes)

    def print_applied(self, done: LedgerPlan, console: Console) -> None:
        locked = f", retention {self.spec.retention_days} days locked"
        tail = locked if done.bucket.action is not BucketAction.BLOCKED else ""
        _line(console, done.bucket.action, f"anchor bucket {self.spec.name}{tail}")
        if done.sessions is not None and self.sessions is not None:
            what = f"ledger subscription {self.sessions.name} (topic {self.sessions.topic})"
            _line(console, done.sessions.action, what)


def _line(console: Console, action: BucketAction, what: str, reason: str = "") -> None:
    line = f"{_SYMBOL[str(action)]} {action} {what}"
    console.print(f"{line} ({reason})" if reason else line, markup=False, highlight=False)


def _changes(console: Console, changes: dict[str, tuple[Any, Any]]) -> None:
    for name, (live, desired) in sorted(changes.items()):
        console.print(f"    {name}: {live!r} -> {desired!r}", markup=False, highlight=False)
