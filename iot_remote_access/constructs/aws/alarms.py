"""One way to make an alarm in this library and send it to SNS topics.

The library's conventions, decided here once: an alarm fires at or above its
threshold after one period unless told otherwise, missing data is "not
breaching" (no data means nothing happened; alarms that must hear from a job
every period say ``missing=BREACHING``), and every alarm notifies an
``sns.ITopic`` (usually an :class:`AlarmTopic`'s, or one the user brings).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

AT_OR_ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
NOT_BREACHING = cloudwatch.TreatMissingData.NOT_BREACHING
BREACHING = cloudwatch.TreatMissingData.BREACHING


def notify(
    alarm: cloudwatch.AlarmBase,
    topic: sns.ITopic,
    *also: sns.ITopic,
    ok: bool = False,
) -> None:
    """Send ``alarm``'s ALARM state to ``topic`` and ``also``.

    With ``ok``, its OK state goes to ``topic`` too (for alarms whose recovery matters).
    """
    for target in (topic, *also):
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(target))
    if ok:
        alarm.add_ok_action(cloudwatch_actions.SnsAction(topic))


def alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: cloudwatch.IMetric,
    threshold: float,
    description: str,
    topic: sns.ITopic,
    also: tuple[sns.ITopic, ...] = (),
    ok: bool = False,
    comparison: cloudwatch.ComparisonOperator = AT_OR_ABOVE,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int | None = None,
    missing: cloudwatch.TreatMissingData = NOT_BREACHING,
) -> cloudwatch.Alarm:
    """A CloudWatch alarm with the library's defaults, notifying ``topic`` (see :func:`notify`)."""
    if not cdk.Token.is_unresolved(evaluation_periods) and evaluation_periods < 1:
        raise ValueError(f"evaluation_periods: {evaluation_periods!r}; allowed: 1 or more")
    created = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=missing,
    )
    notify(created, topic, *also, ok=ok)
    return created
