"""Lambda: Secure Tunneling CloudTrail events (and a 5-minute sweep) -> tunnel metrics.

Thin: parsing and every decision live in ``iot_remote_access.core.tunnel_metrics``,
the writes that count each event once in ``ledger`` (an event EventBridge or
CloudTrail delivers twice is counted once, by the conditions of the writes
themselves: see ``ledger`` for why Powertools Idempotency is no longer used);
here are only the AWS clients and Powertools Metrics (EMF in the log; no
PutMetricData call).

Environment: ``TABLE_NAME`` (the state table), ``RENEWAL_WINDOW_MINUTES``
(default 15). ``IDEMPOTENCY_HOURS`` of earlier versions is ignored.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from iot_remote_access.core.log_safety import install_token_redaction, json_for_logs
from iot_remote_access.core.tunnel_metrics import (
    DEFAULT_RENEWAL_WINDOW,
    NAMESPACE,
    THING_DIMENSION,
    Outcome,
)
from iot_remote_access.lambdas.ledger.recording import Recorder
from iot_remote_access.lambdas.ledger.store import LedgerUnavailable
from iot_remote_access.lambdas.tunnel_metrics.aws_state import (
    DynamoDBTunnelStore,
    SecureTunnelingDirectory,
)
from iot_remote_access.lambdas.tunnel_metrics.ledger import TwoCallLedger
from iot_remote_access.lambdas.tunnel_metrics.operator_closes import (
    OperatorCloses,
    own_closers_from_environment,
)

logger = Logger(json_serializer=json_for_logs)
# CloudTrail's OpenTunnel events reach this function and botocore logs bodies at DEBUG:
# redact access tokens in every record of the process, whatever the level.
install_token_redaction(logger)
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
        access_ledger: Recorder | None = None,
        own_closers: frozenset[str] = frozenset(),
    ) -> None:
        store = DynamoDBTunnelStore(dynamodb, table_name)
        self.ledger = TwoCallLedger(
            store,
            SecureTunnelingDirectory(tunneling),
            renewal_window=renewal_window,
            operator_closes=OperatorCloses(access_ledger or Recorder(None), store, own_closers),
        )

    def process(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Apply one event; returns its result (a redelivery: the first delivery's).

        Raises LedgerUnavailable when an operator's close could not be appended to the
        access ledger: the invocation fails and Lambda delivers the event again.
        """
        try:
            outcome, result = self.ledger.process(event)
        except LedgerUnavailable as error:
            metrics.add_metric(name="LedgerWriteFailures", unit="Count", value=1)
            metrics.flush_metrics()
            logger.error(
                "tunnel close not recorded in the access ledger; the event will be retried",
                extra={"ledger": {"recorded": False, "error": str(error)[:300]}},
            )
            raise
        _log(outcome)
        publish(outcome)
        return result

    @classmethod
    def from_environment(cls) -> TunnelMetricsApp:
        return cls(
            table_name=os.environ["TABLE_NAME"],
            dynamodb=boto3.client("dynamodb", config=_CLIENT_CONFIG),
            tunneling=boto3.client("iotsecuretunneling", config=_CLIENT_CONFIG),
            renewal_window=timedelta(minutes=int(os.environ.get("RENEWAL_WINDOW_MINUTES", "15"))),
            access_ledger=Recorder.from_environment(),
            own_closers=own_closers_from_environment(),
        )


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
