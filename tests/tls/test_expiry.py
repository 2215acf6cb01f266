"""How long certificates have left, in days and in words, and which ones are warned about."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sipua.tls.expiry import days_left, describe_expiry, expiring
from sipua.tls.stores import issuing
from sipua.tls.stores.files import StoredCertificate
from sipua.tls.stores.store import CertStore
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


def test_a_device_certificate_ending_with_its_device_ca_is_not_called_renewable(
    tmp_path: Path,
) -> None:
    store = CertStore(tmp_path)
    ca = store.devices.ca()
    ca_end = ca.certificate.not_valid_after_utc
    near = ca_end - dt.timedelta(days=10)
    capped = store.devices.identity("generic", now=near)
    ca_listed = StoredCertificate.of(
        ca.certificate, role="device", kind="device-ca", path=store.devices.ca_path
    )
    leaf = StoredCertificate.of(capped.certificate, role="device", kind="generic")
    warned = {e.kind: e for e in expiring([leaf, ca_listed], within_days=30, now=near)}
    assert not warned["generic"].renewable
    assert "ends with the device CA" in warned["generic"].action
    assert "renews" not in warned["generic"].action
    ca_action = warned["device-ca"].action
    assert f"remove {store.devices.ca_path}" in ca_action
    assert "sipua cert export-ca" in ca_action
    # One that ends before its device CA is renewed by sipua, and says so.
    early_at = ca_end - dt.timedelta(days=issuing.DEVICE_CERT_DAYS + 20)
    early = CertStore(tmp_path / "other").devices
    other_ca = early.ca()
    ending = early.identity("generic", now=early_at).certificate
    listed = [
        StoredCertificate.of(ending, role="device", kind="generic"),
        StoredCertificate.of(other_ca.certificate, role="device", kind="device-ca"),
    ]
    moment = ending.not_valid_after_utc - dt.timedelta(days=5)
    [renewable] = expiring(listed, within_days=10, now=moment)
    assert renewable.renewable
    assert renewable.action == "sipua renews it from its device CA before it expires"
