"""RFC 4475 torture messages: every one of the 50, with the verdict from expected.json.

Datagram view (`parse_message` on the whole file):
- class `valid`: must parse.
- class `invalid`: must raise ParseError; status hint 505 for badvers, 400 otherwise. For the
  `liberal_ok` cases (badaspec, baddate, baddn, escruri, lwsstart, regbadct, trws) the RFC lets a
  liberal element accept; sipua chooses to reject.
- class `transaction/application-layer`: must not break the parser; `parse: accept` must parse,
  `parse: either` may raise ParseError (sipua rejects insuf, mcl01 and multi01 with 400).
- dblreq (two messages in one datagram): the first REGISTER is accepted by its Content-Length
  and the trailing INVITE ignored, as RFC 4475 §3.1.1.8 asks of a UDP element.

Stream view (`StreamFramer`, then `parse_message` on each framed message), per the notes:
- inv2543 has no Content-Length: unframeable on a stream (FramingError).
- ncl (negative) and mcl01 (conflicting) Content-Length: FramingError, close the connection.
- clerr (Content-Length 9999, fewer bytes): the framer waits for more (never over-reads), and
  EOF inside the body is a FramingError.
- baddn ends without the empty line: the framer waits; EOF then is a FramingError.
- dblreq: the two messages are two framed messages (the REGISTER, then the INVITE, which
  parses), with the CRLF between them reported as a keepalive pong. The INVITE's body is 155
  bytes but its Content-Length says 150, so the last 5 bytes ("C" CRLF CRLF) are a header block
  without Content-Length: a FramingError, as any garbage on a stream must be.
Every other case frames as exactly one message whose parse verdict equals the datagram one.
No case is skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sipua.sip import (
    NEED_DATA,
    FramingError,
    KeepalivePong,
    MessageFramed,
    ParseError,
    Request,
    StreamFramer,
    parse_message,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "rfc4475"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())["cases"]
CASES = sorted(EXPECTED)

# Stream outcomes that differ from "one framed message" (see the module docstring).
STREAM_FRAMING_ERRORS = {"inv2543", "ncl", "mcl01", "clerr", "baddn"}
STREAM_WAITS_BEFORE_EOF = {"clerr", "baddn"}


def _data(name: str) -> bytes:
    return (CORPUS / EXPECTED[name]["file"]).read_bytes()


def test_corpus_is_complete_and_byte_exact() -> None:
    assert len(CASES) == 50
    for name in CASES:
        data = _data(name)
        assert len(data) == EXPECTED[name]["bytes"], name
        assert hashlib.sha256(data).hexdigest() == EXPECTED[name]["sha256"], name


def _datagram_verdict(name: str) -> tuple[str, int | None]:
    try:
        parse_message(_data(name))
    except ParseError as exc:
        return "reject", exc.status_hint
    return "accept", None


@pytest.mark.parametrize("name", CASES)
def test_datagram_verdict(name: str) -> None:
    case = EXPECTED[name]
    verdict, status = _datagram_verdict(name)
    if case["class"] == "valid":
        assert verdict == "accept"
    elif case["class"] == "invalid":
        assert verdict == "reject"
        assert status == (505 if name == "badvers" else 400)
    else:
        assert case["class"] == "transaction/application-layer"
        if case["parse"] == "accept":
            assert verdict == "accept"
        else:
            assert case["parse"] == "either"
            assert status in (None, 400)


def test_either_cases_are_rejected_with_400() -> None:
    # Our documented choice for the "either" cases.
    for name in ("insuf", "mcl01", "multi01"):
        assert _datagram_verdict(name) == ("reject", 400)


def test_dblreq_accepts_the_first_message_only() -> None:
    msg = parse_message(_data("dblreq"))
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def _frame_all(data: bytes, chunk: int) -> tuple[list[bytes], bool, str | None]:
    """Feed data in chunks, then EOF; return framed messages, whether the framer waited
    (NEED_DATA with data pending) before EOF, and the FramingError text if one was raised."""
    framer = StreamFramer()
    frames: list[bytes] = []
    waited = False
    try:
        for i in range(0, len(data), chunk):
            framer.receive_data(data[i : i + chunk])
            while True:
                event = framer.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, MessageFramed):
                    frames.append(event.data)
        waited = framer.buffered > 0
        framer.receive_data(None)
        for _ in range(10):
            event = framer.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, MessageFramed):
                frames.append(event.data)
    except FramingError as exc:
        return frames, waited, str(exc)
    return frames, waited, None


@pytest.mark.parametrize("chunk", [1 << 20, 7, 1])
@pytest.mark.parametrize("name", CASES)
def test_stream_verdict(name: str, chunk: int) -> None:
    frames, waited, error = _frame_all(_data(name), chunk)
    if name in STREAM_FRAMING_ERRORS:
        assert error is not None
        assert frames == []
        assert waited == (name in STREAM_WAITS_BEFORE_EOF)
        return
    if name == "dblreq":
        assert error is not None
        assert len(frames) == 2
        methods = [m.method for m in map(parse_message, frames) if isinstance(m, Request)]
        assert methods == ["REGISTER", "INVITE"]
        return
    assert error is None
    assert len(frames) == 1
    assert frames[0] == _data(name)[: len(frames[0])]
    datagram_verdict, _ = _datagram_verdict(name)
    try:
        parse_message(frames[0])
        stream_verdict = "accept"
    except ParseError:
        stream_verdict = "reject"
    assert stream_verdict == datagram_verdict


def test_dblreq_on_a_stream_reports_the_separating_crlf_as_pong() -> None:
    framer = StreamFramer()
    framer.receive_data(_data("dblreq"))
    events = [framer.next_event() for _ in range(3)]
    assert isinstance(events[0], MessageFramed)
    assert isinstance(events[1], KeepalivePong)
    assert isinstance(events[2], MessageFramed)
    assert len(events[2].data) == len(_data("dblreq").split(b"\r\n\r\n\r\n")[1]) - 5
    with pytest.raises(FramingError, match="no Content-Length"):
        events.append(framer.next_event())
