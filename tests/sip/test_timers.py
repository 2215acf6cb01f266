from __future__ import annotations

import pytest

from sipua.sip.timers import TimerConfig

# RFC 3261 Table 4 with the defaults T1=0.5 s, T2=4 s, T4=5 s; RFC 6026 adds L and M.
UNRELIABLE = {
    "a": 0.5,
    "b": 32.0,
    "d": 32.0,
    "e": 0.5,
    "f": 32.0,
    "g": 0.5,
    "h": 32.0,
    "i": 5.0,
    "j": 32.0,
    "k": 5.0,
    "l": 32.0,
    "m": 32.0,
}
RELIABLE = {
    "a": None,
    "b": 32.0,
    "d": 0.0,
    "e": None,
    "f": 32.0,
    "g": None,
    "h": 32.0,
    "i": 0.0,
    "j": 0.0,
    "k": 0.0,
    "l": 32.0,
    "m": 32.0,
}


@pytest.mark.parametrize(
    ("reliable", "expected"), [(False, UNRELIABLE), (True, RELIABLE)], ids=["udp", "tls"]
)
def test_table_4_defaults(reliable: bool, expected: dict[str, float | None]) -> None:
    values = TimerConfig().for_transport(reliable=reliable)
    assert values.reliable is reliable
    assert {name: getattr(values, name) for name in expected} == expected
    assert (values.t1, values.t2, values.t4) == (0.5, 4.0, 5.0)
    assert values.c > 180.0 - 1e-9


def test_timers_scale_with_t1() -> None:
    values = TimerConfig(t1=1.0, t2=8.0, t4=10.0).for_transport(reliable=False)
    assert (values.b, values.f, values.h, values.j, values.l, values.m) == (64.0,) * 6
    assert values.d == 64.0  # never below 32 s, and at least 64*T1 so it outlives Timer B
    assert (values.i, values.k) == (10.0, 10.0)


def test_timer_d_is_at_least_32_seconds_with_a_small_t1() -> None:
    values = TimerConfig(t1=0.1, t2=4.0).for_transport(reliable=False)
    assert values.d == 32.0
    assert values.b == pytest.approx(6.4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t1": 0.0}, "must be positive"),
        ({"t4": -1.0}, "must be positive"),
        ({"t1": 5.0, "t2": 4.0}, r"T2 \(4.0 s\) must not be smaller than T1"),
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimerConfig(**kwargs)
