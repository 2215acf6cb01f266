from __future__ import annotations

import random

import pytest

from sipua.sip.keepalive import (
    DEFAULT_INTERVAL_SECONDS,
    KeepaliveAction,
    KeepaliveSchedule,
)


def test_nothing_scheduled_before_start() -> None:
    schedule = KeepaliveSchedule(30.0, random.Random(1))
    assert schedule.next_deadline() is None
    assert schedule.handle_timer(1000.0) is None


@pytest.mark.parametrize(
    ("interval", "base"), [(None, DEFAULT_INTERVAL_SECONDS), (30.0, 30.0), (0.0, 1.0)]
)
def test_intervals_are_jittered_between_80_and_100_percent(
    interval: float | None, base: float
) -> None:
    rng = random.Random(7)
    schedule = KeepaliveSchedule(interval, rng)
    schedule.start(0.0)
    gaps = []
    now = 0.0
    for _ in range(200):
        deadline = schedule.next_deadline()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
        assert schedule.handle_timer(now) is KeepaliveAction.SEND_PING
    assert all(0.8 * base <= gap <= base for gap in gaps)
    assert max(gaps) - min(gaps) > 0.1 * base  # really spread, not constant


def test_flow_timer_used_when_not_configured() -> None:
    schedule = KeepaliveSchedule(None, random.Random(3))
    schedule.start(0.0)
    schedule.set_flow_timer(20, 0.0)
    assert schedule.base_interval == 20.0
    deadline = schedule.next_deadline()
    assert deadline is not None
    assert 16.0 <= deadline <= 20.0
    configured = KeepaliveSchedule(50.0, random.Random(3))
    configured.set_flow_timer(20, 0.0)
    assert configured.base_interval == 50.0


def test_missing_pong_ignored_until_peer_has_answered_once() -> None:
    schedule = KeepaliveSchedule(10.0, random.Random(5))
    schedule.start(0.0)
    now = 0.0
    for _ in range(5):  # a registrar that never answers: pings go on, no dead flow
        deadline = schedule.next_deadline()
        assert deadline is not None
        now = deadline
        assert schedule.handle_timer(now) is KeepaliveAction.SEND_PING


def test_missing_pong_after_peer_answered_kills_the_flow_after_10_s() -> None:
    schedule = KeepaliveSchedule(30.0, random.Random(5))
    schedule.start(0.0)
    first = schedule.next_deadline()
    assert first is not None
    assert schedule.handle_timer(first) is KeepaliveAction.SEND_PING
    schedule.pong_received(first + 0.01)
    second = schedule.next_deadline()
    assert second is not None
    assert schedule.handle_timer(second) is KeepaliveAction.SEND_PING
    assert schedule.next_deadline() == pytest.approx(second + 10.0)
    assert schedule.handle_timer(second + 9.9) is None
    assert schedule.handle_timer(second + 10.0) is KeepaliveAction.FLOW_DEAD
    assert schedule.next_deadline() is None


def test_pong_in_time_keeps_the_flow() -> None:
    schedule = KeepaliveSchedule(30.0, random.Random(5))
    schedule.start(0.0)
    schedule.pong_received(0.0)
    now = 0.0
    for _ in range(10):
        deadline = schedule.next_deadline()
        assert deadline is not None
        now = deadline
        assert schedule.handle_timer(now) is KeepaliveAction.SEND_PING
        schedule.pong_received(now + 0.5)
    schedule.stop()
    assert schedule.next_deadline() is None


def test_pings_faster_than_the_pong_timeout_do_not_extend_it() -> None:
    schedule = KeepaliveSchedule(2.0, random.Random(5))
    schedule.start(0.0)
    schedule.pong_received(0.0)
    first = schedule.next_deadline()
    assert first is not None
    now = first
    action = schedule.handle_timer(now)
    while action is not KeepaliveAction.FLOW_DEAD:
        deadline = schedule.next_deadline()
        assert deadline is not None
        now = deadline
        action = schedule.handle_timer(now)
    assert now == pytest.approx(first + 10.0)
