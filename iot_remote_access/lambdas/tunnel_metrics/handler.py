"""Lambda: Secure Tunneling CloudTrail events (and a 5-minute sweep) -> tunnel metrics.

Thin: parsing and every decision live in ``iot_remote_access.core.tunnel_metrics``;
here are only the AWS clients, Powertools Idempotency (keyed on CloudTrail's
``eventID``, so an event EventBridge or CloudTrail delivers twice is counted
once), and Powertools Metrics (EMF in the log; no PutMetricData call).

Environment: ``TABLE_NAME`` (state and idempotency records),
``RENEWAL_WINDOW_MINUTES`` (default 15), ``IDEMPOTENCY_HOURS`` (default 24).
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from iot_remote_access.core.tunnel_metrics import (
    DEFAULT_RENEWAL_WINDOW,
    NAMESPACE,
    THING_DIMENSION,
    Outcome,
    TunnelLedger,
)
from iot_remote_access.lambdas.tunnel_metrics.aws_state import (
    KEY,
    TTL_ATTRIBUTE,
    DynamoDBTunnelStore,
    SecureTunnelingDirectory,
)

#: CloudTrail's own id first: the same API call delivered twice has one
#: eventID. Scheduled sweeps have none, so theirs is the EventBridge id.
IDEMPOTENCY_KEY = "detail.eventID || id"

logger = Logger()
# service="": no "service" dimension, so metrics carry exactly the dimension sets
# the alarms' Metrics Insights queries name ({ThingName} and {}).
metrics = Metrics(namespace=NAMESPACE, service="")
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


class TunnelMetricsApp:
    """The handler's parts, built once per container (or per test, over moto)."""

    def __init__(
        self,
        *,
        table_name: str,
        dynamodb: Any,
        tunneling: Any,
        renewal_window: timedelta = DEFAULT_RENEWAL_WINDOW,
        idempotency_ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self.ledger = TunnelLedger(
            DynamoDBTunnelStore(dynamodb, table_name),
            SecureTunnelingDirectory(tunneling),
            renewal_window=renewal_window,
        )
        persistence = DynamoDBPersistenceLayer(
            table_name=table_name, key_attr=KEY, expiry_attr=TTL_ATTRIBUTE, boto3_client=dynamodb
        )
        config = IdempotencyConfig(
            event_key_jmespath=IDEMPOTENCY_KEY,
            expires_after_seconds=int(idempotency_ttl.total_seconds()),
        )

        # Powertools' decorator takes plain functions only (not bound methods).
        def process_tunnel_event(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            return self._process(event, context)

        self.process = idempotent(persistence_store=persistence, config=config)(
            process_tunnel_event
        )

    @classmethod
    def from_environment(cls) -> TunnelMetricsApp:
        return cls(
            table_name=os.environ["TABLE_NAME"],
            dynamodb=boto3.client("dynamodb", config=_CLIENT_CONFIG),
            tunneling=boto3.client("iotsecuretunneling", config=_CLIENT_CONFIG),
            renewal_window=timedelta(minutes=int(os.environ.get("RENEWAL_WINDOW_MINUTES", "15"))),
            idempotency_ttl=timedelta(hours=int(os.environ.get("IDEMPOTENCY_HOURS", "24"))),
        )

    def _process(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        outcome = self.ledger.handle(event)
        _log(outcome)
        publish(outcome)
        return outcome.summary()


def publish(outcome: Outcome) -> None:
    """One EMF record per report: {ThingName} and {} dimension sets, or {} alone."""
    for report in outcome.reports:
        for measurement in report.measurements:
            metrics.add_metric(
                name=measurement.name, unit=measurement.unit, value=measurement.value
            )
        if report.thing_name is not None:
            metrics.add_dimensions(**{THING_DIMENSION: report.thing_name})
        metrics.flush_metrics()


def _log(outcome: Outcome) -> None:
    # Only the outcome's fields, never the event: OpenTunnel's response may carry tokens.
    if outcome.status == "unresolved":
        logger.warning("tunnel event not attributable to a thing", extra=dict(outcome.log))
    elif outcome.status == "replayed":
        logger.warning("tunnel already recorded; not counted again", extra=dict(outcome.log))
    else:
        logger.info("tunnel event counted", extra=dict(outcome.log))


@cache
def _app() -> TunnelMetricsApp:
    return TunnelMetricsApp.from_environment()


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _app().process(event, context)
    return result
