"""Builds the rotation objects from the function's environment, once per container."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from iot_remote_access.lambdas.certs.config import RotationConfig
from iot_remote_access.lambdas.certs.inventory import Inventory
from iot_remote_access.lambdas.certs.issuance import Clients, Outcome, Rotation
from iot_remote_access.lambdas.certs.sweep import Sweep
from iot_remote_access.lambdas.ledger.recording import Recorder

#: Standard retry mode backs off on throttling (ACM Private CA's IssueCertificate is
#: limited to a few dozen calls per second per account).
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 6})


@dataclass(frozen=True)
class Runtime:
    config: RotationConfig
    inventory: Inventory
    rotation: Rotation
    sweep: Sweep


def build(config: RotationConfig, session: Any = None, ledger: Recorder | None = None) -> Runtime:
    """The rotation objects; ``ledger`` default: the access ledger named in the environment
    (``LEDGER_TABLE``), or none."""
    session = session or boto3.session.Session()
    inventory = Inventory(
        session.resource("dynamodb", config=CLIENT_CONFIG).Table(config.table_name)
    )
    data_kwargs: dict[str, Any] = {"config": CLIENT_CONFIG}
    if config.iot_data_endpoint:
        data_kwargs["endpoint_url"] = f"https://{config.iot_data_endpoint}"
    clients = Clients(
        pca=session.client("acm-pca", config=CLIENT_CONFIG),
        iot=session.client("iot", config=CLIENT_CONFIG),
        iot_data=session.client("iot-data", **data_kwargs),
    )
    if ledger is None:
        ledger = Recorder.from_environment()
    rotation = Rotation(config, inventory, clients, ledger)
    sqs = session.client("sqs", config=CLIENT_CONFIG) if config.queue_url else None
    return Runtime(config, inventory, rotation, Sweep(config, inventory, rotation, sqs))


@cache
def runtime() -> Runtime:
    return build(RotationConfig.from_env())


def emit(metrics: Any, outcome: Outcome) -> None:
    """Send an outcome's counts as CloudWatch metrics (Powertools EMF)."""
    from aws_lambda_powertools.metrics import MetricUnit

    for name, value in outcome.metrics.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
