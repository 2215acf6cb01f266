"""End-to-end inbound requests: the registrar sends them back over the registration flow."""

from __future__ import annotations

import itertools
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trio.testing

from sipua.media.rtp import parse_rtp
from sipua.media.sdp import parse_offer
from sipua.sip import Request, Response, StreamFramer, parse_message, serialize
from sipua.sip.framing import MessageFramed
from sipua.ua.agent import UserAgent
from tests.support.registrar import TestRegistrar
from tests.ua.test_agent import events, settings, wait_until

OFFER = (
    b"v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)
_branches = itertools.count()


def request(
    method: str,
    uri: str,
    *,
    call_id: str = "call-1",
    cseq: int = 1,
    to_tag: str | None = None,
    branch: str | None = None,
    body: bytes = b"",
    contact: str = "<sips:bob@127.0.0.1:5061>",
    record_route: str = "<sips:127.0.0.1:5061;lr>",
) -> Request:
    to = "<sips:alice@example.test>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch={branch or f'z9hG4bKr{next(_branches)}'}",
        f"Record-Route: {record_route}",
        "Max-Forwards: 70",
        "From: <sips:bob@example.test>;tag=bob1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: {contact}",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


@asynccontextmanager
async def registered_ua(
    tmp_path: Path, answer: str = "accept", answer_delay: float = 0.05
) -> AsyncIterator[tuple[TestRegistrar, UserAgent, str]]:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, answer=answer, answer_delay=answer_delay)) as ua,
    ):
        await ua.account.register()
        _, contact, _ = registrar.bindings["alice"]
        uri = contact.split("<", 1)[1].split(">", 1)[0]
        yield registrar, ua, uri


async def test_invite_is_rung_answered_and_torn_down(tmp_path: Path) -> None:
    caller_media = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await caller_media.bind(("127.0.0.1", 0))
    media_port = caller_media.getsockname()[1]
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        offer = OFFER.replace(b"m=audio 40000", f"m=audio {media_port}".encode())
        invite = request("INVITE", uri, body=offer, branch="z9hG4bKinvite1")
        flow = await registrar.send_request("alice", invite)
        assert (await registrar.response(flow, status=100)).status == 100
        ringing = await registrar.response(flow, status=180)
        ok = await registrar.response(flow, status=200)
        assert ringing.to.tag == ok.to.tag
        assert ok.to.tag is not None
        assert ok.content_type == "application/sdp"
        (answered,) = parse_offer(ok.body)
        # The answer announces the port the call's media session is bound on (the default
        # range), and RTP comes from there to the offer's address (PCMU, the echo's silence).
        assert (answered.proto, answered.formats, answered.address) == (
            "RTP/AVP",
            ["0"],
            "127.0.0.1",
        )
        assert 16384 <= answered.port <= 32767
        assert answered.port % 2 == 0
        with trio.fail_after(2):
            data, source = await caller_media.recvfrom(2048)
        assert source == ("127.0.0.1", answered.port)
        assert parse_rtp(data).payload_type == 0
        assert ok.headers.get_all("Record-Route") == ["<sips:127.0.0.1:5061;lr>"]
        assert str(ok.contacts[0].uri).startswith("sips:alice@")
        await flow.send(request("ACK", uri, to_tag=ok.to.tag))
        await flow.send(request("BYE", uri, cseq=2, to_tag=ok.to.tag))
        bye_ok = await registrar.response(flow, status=200, method="BYE")
        assert bye_ok.to.tag == ok.to.tag
        await wait_until(lambda: bool(events(ua, "call-ended")), 5)
        assert events(ua, "call-incoming")[0]["call_id"] == "call-1"
        assert events(ua, "call-answered")
        assert events(ua, "call-ended")[0]["reason"] == "remote-bye"
        await wait_until(lambda: bool(events(ua, "call-media")), 5)
        (report,) = events(ua, "call-media")
        assert report["call_id"] == "call-1"
        assert report["local_port"] == answered.port
        assert report["packets_sent"] > 0
        assert (report["encrypted"], report["srtp"]) == (False, "none")
        assert report["security_reason"] == "the peer offered plain RTP"
    caller_media.close()


async def test_cancel_before_answer_gives_487(tmp_path: Path) -> None:
    async with registered_ua(tmp_path, answer_delay=30) as (registrar, ua, uri):
        invite = request("INVITE", uri, body=OFFER, branch="z9hG4bKinvite2")
        flow = await registrar.send_request("alice", invite)
        await registrar.response(flow, status=180)
        await flow.send(request("CANCEL", uri, branch="z9hG4bKinvite2"))
        cancel_ok = await registrar.response(flow, status=200, method="CANCEL")
        assert cancel_ok.status == 200
        terminated = await registrar.response(flow, status=487)
        assert terminated.cseq.method == "INVITE"
        await wait_until(lambda: bool(events(ua, "call-ended")), 5)
        assert events(ua, "call-ended")[0]["reason"] == "cancelled"


@pytest.mark.parametrize(("answer", "status"), [("busy", 486), ("decline", 603)])
async def test_configured_rejection(tmp_path: Path, answer: str, status: int) -> None:
    async with registered_ua(tmp_path, answer=answer) as (registrar, _ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        assert (await registrar.response(flow, status=status)).status == status


async def test_options_and_unsupported_methods(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, _ua, uri):
        flow = await registrar.send_request("alice", request("OPTIONS", uri, call_id="o1"))
        options = await registrar.response(flow, method="OPTIONS")
        assert options.status == 200
        assert "INVITE" in options.headers.get_all("Allow")
        assert options.headers.get("Accept") == "application/sdp"
        await flow.send(request("SUBSCRIBE", uri, call_id="s1"))
        assert (await registrar.response(flow, method="SUBSCRIBE")).status == 405
        await flow.send(request("FROBNICATE", uri, call_id="f1"))
        assert (await registrar.response(flow, method="FROBNICATE")).status == 501
        await flow.send(request("BYE", uri, call_id="nope", to_tag="x"))
        assert (await registrar.response(flow, method="BYE")).status == 481


async def test_invite_on_the_listener(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar, listen=True)
        async with UserAgent(config) as ua:
            assert ua.listen_address is not None
            host, port = ua.listen_address
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the caller does not check the device cert here
            tcp = await trio.open_tcp_stream(host, port)
            stream = trio.SSLStream(tcp, context, server_hostname="alice.device")
            invite = request("INVITE", f"sips:alice@{host}:{port}", body=OFFER)
            await stream.send_all(serialize(invite))
            framer = StreamFramer()
            statuses: list[int] = []
            with trio.fail_after(5):
                while 200 not in statuses:
                    framer.receive_data(bytes(await stream.receive_some(65536)))
                    while isinstance(event := framer.next_event(), MessageFramed):
                        response = parse_message(event.data)
                        statuses.append(getattr(response, "status", 0))
            assert statuses == [100, 180, 200]
            await stream.aclose()
            [inbound] = [e for e in events(ua, "lock-changed") if e.get("scope") == "connection"]
            assert inbound["state"] == "locked-unverified"  # the caller sent no certificate
            assert inbound["reason"].startswith("no-client-certificate")


async def test_offer_without_common_codec_is_488(tmp_path: Path) -> None:
    offer = b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=offer))
        refused = await registrar.response(flow, status=488)
        assert "no audio stream with PCMU or PCMA" in (refused.headers.get("Warning") or "")
        # Refused before ringing (RFC 3261 §8.2.3 comes before any application decision).
        assert not [r.status for r in flow.responses if r.cseq.method == "INVITE"]  # no 100/180
        assert not events(ua, "call-incoming")


async def test_reinvite_refresh_is_200_a_change_488_and_shutdown_hangs_up_with_bye(
    tmp_path: Path,
) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        # The same offer again (RFC 3264 §8): a session refresh, answered with our SDP as it was.
        await flow.send(request("INVITE", uri, cseq=2, to_tag=ok.to.tag, body=OFFER))
        refreshed = await registrar.response(flow, status=200, method="INVITE")
        assert refreshed.body == ok.body
        await flow.send(request("ACK", uri, cseq=2, to_tag=ok.to.tag))
        # A changed session (a new o= version): refused, the call goes on unchanged.
        changed = OFFER.replace(b"o=bob 1 1 ", b"o=bob 1 2 ")
        await flow.send(request("INVITE", uri, cseq=3, to_tag=ok.to.tag, body=changed))
        assert (await registrar.response(flow, status=488)).status == 488
    # Leaving the user agent ended the call with a BYE on the flow.
    byes = [r for r in flow.requests if r.method == "BYE"]
    assert len(byes) == 1
    assert byes[0].to.tag == "bob1"
    assert byes[0].headers.get_all("Route") == ["<sips:127.0.0.1:5061;lr>"]


async def test_a_call_through_a_strict_router_is_answered_and_its_bye_routed_strictly(
    tmp_path: Path,
) -> None:
    # RFC 3261 §12.2.1.1: the strict router's URI is the BYE's Request-URI, the caller's
    # Contact its last Route.
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        strict = request("INVITE", uri, body=OFFER, record_route="<sips:127.0.0.1:5061>")
        flow = await registrar.send_request("alice", strict)
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
    [bye] = [r for r in flow.requests if r.method == "BYE"]
    assert str(bye.uri) == "sips:127.0.0.1:5061"
    assert bye.headers.get_all("Route") == [f"<{strict.contacts[0].uri}>"]


@pytest.mark.parametrize(
    ("contact", "record_route"),
    [
        ("<tel:+1234>", "<sips:127.0.0.1:5061;lr>"),
        ("<mailto:bob@example.test>", "<sips:127.0.0.1:5061;lr>"),
        ("<sips:bob@127.0.0.1:5061>", "<tel:+1234>"),
    ],
)
async def test_invite_whose_dialog_could_not_be_used_is_400(
    tmp_path: Path, contact: str, record_route: str
) -> None:
    # Regression: such an INVITE was answered 200 and the BYE built later raised out of the
    # call task, ending the user agent.
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        bad = request("INVITE", uri, body=OFFER, contact=contact, record_route=record_route)
        flow = await registrar.send_request("alice", bad)
        refused = await registrar.response(flow, method="INVITE")
        assert refused.status == 400
        assert not events(ua, "call-incoming")
        assert ua.calls.active_calls == 0
        await flow.send(request("INVITE", uri, call_id="good", body=OFFER))
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, call_id="good", to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)


async def open_caller(ua: UserAgent) -> tuple[trio.SSLStream[trio.SocketStream], str]:
    """A caller's TLS connection to the user agent's listener and the Request-URI to use."""
    assert ua.listen_address is not None
    host, port = ua.listen_address
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tcp = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(tcp, context, server_hostname="alice.device")
    await stream.do_handshake()
    return stream, f"sips:alice@{host}:{port}"


async def read_responses(
    stream: trio.abc.Stream, framer: StreamFramer, until_status: int
) -> list[Response]:
    responses: list[Response] = []
    with trio.fail_after(5):
        while until_status not in [r.status for r in responses]:
            framer.receive_data(bytes(await stream.receive_some(65536)))
            while isinstance(event := framer.next_event(), MessageFramed):
                message = parse_message(event.data)
                if isinstance(message, Response):
                    responses.append(message)
    return responses


async def test_confirmed_call_ends_when_the_callers_connection_goes(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, listen=True)) as ua,
    ):
        stream, uri = await open_caller(ua)
        await stream.send_all(serialize(request("INVITE", uri, body=OFFER)))
        framer = StreamFramer()
        [ok] = [r for r in await read_responses(stream, framer, 200) if r.status == 200]
        await stream.send_all(serialize(request("ACK", uri, to_tag=ok.to.tag)))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        # The caller vanishes without a BYE.
        stream.transport_stream.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        await stream.transport_stream.aclose()
        await wait_until(lambda: bool(events(ua, "call-ended")), 5)
        assert events(ua, "call-ended")[0]["reason"].startswith("connection-lost")
        assert ua.calls.active_calls == 0


async def test_invites_reset_by_their_callers_leave_no_calls(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        # Long enough that every reset reaches a ringing call.
        UserAgent(settings(tmp_path, registrar, listen=True, answer_delay=0.5)) as ua,
    ):
        for i in range(8):
            stream, uri = await open_caller(ua)
            invite = request("INVITE", uri, call_id=f"rst-{i}", body=OFFER)
            await stream.send_all(serialize(invite))
            stream.transport_stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            await stream.transport_stream.aclose()
        await wait_until(lambda: len(events(ua, "call-incoming")) == 8, 5)
        await wait_until(lambda: ua.calls.active_calls == 0, 5)
        stream, uri = await open_caller(ua)
        await stream.send_all(serialize(request("INVITE", uri, call_id="ok", body=OFFER)))
        statuses = [r.status for r in await read_responses(stream, StreamFramer(), 200)]
        assert statuses == [100, 180, 200]
        await stream.aclose()


async def test_cancel_on_another_connection_gets_its_200_there_and_487_on_the_invites(
    tmp_path: Path,
) -> None:
    # RFC 3261 §18.2.2: each response goes back on its own request's connection.
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, listen=True, answer_delay=30)) as ua,
    ):
        invite_stream, uri = await open_caller(ua)
        cancel_stream, _ = await open_caller(ua)
        invite = request("INVITE", uri, body=OFFER, branch="z9hG4bKcancelme")
        await invite_stream.send_all(serialize(invite))
        invite_framer = StreamFramer()
        [ringing] = [
            r for r in await read_responses(invite_stream, invite_framer, 180) if r.status == 180
        ]
        await cancel_stream.send_all(serialize(request("CANCEL", uri, branch="z9hG4bKcancelme")))
        [cancel_ok] = await read_responses(cancel_stream, StreamFramer(), 200)
        assert cancel_ok.cseq.method == "CANCEL"
        assert cancel_ok.to.tag == ringing.to.tag
        terminated = await read_responses(invite_stream, invite_framer, 487)
        assert [(r.status, r.cseq.method) for r in terminated] == [(487, "INVITE")]
        assert terminated[0].to.tag == ringing.to.tag
        await invite_stream.aclose()
        await cancel_stream.aclose()


async def test_shutdown_before_the_ack_sends_bye_only_after_it(tmp_path: Path) -> None:
    # Regression: hanging up an answered call before its ACK sent BYE at once (RFC 3261 §15
    # forbids it); now the BYE follows the ACK, and hangup_all waits for that.
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        ok = await registrar.response(flow, status=200)
        done = trio.Event()

        async def hang_up() -> None:
            await ua.calls.hangup_all()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hang_up)
            await trio.sleep(0.3)
            assert not [r for r in flow.requests if r.method == "BYE"]
            assert not done.is_set()
            await flow.send(request("ACK", uri, to_tag=ok.to.tag))
            with trio.fail_after(5):
                await done.wait()
        [bye] = [r for r in flow.requests if r.method == "BYE"]
        assert bye.to.tag == "bob1"
        [ended] = events(ua, "call-ended")
        assert ended["reason"] == "local-bye"
        assert ua.calls.active_calls == 0


async def test_shutdown_gives_up_a_call_whose_ack_never_comes_without_a_bye(
    tmp_path: Path,
) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        await registrar.response(flow, status=200)
        start = trio.current_time()
        await ua.calls.hangup_all(ack_wait=0.3)
        assert trio.current_time() - start < 2
        assert not [r for r in flow.requests if r.method == "BYE"]
        [ended] = events(ua, "call-ended")
        assert ended["reason"] == "shutdown-before-ack"
        assert ua.calls.active_calls == 0


async def test_a_burst_of_invites_on_the_flow_is_answered_at_the_pace_the_registrar_reads(
    tmp_path: Path,
) -> None:
    # Forty calls delivered at once (RFC 5626 §5.3) in one write: 80 answers (100 and 180) are
    # more than the flow's outbox holds, so the reader waits for room instead of sipua closing
    # its own registration flow as "not reading" and dropping every call.
    calls = 40
    async with registered_ua(tmp_path, answer_delay=30.0) as (registrar, ua, uri):
        flow, _, _ = registrar.bindings["alice"]
        burst = b"".join(
            serialize(request("INVITE", uri, call_id=f"burst-{i}", body=OFFER))
            for i in range(calls)
        )
        await flow.send(burst)
        await wait_until(lambda: sum(r.status == 180 for r in flow.responses) == calls, 10)
        assert sum(r.status == 100 for r in flow.responses) == calls
        assert ua.account.state.value == "registered"
        assert ua.calls.active_calls == calls
        assert events(ua, "call-ended") == []


async def test_a_burst_of_requests_on_the_listener_is_answered_in_full(tmp_path: Path) -> None:
    count = 3 * 64  # three outboxes' worth, in one write
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, listen=True)) as ua,
    ):
        stream, uri = await open_caller(ua)
        async with stream:
            await burst_of_options(stream, uri, count)


async def burst_of_options(stream: trio.abc.Stream, uri: str, count: int) -> None:
    """Sends `count` OPTIONS in one write, reads every answer, then asks once more."""
    burst = b"".join(
        serialize(request("OPTIONS", uri, call_id=f"options-{i}")) for i in range(count)
    )
    await stream.send_all(burst)
    framer = StreamFramer()
    answered = 0
    with trio.fail_after(10):
        while answered < count:
            data = await stream.receive_some(65536)
            assert data, "sipua closed the connection of a caller that reads"
            framer.receive_data(bytes(data))
            while isinstance(event := framer.next_event(), MessageFramed):
                response = parse_message(event.data)
                assert isinstance(response, Response)
                assert response.status == 200
                answered += 1
    await stream.send_all(serialize(request("OPTIONS", uri, call_id="after")))
    assert [r.status for r in await read_responses(stream, framer, 200)] == [200]


async def test_a_call_on_an_inbound_connection_outlives_the_idle_timeout(tmp_path: Path) -> None:
    # A call without session timers sends no SIP while it is up: its connection is not idle.
    # The listener's idle timeout used to close it, ending the call with no BYE possible.
    idle = 1.0
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar, listen=True)
        base = replace(base, listen=replace(base.listen, idle_timeout=idle))
        async with UserAgent(base) as ua:
            stream, uri = await open_caller(ua)
            async with stream:
                await stream.send_all(serialize(request("INVITE", uri, body=OFFER)))
                framer = StreamFramer()
                [ok] = [r for r in await read_responses(stream, framer, 200) if r.status == 200]
                await stream.send_all(serialize(request("ACK", uri, to_tag=ok.to.tag)))
                await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
                await trio.sleep(3 * idle)  # no SIP at all on the connection
                assert ua.calls.active_calls == 1
                assert events(ua, "call-ended") == []
                bye = request("BYE", uri, cseq=2, to_tag=ok.to.tag)
                await stream.send_all(serialize(bye))
                [done] = await read_responses(stream, framer, 200)
                assert done.cseq.method == "BYE"
                assert [e["reason"] for e in events(ua, "call-ended")] == ["remote-bye"]
