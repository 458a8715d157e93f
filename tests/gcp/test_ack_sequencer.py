"""PUBACK order and parking: what the bridge acknowledges to the broker, and when."""

from __future__ import annotations

import time

from iot_remote_access.bridge.ack_sequencer import AckSequencer


def test_pubacks_leave_in_arrival_order_and_a_stalled_head_is_released_only_when_it_blocks() -> (
    None
):
    sent: list[int] = []
    sequencer = AckSequencer(lambda mid, qos: sent.append(mid))
    sequencer.new_connection()
    first, second, third = (sequencer.track(mid, 1) for mid in (1, 2, 3))
    assert sequencer.done(second) == 0  # waits for the first
    assert sequencer.stalled(0.05, limit=10) == []  # the first is not old enough yet
    time.sleep(0.06)
    assert sequencer.stalled(0.05, limit=10) == [first]  # old, and holding back the second
    assert sequencer.release(first) == 2 and sent == [1, 2]
    assert first.parked and not second.parked
    assert sequencer.done(first) == 0  # its delivery later sends nothing more
    time.sleep(0.06)
    assert sequencer.stalled(0.05, limit=10) == []  # the third holds back nobody
    assert sequencer.done_many([third]) == 1 and sent == [1, 2, 3]


def test_nothing_is_released_when_nothing_behind_is_done_and_a_reconnect_forgets_all() -> None:
    sent: list[int] = []
    sequencer = AckSequencer(lambda mid, qos: sent.append(mid))
    sequencer.new_connection()
    old = [sequencer.track(mid, 1) for mid in range(5)]
    time.sleep(0.06)
    assert sequencer.stalled(0.05, limit=10) == []  # Pub/Sub down for all: the broker keeps them
    sequencer.new_connection()
    assert sequencer.done_many(old) == 0 and sent == []  # packet ids of a dead connection
    assert sequencer.pending() == 0
