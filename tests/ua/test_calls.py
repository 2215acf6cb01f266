"""End-to-end inbound requests: the registrar sends them back over the registration flow."""

from __future__ import annotations

import itertools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sipua.sip import Request, StreamFramer, parse_message, serialize
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
) -> Request:
    to = "<sips:alice@example.test>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch={branch or f'z9hG4bKr{next(_branches)}'}",
        "Record-Route: <sips:127.0.0.1:5061;lr>",
        "Max-Forwards: 70",
        "From: <sips:bob@example.test>;tag=bob1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sips:bob@127.0.0.1:5061>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


@asynccontextmanager
async def registered_ua(
    tmp_path: Path, answer: str = "accept"
) -> AsyncIterator[tuple[TestRegistrar, UserAgent, str]]:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, answer=answer)) as ua,
    ):
        await ua.account.register()
        _, contact, _ = registrar.bindings["alice"]
        uri = contact.split("<", 1)[1].split(">", 1)[0]
        yield registrar, ua, uri


async def test_invite_is_rung_answered_and_torn_down(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        invite = request("INVITE", uri, body=OFFER, branch="z9hG4bKinvite1")
        flow = await registrar.send_request("alice", invite)
        assert (await registrar.response(flow, status=100)).status == 100
        ringing = await registrar.response(flow, status=180)
        ok = await registrar.response(flow, status=200)
        assert ringing.to.tag == ok.to.tag
        assert ok.to.tag is not None
        assert ok.content_type == "application/sdp"
        assert b"m=audio 4000 RTP/AVP 0" in ok.body
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


async def test_cancel_before_answer_gives_487(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
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
        assert (await registrar.response(flow, status=488)).status == 488
        await wait_until(lambda: bool(events(ua, "call-ended")), 5)


async def test_reinvite_is_488_and_shutdown_hangs_up_with_bye(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        await flow.send(request("INVITE", uri, cseq=2, to_tag=ok.to.tag, body=OFFER))
        assert (await registrar.response(flow, status=488)).status == 488
    # Leaving the user agent ended the call with a BYE on the flow.
    byes = [r for r in flow.requests if r.method == "BYE"]
    assert len(byes) == 1
    assert byes[0].to.tag == "bob1"
    assert byes[0].headers.get_all("Route") == ["<sips:127.0.0.1:5061;lr>"]
