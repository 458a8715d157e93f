"""The tunnel-metrics Lambda on CloudTrail events of the documented shape, over moto's DynamoDB.

DescribeTunnel is answered by a botocore Stubber (``tunneling_stubber``), a
stand-in for Secure Tunneling, which moto does not implement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from iot_remote_access.core.tunnel_metrics import (
    NAMESPACE,
    OPEN_AGE,
    OPEN_COUNT,
    OPEN_DURATION,
    OPENS_TODAY,
    RENEWAL_LOOP,
    TUNNELS_OPEN,
    UNRESOLVED,
)
from iot_remote_access.lambdas.tunnel_metrics import handler as handler_module
from iot_remote_access.lambdas.tunnel_metrics.aws_state import DynamoDBTunnelStore
from tests.support import secure_tunneling_events as ev
from tests.support.tunnel_metrics_harness import Harness, Invocation

# Yesterday 08:00 UTC: inside EMF's 14-day window, and far from midnight so a
# test's events share one UTC day unless it means otherwise.
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
THING = "sensor-000001"


@pytest.fixture
def aws() -> Iterator[Harness]:
    with mock_aws():
        harness = Harness()
        yield harness
        harness.tunneling_stubber.assert_no_pending_responses()


def metrics_of(invocation: Invocation) -> list[dict[str, Any]]:
    """(name, value, thing or None, dimension sets) for every metric in the EMF output."""
    found = []
    for record in invocation.emf:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        for definition in directive["Metrics"]:
            value = record[definition["Name"]]  # Powertools writes [v]; EMF allows v or [v, ...]
            found.append(
                {
                    "name": definition["Name"],
                    "unit": definition["Unit"],
                    "value": value[0] if isinstance(value, list) and len(value) == 1 else value,
                    "thing": record.get("ThingName"),
                    "dimensions": sorted(directive["Dimensions"]),
                }
            )
    return found


def values(invocation: Invocation, name: str) -> list[float]:
    return [m["value"] for m in metrics_of(invocation) if m["name"] == name]


def open_and_close(
    aws: Harness, opened_at: datetime, closed_at: datetime, thing: str = THING
) -> str:
    opened = ev.open_tunnel(opened_at, thing=thing)
    aws.invoke(opened)
    aws.invoke(ev.close_tunnel(closed_at, ev.tunnel_id_of(opened)))
    return ev.tunnel_id_of(opened)


# -- counting ------------------------------------------------------------------


def test_open_is_counted_per_thing_and_for_the_fleet_in_one_emf_record(aws: Harness) -> None:
    run = aws.invoke(ev.open_tunnel(T0, thing=THING))

    assert run.result["status"] == "counted"
    (record,) = run.emf
    # Exactly {} (fleet) and {ThingName}: no "service" dimension that the alarms' queries would miss.
    assert sorted(record["_aws"]["CloudWatchMetrics"][0]["Dimensions"]) == [[], ["ThingName"]]
    assert record["ThingName"] == THING
    # Stamped when published (an alarm would not look back at a late event's period).
    assert abs(record["_aws"]["Timestamp"] / 1000 - datetime.now(UTC).timestamp()) < 60
    assert {m["name"]: m["value"] for m in metrics_of(run)} == {OPEN_COUNT: 1, OPENS_TODAY: 1}


def test_opens_today_counts_the_utc_day_and_restarts_the_next_day(aws: Harness) -> None:
    counts = [
        values(aws.invoke(ev.open_tunnel(T0 + timedelta(hours=h), thing=THING)), OPENS_TODAY)
        for h in (0, 1, 2, 3)
    ]
    other = values(
        aws.invoke(ev.open_tunnel(T0 + timedelta(hours=4), thing="sensor-000002")), OPENS_TODAY
    )
    next_day = values(
        aws.invoke(ev.open_tunnel(T0 + timedelta(hours=17), thing=THING)), OPENS_TODAY
    )

    assert counts == [[1], [2], [3], [4]]  # the 4th is above the default threshold of 3
    assert other == [1]  # counted per thing
    assert next_day == [1]


def test_redelivered_event_is_counted_once(aws: Harness) -> None:
    event = ev.open_tunnel(T0, thing=THING)
    first = aws.invoke(event)
    again = aws.invoke(event)
    # CloudTrail may also deliver one API call twice: same eventID, new EventBridge id.
    copy = json.loads(json.dumps(event))
    copy["id"] = "11111111-2222-3333-4444-555555555555"
    third = aws.invoke(copy)

    assert values(first, OPEN_COUNT) == [1]
    assert again.emf == [] and third.emf == []
    assert again.result == first.result == third.result
    assert aws.thing_item(THING)["opensToday"] == {"N": "1"}


def test_concurrent_opens_of_one_thing_lose_no_count(
    aws: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another open lands between this one's read and write: the versioned write retries."""
    load = DynamoDBTunnelStore.load_thing
    interleaved: list[Invocation] = []
    raced = False

    def load_then_race(self: DynamoDBTunnelStore, thing: str) -> Any:
        nonlocal raced
        state = load(self, thing)
        if not raced:
            raced = True
            interleaved.append(aws.invoke(ev.open_tunnel(T0 + timedelta(seconds=1), thing=thing)))
        return state

    monkeypatch.setattr(DynamoDBTunnelStore, "load_thing", load_then_race)
    run = aws.invoke(ev.open_tunnel(T0, thing=THING))

    assert values(interleaved[0], OPENS_TODAY) == [1]
    assert values(run, OPENS_TODAY) == [2]
    assert aws.thing_item(THING)["opensToday"] == {"N": "2"}


# -- renewal loops ---------------------------------------------------------------


@pytest.mark.parametrize(("minutes_after_close", "loop"), [(14, True), (15, True), (16, False)])
def test_renewal_loop_after_close_at_the_window_boundary(
    aws: Harness, minutes_after_close: int, loop: bool
) -> None:
    closed_at = T0 + timedelta(minutes=40)
    open_and_close(aws, T0, closed_at)

    run = aws.invoke(
        ev.open_tunnel(closed_at + timedelta(minutes=minutes_after_close), thing=THING)
    )

    assert values(run, RENEWAL_LOOP) == ([1] if loop else [])
    assert run.logs[-1]["gapSeconds"] == minutes_after_close * 60


@pytest.mark.parametrize(("minutes_after_expiry", "loop"), [(14, True), (16, False)])
def test_renewal_loop_after_expiry_without_close(
    aws: Harness, minutes_after_expiry: int, loop: bool
) -> None:
    """Expiry leaves no CloudTrail event: the previous tunnel's end is its open + lifetime."""
    aws.invoke(ev.open_tunnel(T0, thing=THING, lifetime_minutes=30))

    run = aws.invoke(ev.open_tunnel(T0 + timedelta(minutes=30 + minutes_after_expiry), thing=THING))

    assert values(run, RENEWAL_LOOP) == ([1] if loop else [])


def test_renewal_window_follows_the_setting() -> None:
    with mock_aws():
        aws = Harness(renewal_window=timedelta(minutes=30))
        closed_at = T0 + timedelta(minutes=10)
        open_and_close(aws, T0, closed_at)
        inside = aws.invoke(ev.open_tunnel(closed_at + timedelta(minutes=29), thing=THING))
        open_and_close(aws, T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=5))
        outside = aws.invoke(ev.open_tunnel(T0 + timedelta(hours=2, minutes=36), thing=THING))

    assert values(inside, RENEWAL_LOOP) == [1]
    assert values(outside, RENEWAL_LOOP) == []


def test_a_second_tunnel_while_the_first_is_open_is_not_a_renewal(aws: Harness) -> None:
    aws.invoke(ev.open_tunnel(T0, thing=THING))  # default lifetime: 12 hours
    run = aws.invoke(ev.open_tunnel(T0 + timedelta(minutes=5), thing=THING))
    assert values(run, RENEWAL_LOOP) == []
    assert values(run, OPEN_COUNT) == [1]


def test_renewals_of_other_things_do_not_count(aws: Harness) -> None:
    open_and_close(aws, T0, T0 + timedelta(minutes=10), thing="sensor-000002")
    run = aws.invoke(ev.open_tunnel(T0 + timedelta(minutes=12), thing=THING))
    assert values(run, RENEWAL_LOOP) == []


# -- close and duration -----------------------------------------------------------


def test_close_publishes_the_duration_with_the_thing_from_state(aws: Harness) -> None:
    opened = ev.open_tunnel(T0, thing=THING)
    aws.invoke(opened)

    run = aws.invoke(ev.close_tunnel(T0 + timedelta(minutes=47), ev.tunnel_id_of(opened)))

    (duration,) = [m for m in metrics_of(run) if m["name"] == OPEN_DURATION]
    assert duration == {
        "name": OPEN_DURATION,
        "unit": "Seconds",
        "value": 47 * 60,
        "thing": THING,
        "dimensions": [[], ["ThingName"]],
    }
    assert run.logs[-1]["thingFrom"] == "state"  # no DescribeTunnel call was needed


def test_close_of_a_tunnel_not_in_state_asks_describe_tunnel_stub(aws: Harness) -> None:
    """The tunnel was opened before this was deployed: the thing comes from DescribeTunnel
    (answered by the botocore Stubber standing in for Secure Tunneling)."""
    tunnel_id = ev.new_tunnel_id()
    aws.tunneling_stubber.add_response(
        "describe_tunnel",
        ev.describe_tunnel_response(tunnel_id, thing=THING, created_at=T0),
        expected_params={"tunnelId": tunnel_id},
    )

    run = aws.invoke(ev.close_tunnel(T0 + timedelta(hours=1), tunnel_id))

    assert [(m["value"], m["thing"]) for m in metrics_of(run)] == [(3600, THING)]
    assert run.logs[-1]["thingFrom"] == "DescribeTunnel"


def test_close_that_arrives_before_its_open_is_kept_describe_tunnel_stub(aws: Harness) -> None:
    """EventBridge does not order events; a close seen first must not be undone by the open.
    The close asks DescribeTunnel (the botocore Stubber standing in for Secure Tunneling)."""
    tunnel_id = ev.new_tunnel_id()
    aws.tunneling_stubber.add_response(
        "describe_tunnel",
        ev.describe_tunnel_response(tunnel_id, thing=THING, created_at=T0),
        expected_params={"tunnelId": tunnel_id},
    )
    closed_at = T0 + timedelta(minutes=20)
    aws.invoke(ev.close_tunnel(closed_at, tunnel_id))
    aws.invoke(ev.open_tunnel(T0, thing=THING, tunnel_id=tunnel_id))

    sweep = aws.invoke(ev.scheduled(T0 + timedelta(minutes=25)))
    renewal = aws.invoke(ev.open_tunnel(closed_at + timedelta(minutes=5), thing=THING))

    assert values(sweep, TUNNELS_OPEN) == [0]
    assert values(renewal, RENEWAL_LOOP) == [1]  # measured from the recorded close


# -- sweep: tunnels still open ------------------------------------------------------


def test_sweep_reports_each_things_oldest_open_tunnel(aws: Harness) -> None:
    aws.invoke(ev.open_tunnel(T0, thing="sensor-a"))
    aws.invoke(ev.open_tunnel(T0 + timedelta(minutes=90), thing="sensor-a"))
    open_and_close(aws, T0 + timedelta(minutes=60), T0 + timedelta(minutes=70), thing="sensor-b")
    aws.invoke(ev.open_tunnel(T0, thing="sensor-c", lifetime_minutes=10))  # expired by then

    run = aws.invoke(ev.scheduled(T0 + timedelta(minutes=130)))

    assert values(run, TUNNELS_OPEN) == [2]
    ages = {m["thing"]: m["value"] for m in metrics_of(run) if m["name"] == OPEN_AGE}
    assert ages == {"sensor-a": 130 * 60}


# -- events that cannot be attributed -------------------------------------------------


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


def _with(event: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


OPEN = ev.open_tunnel(T0)
CLOSE = ev.close_tunnel(T0, ev.new_tunnel_id())

MALFORMED = {
    "not an object": (["OpenTunnel"], r"event is a list"),
    "no detail": (_without(OPEN, "detail"), r"no 'detail' object"),
    "EC2 Instance Connect's OpenTunnel": (
        ev.ec2_instance_connect_open_tunnel(T0),
        r"eventSource is 'ec2-instance-connect\.amazonaws\.com'",
    ),
    "other Secure Tunneling call": (
        _with(OPEN, "RotateTunnelAccessToken", "detail", "eventName"),
        r"eventName is 'RotateTunnelAccessToken'",
    ),
    "failed call": (
        _with(OPEN, "AccessDeniedException", "detail", "errorCode"),
        r"call failed \(errorCode 'AccessDeniedException'\)",
    ),
    "no eventTime": (_without(OPEN, "detail", "eventTime"), r"eventTime is 'None'"),
    "bad eventTime": (_with(OPEN, "yesterday", "detail", "eventTime"), r"eventTime is 'yesterday'"),
    "no tunnelId in the response": (
        _with(OPEN, None, "detail", "responseElements"),
        r"responseElements\.tunnelId is missing",
    ),
    "CloseTunnel without tunnelId": (
        _without(CLOSE, "detail", "requestParameters", "tunnelId"),
        r"requestParameters\.tunnelId is missing",
    ),
    "invalid thing name": (
        _with(
            OPEN, "bad thing/name", "detail", "requestParameters", "destinationConfig", "thingName"
        ),
        r"not a valid thing name",
    ),
}


@pytest.mark.filterwarnings("ignore:No idempotency key value found")  # a list has no eventID
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_event_is_counted_unresolved_and_logged(aws: Harness, case: str) -> None:
    event, reason = MALFORMED[case]

    run = aws.invoke(event)

    assert run.result["status"] == "unresolved"
    unresolved = [m for m in metrics_of(run) if m["name"] == UNRESOLVED]
    assert [(m["value"], m["dimensions"]) for m in unresolved] == [(1, [[]])]
    (warning,) = [line for line in run.logs if line["level"] == "WARNING"]
    assert warning["message"] == "tunnel event not attributable to a thing"
    assert re.search(reason, warning["reason"]), warning["reason"]


def test_open_without_a_destination_thing_counts_for_the_fleet_and_as_unresolved(
    aws: Harness,
) -> None:
    run = aws.invoke(ev.open_tunnel(T0, thing=None))

    assert sorted((m["name"], m["value"], m["thing"]) for m in metrics_of(run)) == [
        (UNRESOLVED, 1, None),
        (OPEN_COUNT, 1, None),
    ]
    assert run.result["reason"] == "OpenTunnel named no destinationConfig.thingName"


def test_describe_tunnel_stub_failure_is_counted_unresolved_and_logged(aws: Harness) -> None:
    """DescribeTunnel (the botocore Stubber standing in for Secure Tunneling) answers 404."""
    tunnel_id = ev.new_tunnel_id()
    aws.tunneling_stubber.add_client_error(
        "describe_tunnel",
        service_error_code="ResourceNotFoundException",
        service_message="Tunnel not found",
        http_status_code=404,
        expected_params={"tunnelId": tunnel_id},
    )

    run = aws.invoke(ev.close_tunnel(T0, tunnel_id))

    assert values(run, UNRESOLVED) == [1]
    (warning,) = [line for line in run.logs if line["level"] == "WARNING"]
    assert warning["tunnelId"] == tunnel_id
    assert warning["reason"] == (
        "tunnel not in state and DescribeTunnel failed: DescribeTunnel ResourceNotFoundException"
    )


def test_describe_tunnel_stub_without_a_thing_is_unresolved(aws: Harness) -> None:
    tunnel_id = ev.new_tunnel_id()
    aws.tunneling_stubber.add_response(
        "describe_tunnel",
        ev.describe_tunnel_response(tunnel_id, thing=None, created_at=T0),
        expected_params={"tunnelId": tunnel_id},
    )
    run = aws.invoke(ev.close_tunnel(T0 + timedelta(minutes=3), tunnel_id))
    assert values(run, UNRESOLVED) == [1]
    assert run.result["reason"] == "tunnel has no destination thing (DescribeTunnel)"


# -- secrets and the entry point -----------------------------------------------------------


def test_access_tokens_never_reach_logs_metrics_results_or_state(aws: Harness) -> None:
    opened = ev.open_tunnel(T0, thing=THING, with_tokens=True)
    broken = _with(
        ev.open_tunnel(T0, thing=THING, with_tokens=True),
        "not a tunnel id!",
        "detail",
        "responseElements",
        "tunnelId",
    )
    runs = [
        aws.invoke(opened),
        aws.invoke(broken),
        aws.invoke(ev.close_tunnel(T0 + timedelta(minutes=5), ev.tunnel_id_of(opened))),
    ]

    everything = "".join(run.stdout + json.dumps(run.result) for run in runs) + json.dumps(
        aws.scan()
    )
    assert runs[0].emf and runs[1].logs  # there was output to leak into
    for token in (ev.SOURCE_TOKEN, ev.DESTINATION_TOKEN):
        assert token not in everything


def test_lambda_entry_point_logs_with_context_and_returns_the_summary(
    aws: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_module, "_app", lambda: aws.app)

    run = aws.invoke(ev.open_tunnel(T0, thing=THING), entry_point=True)

    assert run.result["status"] == "counted" and run.result["thingName"] == THING
    (log,) = run.logs
    assert log["function_name"] == "tunnel-metrics" and log["message"] == "tunnel event counted"
    assert values(run, OPEN_COUNT) == [1]
