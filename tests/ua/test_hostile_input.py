"""Hostile and malformed input at the user agent: crashes, silence, wrong order, held slots.

The end-to-end tests run a real `UserAgent` with its TLS listener on 127.0.0.1 and a caller that
speaks TLS to it (stdlib ssl); the call-logic tests drive `CallHandler` with stand-in
connections on a virtual clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from sipua.sip import Request, Response, StreamFramer, parse_message, serialize
from sipua.sip import endpoint as endpoint_module
from sipua.sip.errors import ParseError
from sipua.sip.framing import MessageFramed
from sipua.sip.headers import Headers
from sipua.ua.agent import UserAgent
from tests.support.registrar import TestRegistrar
from tests.ua.test_agent import events, settings, wait_until
from tests.ua.test_calls import OFFER, open_caller, request

RFC4475 = Path(__file__).resolve().parents[1] / "corpus" / "rfc4475"


class Caller:
    """A caller's TLS connection to the user agent's listener."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], uri: str) -> None:
        self.stream = stream
        self.uri = uri
        self.framer = StreamFramer()
        self.responses: list[Response] = []

    @classmethod
    async def connect(cls, ua: UserAgent) -> Caller:
        with trio.fail_after(5):
            stream, uri = await open_caller(ua)
        return cls(stream, uri)

    async def send(self, data: bytes | Request) -> None:
        await self.stream.send_all(data if isinstance(data, bytes) else serialize(data))

    async def response(self, status: int | None = None) -> Response:
        """The next response (with `status`, when given), waiting up to 5 s."""
        with trio.fail_after(5):
            while True:
                for index, response in enumerate(self.responses):
                    if status is None or response.status == status:
                        return self.responses.pop(index)
                data = await self.stream.receive_some(65536)
                assert data, "the user agent closed the caller's connection"
                self.framer.receive_data(bytes(data))
                while isinstance(event := self.framer.next_event(), MessageFramed):
                    self.responses.append(_response(event.data))

    async def aclose(self) -> None:
        with trio.move_on_after(1):
            await self.stream.aclose()


def _response(data: bytes) -> Response:
    """A response as the caller reads it; one that copies a garbled field is kept raw."""
    try:
        message = parse_message(data)
    except ParseError:
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape").split("\r\n")
        _version, status, reason = head[0].split(" ", 2)
        fields = [tuple(line.split(": ", 1)) for line in head[1:]]
        return Response(int(status), reason, Headers([(name, value) for name, value in fields]))
    assert isinstance(message, Response)
    return message


@asynccontextmanager
async def listening_ua(tmp_path: Path, *, ring: float = 0.2) -> AsyncIterator[UserAgent]:
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar, listen=True)
        account = dataclasses.replace(base.accounts[0], auto_answer_delay=ring)
        async with UserAgent(dataclasses.replace(base, accounts=(account,))) as ua:
            yield ua


def with_sdp_port(port: str) -> bytes:
    return OFFER.replace(b"m=audio 40000", f"m=audio {port}".encode())


# -- 1: one INVITE must not stop sipua ---------------------------------------------------


async def test_superscript_sdp_port_gets_488_and_sipua_serves_the_next_call(
    tmp_path: Path,
) -> None:
    async with listening_ua(tmp_path) as ua:
        caller = await Caller.connect(ua)
        await caller.send(request("INVITE", caller.uri, call_id="sup", body=with_sdp_port("²000")))
        refused = await caller.response()
        assert refused.status == 488
        assert "has port" in (refused.headers.get("Warning") or "")
        await caller.send(request("INVITE", caller.uri, call_id="next", body=OFFER))
        assert (await caller.response(200)).status == 200
        await caller.aclose()


async def test_a_bug_while_handling_a_request_is_answered_500_and_the_rest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, internal_errors: list[Exception]
) -> None:
    def broken(*_args: object, **_kwargs: object) -> Response:
        raise RuntimeError("a bug in building the OPTIONS answer")

    async with listening_ua(tmp_path) as ua:
        monkeypatch.setattr(endpoint_module, "options_response", broken)
        caller = await Caller.connect(ua)
        await caller.send(request("OPTIONS", caller.uri, call_id="o1"))
        failed = await caller.response()
        assert failed.status == 500
        assert [type(error) for error in internal_errors] == [RuntimeError]
        internal_errors.clear()
        await caller.send(request("INVITE", caller.uri, call_id="after", body=OFFER))
        assert (await caller.response(200)).status == 200
        await caller.aclose()


# -- 3: malformed requests are answered over TLS (RFC 4475) -------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("badinv01", 400),
        ("scalar02", 400),
        ("mismatch01", 400),
        ("mismatch02", 400),
        ("quotbal", 400),
        ("badaspec", 400),
        ("badvers", 505),
        ("insuf", 400),
    ],
)
async def test_rfc4475_malformed_requests_are_answered_on_their_connection(
    tmp_path: Path, name: str, status: int
) -> None:
    data = (RFC4475 / f"{name}.dat").read_bytes()
    async with listening_ua(tmp_path) as ua:
        caller = await Caller.connect(ua)
        await caller.send(data)
        answer = await caller.response()
        assert answer.status == status
        assert (answer.headers.get("Warning") or "").startswith('399 sipua "')
        assert (
            answer.headers.get("CSeq")
            == data.split(b"CSeq:", 1)[1].split(b"\r\n")[0].strip().decode()
        )
        # The connection lives: the next request is served.
        await caller.send(request("OPTIONS", caller.uri, call_id="after"))
        assert (await caller.response(200)).cseq.method == "OPTIONS"
        await caller.aclose()


# -- 4: the checks of RFC 3261 §8.2, in order ---------------------------------------------


def invite_with(uri_for: str | None = None, **changes: bytes) -> bytes:
    """An INVITE's bytes with header lines or the Request-URI replaced."""
    data = serialize(request("INVITE", "sips:alice@127.0.0.1", call_id="chk", body=OFFER))
    if uri_for is not None:
        data = data.replace(b"INVITE sips:alice@127.0.0.1 ", f"INVITE {uri_for} ".encode(), 1)
    for old, new in changes.items():
        data = data.replace(old.encode(), new, 1)
    return data


@pytest.mark.parametrize(
    ("data", "status", "header"),
    [
        (
            invite_with(**{"Content-Type: application/sdp": b"Content-Type: aaaaaaaaa"}),
            415,
            "Accept",
        ),
        (invite_with(uri_for="http://example.com/alice"), 416, "Unsupported"),
        (invite_with(uri_for="sips:mallory@127.0.0.1"), 404, None),
        (invite_with(**{"m=audio 40000": b"m=audio 70000"}), 488, "Warning"),
        (invite_with(**{"Call-ID: chk": b"Call-ID: two words"}), 400, "Warning"),
    ],
    ids=["content-type", "uri-scheme", "uri-user", "sdp-port", "call-id"],
)
async def test_each_check_gets_its_own_status(
    tmp_path: Path, data: bytes, status: int, header: str | None
) -> None:
    async with listening_ua(tmp_path) as ua:
        caller = await Caller.connect(ua)
        await caller.send(data)
        answer = await caller.response()
        assert answer.status == status
        if header is not None:
            assert answer.headers.get(header)
        assert not events(ua, "call-incoming")
        await caller.aclose()


async def test_max_forwards_zero_reaches_its_final_recipient(tmp_path: Path) -> None:
    # RFC 4475 §3.3.11 (zeromf): an endpoint processes the request normally.
    async with listening_ua(tmp_path) as ua:
        caller = await Caller.connect(ua)
        await caller.send(invite_with(**{"Max-Forwards: 70": b"Max-Forwards: 0"}))
        assert (await caller.response(200)).status == 200
        await caller.aclose()


async def test_invite_without_offer_gets_ours_in_the_200_and_the_answer_in_the_ack(
    tmp_path: Path,
) -> None:
    async with listening_ua(tmp_path) as ua:
        caller = await Caller.connect(ua)
        await caller.send(request("INVITE", caller.uri, call_id="late"))
        ok = await caller.response(200)
        assert ok.content_type == "application/sdp"
        assert b"m=audio " in ok.body
        assert b"a=rtpmap:0 PCMU/8000" in ok.body
        answer = OFFER.replace(b"RTP/AVP 0 8", b"RTP/AVP 0")
        await caller.send(request("ACK", caller.uri, call_id="late", to_tag=ok.to.tag, body=answer))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        await caller.aclose()


# -- 5: a caller that is gone holds nothing -----------------------------------------------


async def test_caller_that_hangs_up_while_ringing_frees_its_slot_at_once(tmp_path: Path) -> None:
    async with listening_ua(tmp_path, ring=30.0) as ua:
        for i in range(3):
            caller = await Caller.connect(ua)
            await caller.send(request("INVITE", caller.uri, call_id=f"gone-{i}", body=OFFER))
            await caller.response(180)
            await caller.aclose()
        # Long before the 30 s ring delay: each call ended with its connection.
        await wait_until(lambda: ua.calls.active_calls == 0, 3)
        ended = events(ua, "call-ended")
        assert len(ended) == 3
        assert all(e["reason"].startswith("connection-lost") for e in ended)
