"""``python -m iot_remote_access.pubsub.rotation serve|plan|dispatch``: the containers' entry point.

``serve``: the rotation service (Deployment). ``plan``: the daily plan (CronJob).
``dispatch``: this hour's rotate commands (CronJob). Settings: ``ROTATION_*``
(``rotation_settings.py``); a bad one exits 2 with one line per problem.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from google.auth.exceptions import GoogleAuthError

from iot_remote_access.core.certificate_issuer import CertificateIssuer
from iot_remote_access.pubsub.rotation_settings import GcpRotationSettings, RotationSettingsError

MODES = ("serve", "plan", "dispatch")
#: The module ``ROTATION_ISSUER=ca-service`` loads (``from_environment()``).
CA_SERVICE_ISSUER = "iot_remote_access.gcp_ca.rotation_issuer"


class IssuerLoadError(RuntimeError):
    """``ROTATION_ISSUER`` names nothing that gives an issuer."""


def load_issuer(spec: str) -> CertificateIssuer:
    """The issuer ``ROTATION_ISSUER`` names: ``ca-service`` or ``module[:callable]``."""
    if spec == "ca-service":
        # Loaded by name like any other issuer: this package stays below gcp_ca.
        spec = CA_SERVICE_ISSUER
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise IssuerLoadError(
            f"ROTATION_ISSUER: {spec[:80]!r} cannot be imported ({error})"
        ) from None
    factory = getattr(module, attribute or "from_environment", None)
    if not callable(factory):
        raise IssuerLoadError(
            f"ROTATION_ISSUER: {spec[:80]!r} has no callable {attribute or 'from_environment'!r}"
        )
    try:
        issuer: CertificateIssuer = factory()
    except ValueError as error:
        raise IssuerLoadError(f"ROTATION_ISSUER {spec[:80]!r}: {error}") from None
    return issuer


def build(settings: GcpRotationSettings) -> tuple[Any, Any, Any]:
    """The protocol, the Pub/Sub publisher and subscriber (real Google clients)."""
    from google.cloud import firestore, pubsub_v1

    from iot_remote_access.pubsub.rotation_inventory import FirestoreInventory
    from iot_remote_access.pubsub.rotation_protocol import RotationProtocol
    from iot_remote_access.pubsub.rotation_service import PubsubReplies

    issuer = load_issuer(settings.issuer)  # before any client: a bad name is a settings error
    client = firestore.Client(project=settings.project, database=settings.firestore_database)
    inventory = FirestoreInventory(
        client, settings.inventory_collection, settings.ledger_collection
    )
    publisher = pubsub_v1.PublisherClient()
    protocol = RotationProtocol(
        inventory=inventory,
        issuer=issuer,
        replies=PubsubReplies(publisher, settings.topic_path(settings.certificate_topic)),
        topics=settings.topics(),
        stagger=settings.stagger_policy(),
        issuing_lease=settings.issuing_lease_seconds,
        retry_seconds=settings.retry_seconds,
        ledger=access_ledger(settings),
    )
    return protocol, publisher, pubsub_v1.SubscriberClient()


def access_ledger(settings: GcpRotationSettings) -> Any:
    """The access ledger's chain in its anchor bucket, or None without one."""
    if not settings.access_ledger_bucket:
        return None
    from iot_remote_access.lambdas.anchor_sinks.object_chain import ObjectChain
    from iot_remote_access.lambdas.anchor_sinks.sinks import GcsAnchors

    sink = GcsAnchors.for_bucket(settings.access_ledger_bucket, settings.project)
    return ObjectChain(sink, settings.access_ledger_id)


def anchor_access_ledger(chain: Any) -> str | None:
    """Anchor the chain's head (the planner's runs: daily and hourly); a problem, or None."""
    from iot_remote_access.lambdas.anchor_sinks.sinks import TailBroken

    try:
        chain.anchor(datetime.now(UTC))
    except TailBroken as error:
        return f"ledger: the chain does not hold, not anchored: {error}"
    except Exception as error:  # the store: reported, the planner's own work stands
        return f"ledger: the anchor could not be written: {str(error)[:200]}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODES:
        shown = " ".join(args)[:60]
        print(f"error: mode: {shown!r}; allowed: one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    try:
        settings = GcpRotationSettings.from_environment()
        from iot_remote_access.pubsub.probe_server import json_logs

        json_logs(settings.log_level)
        protocol, publisher, subscriber = build(settings)
    except (RotationSettingsError, IssuerLoadError) as error:
        for line in str(error).splitlines():
            print(f"error: invalid rotation settings: {line}", file=sys.stderr)
        return 2
    except GoogleAuthError as error:
        print(f"error: no Google Cloud credentials ({str(error)[:200]})", file=sys.stderr)
        return 1
    if args[0] == "serve":
        from iot_remote_access.pubsub.rotation_service import RotationService

        return RotationService(
            protocol,
            subscriber,
            csr_subscription=settings.subscription_path(settings.csr_subscription),
            confirm_subscription=settings.subscription_path(settings.confirm_subscription),
            max_inflight=settings.max_inflight,
            lease_extension_seconds=settings.lease_extension_seconds,
            http=(settings.http_host, settings.http_port),
        ).run()
    from iot_remote_access.pubsub.rotation_planner import GcpRotationPlanner

    planner = GcpRotationPlanner(
        inventory=protocol.inventory,
        protocol=protocol,
        publisher=publisher,
        commands_topic=settings.topic_path(settings.commands_topic),
        settings=settings.rotation_settings(),
        topics=settings.topics(),
    )
    now = datetime.now(UTC)
    report = planner.plan(now) if args[0] == "plan" else planner.dispatch(now)
    problem = None if protocol.ledger is None else anchor_access_ledger(protocol.ledger)
    print(json.dumps(report.to_json(), sort_keys=True))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if report.failed or problem else 0


if __name__ == "__main__":
    sys.exit(main())
