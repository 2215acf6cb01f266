from __future__ import annotations

import pytest

from sipua.ua.lock import (
    ConnectionDown,
    LockInput,
    LockState,
    LockTracker,
    TlsEstablished,
    TlsNegotiating,
    TlsRefused,
)


def test_starts_unlocked_and_not_connected() -> None:
    tracker = LockTracker()
    assert tracker.state is LockState.UNLOCKED
    assert tracker.reason == "not connected"


@pytest.mark.parametrize(
    ("event", "state", "reason", "check"),
    [
        (TlsNegotiating(peer="127.0.0.1:5061"), LockState.NEGOTIATING, "", ""),
        (TlsEstablished(verified=True), LockState.LOCKED, "", ""),
        (
            TlsEstablished(verified=False, code="untrusted-issuer", reason="unknown CA"),
            LockState.LOCKED_UNVERIFIED,
            "untrusted-issuer (unknown CA)",
            "untrusted-issuer",
        ),
        (
            TlsRefused(kind="verification-failed", code="name-mismatch", reason="wants a.test"),
            LockState.UNLOCKED,
            "verification-failed: name-mismatch (wants a.test)",
            "verification-failed: name-mismatch",
        ),
        (
            TlsRefused(kind="handshake-failed", code="handshake", reason="no shared cipher"),
            LockState.UNLOCKED,
            "handshake-failed: handshake (no shared cipher)",
            "handshake-failed: handshake",
        ),
        # The check is never a sentence cut short: a reason with " (" in it stays whole.
        (
            ConnectionDown(reason="peer closed (reset)"),
            LockState.UNLOCKED,
            "connection-lost: peer closed (reset)",
            "connection-lost",
        ),
        (
            ConnectionDown(reason="cannot connect to [::1]:5061: refused", kind="connect-failed"),
            LockState.UNLOCKED,
            "connect-failed: cannot connect to [::1]:5061: refused",
            "connect-failed",
        ),
        (
            ConnectionDown(reason="shutdown", clean=True),
            LockState.UNLOCKED,
            "closed: shutdown",
            "closed: shutdown",
        ),
    ],
)
def test_each_input_maps_to_its_state(
    event: LockInput, state: LockState, reason: str, check: str
) -> None:
    tracker = LockTracker()
    tracker.on_event(TlsNegotiating(peer="p"))
    change = tracker.on_event(event)
    if event == TlsNegotiating(peer="127.0.0.1:5061"):
        assert change is None  # already negotiating: no transition to report
    else:
        assert change is not None
        assert change.state is state
        assert (change.reason, change.check) == (reason, check)
        assert change.previous is LockState.NEGOTIATING
    assert (tracker.state, tracker.reason, tracker.check) == (state, reason, check)


def test_repeated_event_reports_nothing_new() -> None:
    tracker = LockTracker()
    assert tracker.on_event(TlsEstablished(verified=True)) is not None
    assert tracker.on_event(TlsEstablished(verified=True)) is None


def test_full_cycle_lock_drop_relock() -> None:
    tracker = LockTracker()
    states = []
    for event in (
        TlsNegotiating(peer="p"),
        TlsEstablished(verified=True),
        ConnectionDown(reason="no pong within 10 s"),
        TlsNegotiating(peer="p"),
        TlsEstablished(verified=True),
    ):
        change = tracker.on_event(event)
        assert change is not None
        states.append(change.state.value)
    assert states == ["negotiating", "locked", "unlocked", "negotiating", "locked"]
