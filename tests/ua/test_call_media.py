"""Answered calls carry media: SRTP echo to a real caller session over loopback, and the
refusals the SRTP policy and the port range give."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import trio

from sipua.media.negotiation import MediaPlan, accept_answer, answer_offer, make_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import MediaSpec, make_source
from sipua.sip import Request, Response, make_response
from sipua.ua import call_media
from sipua.ua.call_media import CallMedia
from sipua.ua.calls import AnswerPolicy, CallHandler
from tests.ua.test_agent import wait_until
from tests.ua.test_calls import OFFER, request

PORTS = PortRange(43000, 43999)


class FakeConnection:
    """Stands in for a SipConnection: records what the call handler sends on it."""

    def __init__(self) -> None:
        self.local = "127.0.0.1:5061"
        self.peer = "127.0.0.1:40000"
        self.sent: list[Request | Response] = []
        self.closed = trio.Event()
        self.closed_reason: str | None = None
        self.is_open = True
        self.tls_name: str | None = None
        self.in_use = False

    async def send(self, message: Request | Response) -> None:
        self.sent.append(message)

    def set_in_use(self, in_use: bool) -> None:
        self.in_use = in_use


def call_handler(
    nursery: trio.Nursery, published: list[tuple[str, dict[str, object]]], *, media: CallMedia
) -> CallHandler:
    return CallHandler(
        policy=AnswerPolicy(delay=0.01),
        publish=lambda event, **fields: published.append((event, fields)),
        contact_for=lambda connection: f"sips:alice@{connection.local}",
        nursery=nursery,
        rng=random.Random(1),
        users=frozenset({"alice"}),
        media=media,
    )


async def place(handler: CallHandler, connection: FakeConnection) -> tuple[str, Request]:
    """Places a call to bob on `connection`; returns its Call-ID and the INVITE sent."""
    call_id = handler.place_call(
        connection,
        target="sips:bob@example.test",
        from_uri="sips:alice@example.test",
        responder=None,
        ring_timeout=None,
        duration=None,
    )
    await wait_until(lambda: bool(connection.sent), 2)
    invite = connection.sent[0]
    assert isinstance(invite, Request)
    return call_id, invite


def answered(invite: Request, status: int, sdp: bytes) -> Response:
    """The callee's `status` response to our INVITE, carrying `sdp`."""
    response = make_response(invite, status, to_tag="bob9")
    response.headers.add("Contact", "<sips:bob@127.0.0.1:5061>")
    response.headers.add("Content-Type", "application/sdp")
    return replace(response, body=sdp)


def peer_answer(offer: bytes, peer: MediaSession, rng: random.Random) -> tuple[bytes, MediaPlan]:
    """The other side's answer to sipua's `offer` (optional SRTP), for media on `peer`."""
    return answer_offer(
        offer,
        policy="optional",
        signalling_secure=True,
        address="127.0.0.1",
        port=peer.port,
        session_id=2,
        random_bytes=rng.randbytes,
    )


def _responses(connection: FakeConnection) -> list[Response]:
    return [m for m in connection.sent if isinstance(m, Response)]


async def _ok(connection: FakeConnection) -> Response:
    await wait_until(lambda: any(r.status == 200 for r in _responses(connection)), 3)
    return next(r for r in _responses(connection) if r.status == 200)


async def _talk_then_hang_up(
    handler: CallHandler,
    connection: FakeConnection,
    published: list[tuple[str, dict[str, object]]],
    *,
    call_id: str,
    to_tag: str | None,
) -> dict[str, object]:
    """Lets the call's media run 1.2 s, hangs up with the caller's BYE, and returns the
    call's media report."""
    await trio.sleep(1.2)
    bye = request("BYE", "sips:alice@x", call_id=call_id, cseq=2, to_tag=to_tag)
    await handler.handle_message(connection, bye)
    await wait_until(lambda: any(event == "call-media" for event, _ in published), 2)
    (report,) = [fields for event, fields in published if event == "call-media"]
    return report


async def test_an_answered_call_echoes_srtp_back_to_the_caller() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    rng = random.Random(5)
    caller = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng.randbytes)
    offer = make_offer(
        policy="compulsory",
        signalling_secure=True,
        address="127.0.0.1",
        port=caller.port,
        session_id=1,
        random_bytes=rng.randbytes,
    )
    async with trio.open_nursery() as nursery:
        media = CallMedia(srtp="compulsory", ports=PORTS)
        handler = call_handler(nursery, published, media=media)
        connection = FakeConnection()
        invite = request("INVITE", "sips:alice@x", call_id="m1", body=offer.body)
        await handler.handle_message(connection, invite)
        ok = await _ok(connection)
        assert b"RTP/SAVP" in ok.body
        plan = accept_answer(offer, ok.body, policy="compulsory", signalling_secure=True)
        assert plan.srtp is not None
        await nursery.start(caller.run, plan, make_source(MediaSpec("tone"), plan.codec))
        await handler.handle_message(
            connection, request("ACK", "sips:alice@x", call_id="m1", to_tag=ok.to.tag)
        )
        report = await _talk_then_hang_up(
            handler, connection, published, call_id="m1", to_tag=ok.to.tag
        )
        nursery.cancel_scope.cancel()
    caller.close()
    assert report["encrypted"] is True
    assert report["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    assert isinstance(report["packets_received"], int)
    assert report["packets_received"] >= 45  # 1.2 s of the caller's 50 packets/s
    assert report["packets_lost"] == 0
    assert report["srtp_auth_failures"] == 0
    back = caller.report()
    assert back.packets_received >= 40  # the echo of the caller's tone
    assert back.srtp_auth_failures == 0


async def test_compulsory_srtp_refuses_a_plain_offer_with_488() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(srtp="compulsory", ports=PORTS))
        connection = FakeConnection()
        await handler.handle_message(
            connection, request("INVITE", "sips:alice@x", call_id="p1", body=OFFER)
        )
        await wait_until(lambda: bool(_responses(connection)), 2)
        (refused,) = _responses(connection)
        assert refused.status == 488
        assert "no usable SDES crypto" in (refused.headers.get("Warning") or "")
        assert handler.active_calls == 0
        nursery.cancel_scope.cancel()


async def test_an_exhausted_port_range_answers_503() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    ports = PortRange(44000, 44001)  # one pair
    holder = MediaSession.open("127.0.0.1", ports)
    try:
        async with trio.open_nursery() as nursery:
            handler = call_handler(nursery, published, media=CallMedia(ports=ports))
            connection = FakeConnection()
            await handler.handle_message(
                connection, request("INVITE", "sips:alice@x", call_id="e1", body=OFFER)
            )
            await wait_until(lambda: bool(_responses(connection)), 2)
            (refused,) = _responses(connection)
            assert refused.status == 503
            assert refused.headers.get("Retry-After") == "5"
            nursery.cancel_scope.cancel()
    finally:
        holder.close()


async def test_a_placed_call_whose_answer_is_plain_under_compulsory_is_hung_up() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(srtp="compulsory", ports=PORTS))
        connection = FakeConnection()
        call_id, invite = await place(handler, connection)
        assert b"RTP/SAVP" in invite.body  # compulsory offers SRTP only
        await handler.handle_message(connection, answered(invite, 200, OFFER))
        placed = await handler.wait_ended(call_id)
        assert placed.outcome is not None
        assert placed.outcome.reason == "local-bye"
        assert placed.media_refusal is not None
        assert "compulsory" in placed.media_refusal

        def requests() -> list[str]:
            return [m.method for m in connection.sent if isinstance(m, Request)]

        await wait_until(lambda: len(requests()) == 3, 2)  # the BYE leaves through the outbox
        assert requests() == [
            "INVITE",
            "ACK",
            "BYE",
        ]
        nursery.cancel_scope.cancel()


async def test_an_invite_without_offer_gets_our_offer_and_media_runs_on_the_acks_answer() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    rng = random.Random(8)
    caller = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng.randbytes)
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(srtp="optional", ports=PORTS))
        connection = FakeConnection()
        await handler.handle_message(connection, request("INVITE", "sips:alice@x", call_id="l1"))
        ok = await _ok(connection)
        assert b"a=crypto:" in ok.body  # optional SRTP: our offer carries SDES keys
        answer, plan = peer_answer(ok.body, caller, rng)
        await nursery.start(caller.run, plan, make_source(MediaSpec("tone"), plan.codec))
        ack = request("ACK", "sips:alice@x", call_id="l1", to_tag=ok.to.tag, body=answer)
        await handler.handle_message(connection, ack)
        report = await _talk_then_hang_up(
            handler, connection, published, call_id="l1", to_tag=ok.to.tag
        )
        nursery.cancel_scope.cancel()
    caller.close()
    assert report["encrypted"] is True
    assert isinstance(report["packets_received"], int)
    assert report["packets_received"] >= 45


async def test_a_183_with_sdp_starts_early_media_before_the_answer() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    rng = random.Random(9)
    callee = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng.randbytes)
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(srtp="optional", ports=PORTS))
        connection = FakeConnection()
        call_id, invite = await place(handler, connection)
        answer, plan = peer_answer(invite.body, callee, rng)
        await nursery.start(callee.run, plan, make_source(MediaSpec("tone"), plan.codec))
        await handler.handle_message(connection, answered(invite, 183, answer))
        await trio.sleep(1.0)  # ringing, with the callee's early media
        await handler.handle_message(connection, answered(invite, 200, answer))
        handler.hangup(call_id)
        placed = await handler.wait_ended(call_id)
        nursery.cancel_scope.cancel()
    callee.close()
    report = placed.media_report
    assert report is not None
    assert isinstance(report["packets_received"], int)
    assert report["packets_received"] >= 40  # all of it arrived before the 200
    assert report["encrypted"] is True


class BrokenMedia(MediaSession):
    """A media session with a bug: its run fails with an error that is no MediaError."""

    async def run(self, *args: object, **kwargs: object) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("the sample buffer went missing")


def _requests(connection: FakeConnection) -> list[Request]:
    return [m for m in connection.sent if isinstance(m, Request)]


async def test_a_bug_in_an_answered_calls_media_ends_that_call_with_a_bye(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[Exception]
) -> None:
    # Regression: an exception other than MediaError left the media task and ended the user
    # agent's nursery, so one call's media bug ended every call and the process.
    monkeypatch.setattr(call_media, "MediaSession", BrokenMedia)
    published: list[tuple[str, dict[str, object]]] = []
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(ports=PORTS))
        connection = FakeConnection()
        invite = request("INVITE", "sips:alice@x", call_id="b1", body=OFFER)
        await handler.handle_message(connection, invite)
        ok = await _ok(connection)
        # The media fails at once, before the caller's ACK: the BYE waits for it (§15).
        await wait_until(lambda: bool(internal_errors), 2)
        assert [type(error) for error in internal_errors] == [RuntimeError]
        internal_errors.clear()
        assert _requests(connection) == []
        ack = request("ACK", "sips:alice@x", call_id="b1", to_tag=ok.to.tag)
        await handler.handle_message(connection, ack)
        await wait_until(lambda: [r.method for r in _requests(connection)] == ["BYE"], 2)
        (ended,) = [fields for event, fields in published if event == "call-ended"]
        assert ended["reason"] == "media-failed: RuntimeError: the sample buffer went missing"
        assert any(event == "call-media" for event, _ in published)
        assert handler.active_calls == 0
        # The user agent goes on: the next call is answered.
        monkeypatch.setattr(call_media, "MediaSession", MediaSession)
        await handler.handle_message(
            connection, request("INVITE", "sips:alice@x", call_id="b2", body=OFFER)
        )
        await wait_until(
            lambda: any(e == "call-answered" and f["call_id"] == "b2" for e, f in published), 3
        )
        nursery.cancel_scope.cancel()


async def test_a_bug_in_a_placed_calls_media_ends_that_call_with_a_bye(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[Exception]
) -> None:
    monkeypatch.setattr(call_media, "MediaSession", BrokenMedia)
    published: list[tuple[str, dict[str, object]]] = []
    rng = random.Random(3)
    callee = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng.randbytes)
    try:
        async with trio.open_nursery() as nursery:
            handler = call_handler(nursery, published, media=CallMedia(ports=PORTS))
            connection = FakeConnection()
            call_id, invite = await place(handler, connection)
            answer, _plan = peer_answer(invite.body, callee, rng)
            await handler.handle_message(connection, answered(invite, 200, answer))
            with trio.fail_after(3):
                placed = await handler.wait_ended(call_id)
            assert placed.outcome is not None
            assert placed.outcome.reason.startswith("media-failed: RuntimeError")
            assert placed.media_report is not None
            assert [type(error) for error in internal_errors] == [RuntimeError]
            internal_errors.clear()
            await wait_until(lambda: [r.method for r in _requests(connection)][-1] == "BYE", 2)
            nursery.cancel_scope.cancel()
    finally:
        callee.close()
