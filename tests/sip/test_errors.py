from __future__ import annotations

import pytest

from sipua.sip.errors import MAX_ERROR_MESSAGE_CHARS, ParseError, bounded_message


def test_short_messages_are_kept_whole() -> None:
    assert bounded_message("Via 'x' is not SIP/2.0") == "Via 'x' is not SIP/2.0"


def test_long_messages_keep_head_and_tail() -> None:
    message = "bad IPv6 reference '[" + "1" * 10_000 + "]' (use [v6-address])"
    short = bounded_message(message)
    assert len(short) == MAX_ERROR_MESSAGE_CHARS
    assert short.startswith("bad IPv6 reference '[")
    assert short.endswith("(use [v6-address])")
    assert " ... " in short


@pytest.mark.parametrize("length", [0, 1, MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_MESSAGE_CHARS + 1])
def test_bound_holds_at_the_edges(length: int) -> None:
    assert len(bounded_message("x" * length)) == min(length, MAX_ERROR_MESSAGE_CHARS)


def test_protocol_errors_are_bounded() -> None:
    error = ParseError("expected SIP/2.0, got " + "9" * 100_000, status_hint=505)
    assert len(str(error)) == MAX_ERROR_MESSAGE_CHARS
    assert error.status_hint == 505
