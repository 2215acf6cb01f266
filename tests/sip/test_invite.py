from __future__ import annotations

import itertools
import random

import pytest

from sipua.sip import Request, Response, parse_message, serialize
from sipua.sip.errors import LocalProtocolError
from sipua.sip.invite import (
    ACK_TIMEOUT_SECONDS,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    InviteOutput,
    InviteSession,
    InviteState,
    Reply,
    Send,
    options_response,
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def request(
    method: str,
    *,
    cseq: int = 1,
    to_tag: str | None = None,
    branch: str = "z9hG4bKinv1",
    body: bytes = b"",
    cseq_method: str | None = None,
) -> Request:
    to = "<sips:alice@example.test>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sips:alice@127.0.0.1:5062 SIP/2.0",
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch={branch}",
        "Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKcaller",
        "Record-Route: <sips:proxy.example.test;lr>",
        "Max-Forwards: 69",
        'From: "Bob" <sips:bob@example.test>;tag=bobtag',
        f"To: {to}",
        "Call-ID: call-1@example.test",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sips:bob@192.0.2.1:5061>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def session() -> InviteSession:
    return InviteSession(
        request("INVITE", body=SDP),
        local_tag="alicetag",
        contact="sips:alice@127.0.0.1:5062",
        sent_by="127.0.0.1:5062",
        rng=random.Random(1),
    )


def replies(outputs: list[InviteOutput]) -> list[Response]:
    result = []
    for output in outputs:
        if isinstance(output, Reply):
            # Everything we send is valid SIP that parses back.
            assert isinstance(parse_message(serialize(output.response)), Response)
            result.append(output.response)
    return result


def test_start_sends_trying_and_ringing_with_tag_and_record_route() -> None:
    call = session()
    trying, ringing = replies(call.start())
    assert trying.status == 100
    assert ringing.status == 180
    assert ringing.to.tag == "alicetag"
    assert ringing.headers.get_all("Record-Route") == ["<sips:proxy.example.test;lr>"]
    assert len(ringing.vias) == 2
    assert call.state is InviteState.RINGING


def test_record_route_is_copied_field_by_field_as_received() -> None:
    # One field listing 300 routes is one field in our 180 and 200, not 300 header lines
    # (more than a message may carry, MAX_HEADER_COUNT).
    routes = ", ".join(f"<sips:p{i}.example.test;lr>" for i in range(300))
    invite = request("INVITE", body=SDP)
    invite.headers.set("Record-Route", routes)
    call = InviteSession(
        invite,
        local_tag="alicetag",
        contact="sips:alice@127.0.0.1:5062",
        sent_by="127.0.0.1:5062",
        rng=random.Random(1),
    )
    _, ringing = replies(call.start())
    assert ringing.headers.get_fields("Record-Route") == [routes]
    assert len(ringing.record_routes) == 300


def test_answer_ack_bye() -> None:
    call = session()
    call.start()
    outputs = call.answer(b"v=0\r\n", 10.0)
    [ok] = replies(outputs)
    assert CallAnswered() in outputs
    assert ok.status == 200
    assert ok.body == b"v=0\r\n"
    assert ok.content_type == "application/sdp"
    assert str(ok.contacts[0].uri) == "sips:alice@127.0.0.1:5062"
    assert ok.to.tag == "alicetag"
    assert call.state is InviteState.ANSWERED
    ack = request("ACK", to_tag="alicetag", branch="z9hG4bKack")
    assert call.dialog.matches(ack)
    assert call.receive_ack(ack) == [CallConfirmed()]
    assert call.receive_ack(ack) == []  # retransmitted ACK absorbed
    assert call.next_deadline() is None
    bye = request("BYE", cseq=2, to_tag="alicetag", branch="z9hG4bKbye")
    outputs = call.receive_bye(bye)
    [bye_ok] = replies(outputs)
    assert bye_ok.status == 200
    assert bye_ok.cseq.method == "BYE"
    assert CallEnded(reason="remote-bye") in outputs
    assert call.state is InviteState.TERMINATED


def test_2xx_retransmitted_until_ack_then_bye_on_timeout() -> None:
    call = session()
    call.start()
    call.answer(SDP, 0.0)
    times = []
    now = 0.0
    while True:
        deadline = call.next_deadline()
        assert deadline is not None
        now = deadline
        outputs = call.handle_timer(now)
        if any(isinstance(o, Send) for o in outputs):
            break
        assert [r.status for r in replies(outputs)] == [200]
        times.append(now)
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]  # T1 doubling up to T2 (RFC 3261 §13.3.1.4)
    assert all(b - a <= 4.0 for a, b in itertools.pairwise(times))
    assert now == ACK_TIMEOUT_SECONDS
    [send] = [o for o in outputs if isinstance(o, Send)]
    assert send.request.method == "BYE"
    assert str(send.request.uri) == "sips:bob@192.0.2.1:5061"  # the remote target
    assert send.request.headers.get_all("Route") == ["<sips:proxy.example.test;lr>"]
    assert send.request.to.tag == "bobtag"
    assert send.request.from_.tag == "alicetag"
    assert CallEnded(reason="ack-timeout") in outputs


@pytest.mark.parametrize("status", [486, 603])
def test_reject(status: int) -> None:
    call = session()
    call.start()
    outputs = call.reject(status)
    [response] = replies(outputs)
    assert response.status == status
    assert CallEnded(reason="rejected", status=status) in outputs
    with pytest.raises(LocalProtocolError):
        call.answer(SDP, 0.0)


def test_cancel_while_ringing_gives_200_and_487() -> None:
    call = session()
    call.start()
    cancel = request("CANCEL")
    outputs = call.receive_cancel(cancel)
    ok, terminated = replies(outputs)
    assert (ok.status, ok.cseq.method) == (200, "CANCEL")
    assert (terminated.status, terminated.cseq.method) == (487, "INVITE")
    assert CallEnded(reason="cancelled", status=487) in outputs
    # RFC 3261 §8.2.6.2 and §9.2: the 200 to CANCEL carries the INVITE responses' To tag.
    assert ok.to.tag == terminated.to.tag == call.local_tag


def test_cancel_after_answer_changes_nothing() -> None:
    call = session()
    call.start()
    call.answer(SDP, 0.0)
    [ok] = replies(call.receive_cancel(request("CANCEL")))
    assert ok.status == 200
    assert ok.to.tag == call.local_tag
    assert call.state is InviteState.ANSWERED


def test_bye_before_answer_is_481_and_hangup_while_ringing_is_480() -> None:
    call = session()
    call.start()
    [response] = replies(call.receive_bye(request("BYE", cseq=2, to_tag="alicetag")))
    assert response.status == 481
    outputs = call.hangup()
    [rejected] = replies(outputs)
    assert rejected.status == 480


def test_local_hangup_after_confirm_sends_bye_with_next_cseq() -> None:
    call = session()
    call.start()
    call.answer(SDP, 0.0)
    call.receive_ack(request("ACK", to_tag="alicetag"))
    outputs = call.hangup()
    [send] = [o for o in outputs if isinstance(o, Send)]
    assert send.request.cseq.seq == 1
    assert send.request.top_via.transport.upper() == "TLS"
    with pytest.raises(LocalProtocolError):
        call.hangup()


def test_hangup_before_the_ack_waits_for_it() -> None:
    # RFC 3261 §15: no BYE on the confirmed dialog before the ACK for our 2xx arrived.
    call = session()
    call.start()
    call.answer(SDP, 0.0)
    assert call.hangup() == []
    assert call.hangup_pending
    assert call.state is InviteState.ANSWERED
    # The 2xx is still retransmitted meanwhile, or the caller could never confirm.
    assert [r.status for r in replies(call.handle_timer(0.5))] == [200]
    outputs = call.receive_ack(request("ACK", to_tag="alicetag"))
    assert outputs[0] == CallConfirmed()
    [send] = [o for o in outputs if isinstance(o, Send)]
    assert send.request.method == "BYE"
    assert CallEnded(reason="local-bye") in outputs
    assert call.state is InviteState.TERMINATED


def test_hangup_before_an_ack_that_never_comes_byes_at_the_ack_timeout() -> None:
    call = session()
    call.start()
    call.answer(SDP, 0.0)
    assert call.hangup() == []
    outputs = call.handle_timer(ACK_TIMEOUT_SECONDS)
    [send] = [o for o in outputs if isinstance(o, Send)]
    assert send.request.method == "BYE"
    assert call.state is InviteState.TERMINATED


def test_not_an_invite_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        InviteSession(
            request("BYE"), local_tag="t", contact="sips:a@b", sent_by="b:1", rng=random.Random(1)
        )


def test_options_response_lists_allow_and_accept() -> None:
    response = options_response(request("OPTIONS"), to_tag="x")
    assert response.status == 200
    assert "INVITE" in response.headers.get_all("Allow")
    assert response.headers.get("Accept") == "application/sdp"
    assert response.to.tag == "x"
