"""The three tunnel alarms on GCP: Teleport audit events -> log-based metrics -> alert policies.

The events are Teleport's documented format (tests/support/teleport_events.py cites
the reference). Cloud Logging filters and PromQL are evaluated by stand-ins named so
(tests/support/logging_query_standin.py): no emulator exists for either service.
The boundaries are the AWS ones (tests/test_tunnel_metrics_core.py): a renewal is a
new session at most the window after the previous end, never a concurrent one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest

from iot_remote_access.core.teleport_audit import (
    SESSION_END_METRIC,
    SESSION_START_METRIC,
    STEP_MINUTES,
    alert_rules,
    audit_stream_filter,
    open_too_long_rule,
    opens_per_day_rule,
    renewal_rule,
)
from iot_remote_access.gcp_monitoring.desired import desired_state
from iot_remote_access.settings import FleetSettings
from tests.support.logging_query_standin import Sample, extract, fires, matches
from tests.support.teleport import access_raw
from tests.support.teleport_events import (
    NAMESPACE,
    PROJECT,
    T0,
    access_request_create,
    access_request_update,
    entry,
    parse_time,
    session_end,
    session_rejected,
    session_start,
)

WINDOW = 15
STEP = timedelta(minutes=STEP_MINUTES)


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    settings = FleetSettings.parse(access_raw())
    assert settings.gcp is not None and settings.gcp.access_proxy is not None
    state = desired_state(PROJECT, settings.gcp.access_proxy, settings.tunnel_alarms)
    return {metric.name: metric for metric in state.metrics}


def samples(entries: Iterable[dict[str, Any]], metrics: dict[str, Any]) -> list[Sample]:
    """What the log-based metrics count: every entry each metric's filter matches."""
    counted = []
    for log_entry in entries:
        for name, metric in metrics.items():
            if matches(metric.filter, log_entry):
                labels = {
                    k: extract(v, log_entry) or "" for k, v in metric.label_extractors.items()
                }
                counted.append(Sample(name, parse_time(log_entry["timestamp"]), labels))
    return counted


def session(device: str, sid: str, start: datetime, minutes: float) -> list[dict[str, Any]]:
    end = start + timedelta(minutes=minutes)
    return [entry(session_start(device, sid, start)), entry(session_end(device, sid, start, end))]


def alerts_during(query: str, counted: list[Sample], start: datetime, span: timedelta) -> set[Any]:
    """Every series the query returns at any evaluation step from ``start`` over ``span``."""
    found: set[Any] = set()
    moment = start
    while moment <= start + span:
        found |= fires(query, counted, moment)
        moment += timedelta(seconds=15)
    return found


# -- the filters against the documented events -------------------------------------------


def test_each_metric_counts_its_event_with_the_device_and_session(metrics: dict[str, Any]) -> None:
    start = entry(session_start("sensor-000001", "sid-aaaa-000000000001", T0))
    end = entry(
        session_end("sensor-000001", "sid-aaaa-000000000001", T0, T0 + timedelta(minutes=5))
    )
    start_metric, end_metric = metrics[SESSION_START_METRIC], metrics[SESSION_END_METRIC]
    assert matches(start_metric.filter, start) and not matches(start_metric.filter, end)
    assert matches(end_metric.filter, end) and not matches(end_metric.filter, start)
    assert extract(start_metric.label_extractors["device"], start) == "sensor-000001"
    assert extract(end_metric.label_extractors["sid"], end) == "sid-aaaa-000000000001"


@pytest.mark.parametrize(
    "where",
    [
        {"namespace": "other"},  # another namespace's pods
        {"component": "proxy"},  # the proxy's own logs are not the audit log
    ],
)
def test_events_from_elsewhere_are_not_counted(
    metrics: dict[str, Any], where: dict[str, str]
) -> None:
    elsewhere = entry(session_start("sensor-000001", "sid-x-000000000001", T0), **where)
    assert not any(matches(m.filter, elsewhere) for m in metrics.values())


def test_the_siem_stream_has_every_session_and_request_event_and_nothing_else() -> None:
    stream = audit_stream_filter(PROJECT, NAMESPACE, "teleport")
    kept = [
        session_start("sensor-000001", "sid-s-000000000001", T0),
        session_end("sensor-000001", "sid-s-000000000001", T0, T0 + timedelta(minutes=3)),
        session_rejected(T0),
        access_request_create(T0, reason="INC-4711 gateway offline", minutes=60),
        access_request_update(T0),
    ]
    for payload in kept:
        assert matches(stream, entry(payload)), payload["event"]
    # requester, reason, device and lifetime reach the SIEM in the events themselves
    request = access_request_create(T0, reason="INC-4711 gateway offline", minutes=60)
    assert {"user", "reason", "max_duration", "roles"} <= set(request)
    assert not matches(
        stream, entry({"event": "user.login", "code": "T1000I", "time": "2026-11-30T08:00:00Z"})
    )


# -- renewal loop: the AWS boundary cases -------------------------------------------------


def renewal_case(
    gap: timedelta, metrics: dict[str, Any], device2: str = "sensor-000001"
) -> set[Any]:
    first_end = T0 + timedelta(minutes=30)
    entries = session("sensor-000001", "sid-r-000000000001", T0, 30)
    second = first_end + gap
    entries += session(device2, "sid-r-000000000002", second, 20)
    counted = samples(entries, metrics)
    return alerts_during(renewal_rule(WINDOW).query, counted, second, STEP)


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (timedelta(0), True),  # right after the end
        (timedelta(minutes=WINDOW), True),  # exactly the window: a renewal, as on AWS
        (timedelta(minutes=WINDOW, seconds=30), True),  # within one step: may alert (documented)
        (timedelta(minutes=WINDOW) + STEP + timedelta(seconds=1), False),  # beyond: never
        (timedelta(hours=3), False),
    ],
)
def test_renewal_boundary(gap: timedelta, expected: bool, metrics: dict[str, Any]) -> None:
    fired = renewal_case(gap, metrics)
    assert bool(fired) is expected
    if expected:
        assert fired == {(("device", "sensor-000001"),)}


def test_a_concurrent_session_is_not_a_renewal(metrics: dict[str, Any]) -> None:
    # The second session starts while the first is still open (gap < 0 on AWS).
    entries = session("sensor-000001", "sid-c-000000000001", T0, 30)
    entries += session("sensor-000001", "sid-c-000000000002", T0 + timedelta(minutes=10), 5)
    counted = samples(entries, metrics)
    assert (
        alerts_during(renewal_rule(WINDOW).query, counted, T0 + timedelta(minutes=10), STEP)
        == set()
    )


def test_another_devices_end_does_not_make_a_renewal(metrics: dict[str, Any]) -> None:
    assert renewal_case(timedelta(minutes=1), metrics, device2="sensor-000002") == set()


# -- opens per device per day, open too long ---------------------------------------------


@pytest.mark.parametrize(("opens", "expected"), [(3, False), (4, True)])
def test_more_than_the_daily_threshold_alerts_for_that_device(
    opens: int, expected: bool, metrics: dict[str, Any]
) -> None:
    entries = []
    for number in range(opens):
        start = T0 + timedelta(hours=5 * number)
        entries += session("sensor-000007", f"sid-d-00000000000{number}", start, 10)
    entries += session("sensor-000008", "sid-d-000000000099", T0, 10)
    counted = samples(entries, metrics)
    now = T0 + timedelta(hours=5 * (opens - 1), minutes=1)
    fired = fires(opens_per_day_rule(3).query, counted, now)
    assert fired == ({(("device", "sensor-000007"),)} if expected else set())


@pytest.mark.parametrize(("minutes", "expected"), [(119, False), (None, True)])
def test_a_session_still_open_after_the_maximum_alerts(
    minutes: int | None, expected: bool, metrics: dict[str, Any]
) -> None:
    entries = [entry(session_start("sensor-000003", "sid-o-000000000001", T0))]
    if minutes is not None:
        end = T0 + timedelta(minutes=minutes)
        entries.append(entry(session_end("sensor-000003", "sid-o-000000000001", T0, end)))
    counted = samples(entries, metrics)
    fired = alerts_during(open_too_long_rule(2.0).query, counted, T0 + timedelta(hours=2), STEP)
    want = {(("device", "sensor-000003"), ("sid", "sid-o-000000000001"))}
    assert fired == (want if expected else set())


def test_thresholds_come_from_tunnel_alarms_settings() -> None:
    raw = access_raw()
    raw["tunnelAlarms"] = {
        "maxOpensPerThingPerDay": 5,
        "renewalWindowMinutes": 30,
        "maxOpenHours": 1.5,
    }
    settings = FleetSettings.parse(raw)
    assert settings.gcp is not None and settings.gcp.access_proxy is not None
    state = desired_state(PROJECT, settings.gcp.access_proxy, settings.tunnel_alarms)
    queries = [p.conditions[0].condition_prometheus_query_language.query for p in state.policies]
    assert queries == [rule.query for rule in alert_rules(5, 30, 1.5)]
    assert "> 5" in queries[0] and "[31m]" in queries[1] and "offset 90m" in queries[2]
    raw["tunnelAlarms"] = {"enabled": False}
    off = FleetSettings.parse(raw)
    assert off.gcp is not None and off.gcp.access_proxy is not None
    assert desired_state(PROJECT, off.gcp.access_proxy, off.tunnel_alarms).policies == ()
