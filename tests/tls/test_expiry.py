"""How long certificates have left, in days and in words, and which ones are warned about."""

from __future__ import annotations

import datetime as dt

import pytest

from sipua.tls.expiry import days_left, describe_expiry, expiring
from sipua.tls.stores.files import StoredCertificate
from tests.support.certs import make_ca

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("offset", "days", "words"),
    [
        (dt.timedelta(days=10, hours=1), 10, "10 days left"),
        (dt.timedelta(hours=25), 1, "1 day left"),
        (dt.timedelta(hours=23), 0, "expires within a day"),
        (dt.timedelta(minutes=1), 0, "expires within a day"),
        (dt.timedelta(0), 0, "expired less than a day ago"),
        (-dt.timedelta(minutes=1), 0, "expired less than a day ago"),
        (-dt.timedelta(hours=23), 0, "expired less than a day ago"),
        (-dt.timedelta(hours=25), -1, "expired 1 day ago"),
        (-dt.timedelta(days=3, hours=1), -3, "expired 3 days ago"),
    ],
)
def test_days_are_whole_days_rounded_toward_zero(
    offset: dt.timedelta, days: int, words: str
) -> None:
    assert days_left(NOW + offset, NOW) == days
    assert describe_expiry(NOW + offset, NOW) == words


def test_expiring_includes_what_ends_within_the_window_and_what_has_ended() -> None:
    ca = make_ca("Expiry Window CA")
    stored = StoredCertificate.of(ca.cert, role="trusted", kind="custom")
    end = stored.summary.not_after
    # Ended a minute ago: warned about even with a window of 0 days.
    [ended] = expiring([stored], within_days=0, now=end + dt.timedelta(minutes=1))
    assert ended.days_left == 0
    assert not expiring([stored], within_days=0, now=end - dt.timedelta(minutes=1))
    # 10 days and an hour left: outside a 10-day window, inside an 11-day one.
    moment = end - dt.timedelta(days=10, hours=1)
    assert not expiring([stored], within_days=10, now=moment)
    [soon] = expiring([stored], within_days=11, now=moment)
    assert soon.days_left == 10
