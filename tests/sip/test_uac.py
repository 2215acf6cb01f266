"""Calls we place, through the endpoint (sans-IO): INVITE, ACK, CANCEL, BYE and digest."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from sipua.sip import Headers, Request, Response, make_response
from sipua.sip import endpoint as endpoint_module
from sipua.sip.endpoint import CallEnded, CallEstablished, CallProgress
from sipua.sip.invite import T1_SECONDS
from sipua.sip.registration import MAX_CHALLENGES_PER_ATTEMPT, DigestResponder
from sipua.sip.uac import OutgoingCall
from tests.sip.test_endpoint import OFFER, World, link, world

ANSWER = OFFER.replace(b"40000", b"41000")


class Password:
    def reveal(self) -> str:
        return "s3cret"


def call(w: World, **kwargs: object) -> OutgoingCall:
    placed = OutgoingCall(
        target="sips:bob@example.test",
        from_uri="sips:alice@example.test",
        contact="sips:alice@127.0.0.1:5061",
        sent_by="127.0.0.1:5061",
        offer=OFFER,
        routes=("<sips:127.0.0.2:5061;lr>",),
        responder=DigestResponder(username="alice", password=Password(), rng=random.Random(3)),
        rng=random.Random(9),
    )
    w.endpoint.place_call(placed, link("flow", outbound=True), 0.0, **kwargs)  # type: ignore[arg-type]
    w.drain()
    return placed


def invites(w: World) -> list[Request]:
    return [m for _h, m in w.requests("INVITE")]


def answer(request: Request, status: int, *, tag: str = "bob9", body: bytes = b"") -> Response:
    response = make_response(request, status, to_tag=tag if status > 100 else None)
    if 200 <= status < 300:
        response.headers.add("Contact", "<sips:bob@127.0.0.3:5061>")
        response.headers.add("Record-Route", "<sips:127.0.0.2:5061;lr;r=2>")
        response.headers.add("Record-Route", "<sips:127.0.0.2:5061;lr;r=1>")
        response.headers.add("Content-Type", "application/sdp")
        response = replace(response, body=body)
    return response


def test_a_call_rings_is_answered_acked_and_ended_by_our_bye() -> None:
    w = world()
    placed = call(w, duration=5.0)
    [invite] = invites(w)
    assert invite.headers.get_all("Route") == ["<sips:127.0.0.2:5061;lr>"]
    assert invite.body == OFFER
    w.receive(answer(invite, 180), link("flow", outbound=True), now=0.1)
    assert [type(e) for e in w.events] == [CallProgress]
    w.receive(answer(invite, 200, body=ANSWER), link("flow", outbound=True), now=0.2)
    [(handle, ack)] = w.requests("ACK")
    assert handle == "flow"
    assert ack.cseq.seq == invite.cseq.seq
    assert ack.top_via.branch != invite.top_via.branch  # a 2xx ACK is its own transaction
    # §12.1.2: the route set is the Record-Route in reverse order.
    assert ack.headers.get_all("Route") == [
        "<sips:127.0.0.2:5061;lr;r=1>",
        "<sips:127.0.0.2:5061;lr;r=2>",
    ]
    assert str(ack.uri) == "sips:bob@127.0.0.3:5061"
    established = [e for e in w.events if isinstance(e, CallEstablished)]
    assert established[0].sdp == ANSWER
    w.run_until(5.3, start=0.2)
    [(_h, bye)] = w.requests("BYE")
    assert bye.to.tag == "bob9"
    w.receive(answer(bye, 200), link("flow", outbound=True), now=5.1)
    assert w.endpoint.stray_responses == 0
    ended = [e for e in w.events if isinstance(e, CallEnded)]
    assert [(e.call_id, e.reason) for e in ended] == [(placed.call_id, "local-bye")]
    assert w.endpoint.active_calls == 0


def test_a_refusal_ends_the_call_with_its_status_and_the_transaction_acks_it() -> None:
    w = world()
    call(w)
    [invite] = invites(w)
    w.receive(answer(invite, 486), link("flow", outbound=True), now=0.1)
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("refused", 486)
    [(_h, ack)] = w.requests("ACK")
    assert ack.top_via.branch == invite.top_via.branch  # §17.1.1.3: same transaction


def test_a_challenge_is_answered_once_with_a_new_invite() -> None:
    w = world()
    call(w)
    [first] = invites(w)
    challenge = answer(first, 407)
    challenge.headers.add(
        "Proxy-Authenticate", 'Digest realm="example.test", nonce="n1", algorithm=MD5, qop="auth"'
    )
    w.receive(challenge, link("flow", outbound=True), now=0.1)
    first_again, second = invites(w)
    assert first_again is first
    assert second.cseq.seq == first.cseq.seq + 1
    assert (second.headers.get("Proxy-Authorization") or "").startswith("Digest ")
    assert second.top_via.branch != first.top_via.branch
    # The same nonce challenged again: the credentials are wrong, the call is refused.
    again = answer(second, 407)
    again.headers.add(
        "Proxy-Authenticate", 'Digest realm="example.test", nonce="n1", algorithm=MD5, qop="auth"'
    )
    w.receive(again, link("flow", outbound=True), now=0.2)
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("refused", 407)


def test_ring_timeout_cancels_and_the_487_ends_the_call() -> None:
    w = world()
    call(w, ring_timeout=3.0)
    [invite] = invites(w)
    w.receive(answer(invite, 180), link("flow", outbound=True), now=0.1)
    w.run_until(3.0, start=0.1)
    [(_h, cancel)] = w.requests("CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch  # §9.1
    assert cancel.cseq.seq == invite.cseq.seq
    w.receive(answer(cancel, 200), link("flow", outbound=True), now=3.1)
    w.receive(answer(invite, 487), link("flow", outbound=True), now=3.2)
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("cancelled", 487)


def test_cancel_waits_for_a_provisional_response() -> None:
    w = world()
    placed = call(w)
    w.endpoint.hangup(placed.call_id, now=0.05)
    w.drain()
    assert not w.requests("CANCEL")  # §9.1: it could overtake the INVITE
    [invite] = invites(w)
    w.receive(answer(invite, 100), link("flow", outbound=True), now=0.1)
    assert len(w.requests("CANCEL")) == 1


def test_a_2xx_crossing_our_cancel_is_acked_and_ended_with_bye() -> None:
    w = world()
    call(w, ring_timeout=1.0)
    [invite] = invites(w)
    w.receive(answer(invite, 180), link("flow", outbound=True), now=0.1)
    w.run_until(1.0, start=0.1)
    w.receive(answer(invite, 200, body=ANSWER), link("flow", outbound=True), now=1.1)
    assert len(w.requests("ACK")) == 1
    assert len(w.requests("BYE")) == 1
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert ended.reason == "cancelled-after-answer"


def test_the_callees_bye_ends_the_call_and_a_retransmitted_2xx_gets_its_ack_again() -> None:
    w = world()
    placed = call(w)
    [invite] = invites(w)
    ok = answer(invite, 200, body=ANSWER)
    w.receive(ok, link("flow", outbound=True), now=0.1)
    w.receive(ok, link("flow", outbound=True), now=0.6)  # retransmitted 2xx
    first, second = [m for _h, m in w.requests("ACK")]
    assert first.top_via.branch == second.top_via.branch
    bye = Request(
        "BYE",
        invite.from_.uri,  # our Contact's user, as the callee addresses it
        Headers(
            [
                ("Via", "SIP/2.0/TLS 127.0.0.3:5061;branch=z9hG4bKbye1"),
                ("From", "<sips:bob@example.test>;tag=bob9"),
                ("To", f"<sips:alice@example.test>;tag={placed.local_tag}"),
                ("Call-ID", placed.call_id),
                ("CSeq", "1 BYE"),
                ("Max-Forwards", "70"),
            ]
        ),
    )
    w.receive(bye, link("flow", outbound=True), now=1.0)
    assert w.statuses("flow", "BYE") == [200]
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert ended.reason == "remote-bye"


def test_no_answer_at_all_times_out_as_408() -> None:
    # Timer B (§17.1.1.2); once a provisional came, only the ring timeout ends the wait.
    w = world()
    call(w)
    w.run_until(64 * T1_SECONDS + 1)
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("no-answer", 408)


def test_a_closed_flow_ends_the_call() -> None:
    w = world()
    placed = call(w)
    w.endpoint.connection_closed("flow", "closed by peer", 0.5)
    w.drain()
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.call_id, ended.reason) == (placed.call_id, "connection-lost: closed by peer")


def test_the_callees_refresh_is_answered_with_our_offer_as_it_was() -> None:
    w = world()
    placed = call(w)
    [invite] = invites(w)
    w.receive(answer(invite, 200, body=ANSWER), link("flow", outbound=True), now=0.1)
    update = Request(
        "UPDATE",
        invite.from_.uri,
        Headers(
            [
                ("Via", "SIP/2.0/TLS 127.0.0.3:5061;branch=z9hG4bKupd1"),
                ("From", "<sips:bob@example.test>;tag=bob9"),
                ("To", f"<sips:alice@example.test>;tag={placed.local_tag}"),
                ("Call-ID", placed.call_id),
                ("CSeq", "1 UPDATE"),
                ("Max-Forwards", "70"),
                ("Content-Type", "application/sdp"),
            ]
        ),
        ANSWER,
    )
    w.receive(update, link("flow", outbound=True), now=60.0)
    [ok] = [m for _h, m in w.sent if isinstance(m, Response) and m.cseq.method == "UPDATE"]
    assert ok.status == 200
    assert ok.body == OFFER  # our side of the session, unchanged


def challenge(request: Request, nonce: str, *, realm: str = "example.test") -> Response:
    response = answer(request, 407, tag="px")
    response.headers.add(
        "Proxy-Authenticate",
        f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, qop="auth", stale=true',
    )
    return response


def test_a_challenge_loop_ends_after_the_bound_as_refused_credentials() -> None:
    # A proxy answering every INVITE with a fresh stale nonce (or a fresh realm) would be
    # retried for ever; the call answers MAX_CHALLENGES_PER_ATTEMPT challenges, then ends.
    w = world()
    call(w)
    for n in range(10):
        latest = invites(w)[-1]
        if [e for e in w.events if isinstance(e, CallEnded)]:
            break
        realm = f"r{n}" if n % 2 else "example.test"
        w.receive(challenge(latest, f"n{n}", realm=realm), link("flow", outbound=True), 0.1 * n)
    assert len(invites(w)) == 1 + MAX_CHALLENGES_PER_ATTEMPT
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("refused", 407)
    assert "credentials were refused" in ended.phrase
    assert w.endpoint.active_calls == 0


def test_a_challenge_after_a_cancel_before_any_provisional_ends_the_call() -> None:
    # The ring timeout (or SIGINT) came while the INVITE had no 1xx: no CANCEL could go out,
    # and the challenge must not start a new INVITE (§9.1).
    w = world()
    call(w, ring_timeout=1.0)
    w.run_until(1.0)
    [invite] = invites(w)
    w.receive(challenge(invite, "n1"), link("flow", outbound=True), 1.1)
    assert len(invites(w)) == 1
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.reason, ended.status) == ("cancelled", 407)
    assert w.endpoint.active_calls == 0


def test_a_cancel_without_its_487_ends_the_call_after_64_t1_and_frees_the_flow() -> None:
    # §9.1: a callee that never answers the cancelled INVITE must not hold the call for ever.
    w = world()
    call(w, ring_timeout=1.0)
    [invite] = invites(w)
    w.receive(answer(invite, 180), link("flow", outbound=True), now=0.1)
    w.run_until(1.0, start=0.1)
    [(_h, cancel)] = w.requests("CANCEL")
    w.receive(answer(cancel, 200), link("flow", outbound=True), now=1.1)
    w.run_until(1.0 + 64 * T1_SECONDS - 0.1, start=1.1)
    assert not [e for e in w.events if isinstance(e, CallEnded)]
    w.run_until(1.0 + 64 * T1_SECONDS, start=1.1)
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert ended.reason == "cancelled"
    assert w.endpoint.active_calls == 0
    assert w.endpoint.next_deadline() is None  # nothing left: the INVITE transaction is gone
    assert w.in_use[-1] == ("flow", False)
    # A late 487 matches nothing now.
    w.receive(answer(invite, 487), link("flow", outbound=True), now=40.0)
    assert w.endpoint.stray_responses == 1


def test_a_hangup_while_the_cancel_waits_ends_the_call_at_once() -> None:
    w = world()
    placed = call(w, ring_timeout=1.0)
    [invite] = invites(w)
    w.receive(answer(invite, 180), link("flow", outbound=True), now=0.1)
    w.run_until(1.0, start=0.1)
    w.endpoint.hangup(placed.call_id, now=2.0)
    w.drain()
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert ended.reason == "cancelled"
    assert w.endpoint.active_calls == 0
    assert len(w.requests("CANCEL")) == 1


@pytest.mark.parametrize("ended_by", ["hangup", "64-t1"])
def test_a_2xx_that_crossed_our_cancel_after_the_call_ended_is_acked_and_ended(
    ended_by: str,
) -> None:
    # §9.1, §13.2.2.4: ended without its 487 (a second hangup, as SIGINT does, or 64·T1 with
    # no 487), the call may still be answered by a 2xx that crossed the CANCEL: it gets its
    # ACK and a BYE, instead of being dropped as stray while the callee rings on.
    w = world()
    placed = call(w, ring_timeout=1.0)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    w.receive(answer(invite, 180), flow, now=0.1)
    w.run_until(1.0, start=0.1)
    assert len(w.requests("CANCEL")) == 1
    if ended_by == "hangup":
        w.endpoint.hangup(placed.call_id, now=1.02)
        w.drain()
        late = 1.05
    else:
        w.run_until(1.0 + 64 * T1_SECONDS, start=1.0)
        late = 1.0 + 64 * T1_SECONDS + 0.5
    assert [e.reason for e in w.events if isinstance(e, CallEnded)] == ["cancelled"]
    w.receive(answer(invite, 200, body=ANSWER), flow, now=late)
    assert len(w.requests("ACK")) == 1
    assert len(w.requests("BYE")) == 1
    assert w.endpoint.stray_responses == 0


def test_the_callees_first_request_sets_its_cseq_whatever_the_number() -> None:
    # §8.1.1.5 allows any CSeq below 2**31, 0 included; §12.1.2/§12.2.2: the remote number is
    # empty until the callee's first request sets it. A BYE with CSeq 0 got a 500 and the call
    # went on.
    w = world()
    placed = call(w)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    w.receive(answer(invite, 200, body=ANSWER), flow, now=0.1)
    w.receive(callee_request(placed, "BYE", 0), flow, now=1.0)
    assert w.statuses("flow", "BYE") == [200]
    assert [e.reason for e in w.events if isinstance(e, CallEnded)] == ["remote-bye"]


def forked(request: Request, tag: str, contact: str) -> Response:
    response = make_response(request, 200, to_tag=tag)
    response.headers.add("Contact", f"<{contact}>")
    response.headers.add("Content-Type", "application/sdp")
    return replace(response, body=ANSWER)


def test_a_2xx_from_another_fork_gets_its_own_ack_and_a_bye() -> None:
    # §13.2.2.4: each 2xx with another To tag is its own dialog; sipua keeps the first.
    w = world()
    placed = call(w)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    w.receive(forked(invite, "b1", "sips:bob1@127.0.0.3:5061"), flow, now=0.1)
    w.receive(forked(invite, "b2", "sips:bob2@127.0.0.4:5061"), flow, now=0.2)
    w.receive(forked(invite, "b2", "sips:bob2@127.0.0.4:5061"), flow, now=0.7)  # again
    acks = [m for _h, m in w.requests("ACK")]
    assert [(a.to.tag, str(a.uri)) for a in acks] == [
        ("b1", "sips:bob1@127.0.0.3:5061"),
        ("b2", "sips:bob2@127.0.0.4:5061"),
        ("b2", "sips:bob2@127.0.0.4:5061"),
    ]
    assert acks[1].top_via.branch == acks[2].top_via.branch  # the same ACK again
    [(_h, bye)] = w.requests("BYE")
    assert (bye.to.tag, str(bye.uri)) == ("b2", "sips:bob2@127.0.0.4:5061")
    assert bye.cseq.seq > invite.cseq.seq
    assert len([e for e in w.events if isinstance(e, CallEstablished)]) == 1
    assert placed.dialog is not None
    assert placed.dialog.remote_tag == "b1"
    assert w.endpoint.active_calls == 1


def test_a_2xx_through_a_strict_router_is_acked_and_byed_as_12_2_1_1_says() -> None:
    w = world()
    placed = call(w, duration=1.0)
    [invite] = invites(w)
    ok = make_response(invite, 200, to_tag="b1")
    ok.headers.add("Contact", "<sips:bob@127.0.0.3:5061>")
    ok.headers.add("Record-Route", "<sips:127.0.0.2:5061>")  # RFC 2543 proxy: no ;lr
    w.receive(ok, link("flow", outbound=True), now=0.1)
    w.run_until(1.2, start=0.1)
    [(_h, ack)] = w.requests("ACK")
    [(_h, bye)] = w.requests("BYE")
    for request in (ack, bye):
        assert str(request.uri) == "sips:127.0.0.2:5061"
        assert request.headers.get_all("Route") == ["<sips:bob@127.0.0.3:5061>"]
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert (ended.call_id, ended.reason) == (placed.call_id, "local-bye")


def test_a_2xx_without_a_usable_dialog_is_still_acked_and_the_call_fails() -> None:
    for to_tag, contact in ((None, "<sips:bob@127.0.0.3:5061>"), ("b1", None), ("b1", "<tel:1>")):
        w = world()
        call(w)
        [invite] = invites(w)
        ok = make_response(invite, 200, to_tag=to_tag)
        if contact is not None:
            ok.headers.add("Contact", contact)
        w.receive(ok, link("flow", outbound=True), now=0.1)
        [(handle, ack)] = w.requests("ACK")
        assert handle == "flow"
        assert ack.uri == invite.uri
        assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
        assert ack.to.tag == to_tag
        assert ack.cseq.seq == invite.cseq.seq
        assert ack.top_via.branch != invite.top_via.branch
        [ended] = [e for e in w.events if isinstance(e, CallEnded)]
        assert ended.reason.startswith("protocol-error")
        assert "cannot be ended with a BYE" in ended.reason
        assert not w.requests("BYE")


def callee_request(placed: OutgoingCall, method: str, cseq: int, body: bytes = b"") -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TLS 127.0.0.3:5061;branch=z9hG4bK{method}{cseq}"),
            ("From", "<sips:bob@example.test>;tag=bob9"),
            ("To", f"<sips:alice@example.test>;tag={placed.local_tag}"),
            ("Call-ID", placed.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
        ]
    )
    if body:
        headers.add("Content-Type", "application/sdp")
    return Request(method, placed.invite.from_.uri, headers, body)


def test_a_bye_whose_cseq_went_backwards_gets_500_and_the_call_goes_on() -> None:
    # RFC 3261 §12.2.2: a request with a lower CSeq than the dialog's is answered 500.
    w = world()
    placed = call(w)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    w.receive(answer(invite, 200, body=ANSWER), flow, now=0.1)
    w.receive(callee_request(placed, "UPDATE", 10, ANSWER), flow, now=1.0)
    w.receive(callee_request(placed, "BYE", 5), flow, now=2.0)
    assert w.statuses("flow", "BYE") == [500]
    assert not [e for e in w.events if isinstance(e, CallEnded)]
    assert w.endpoint.active_calls == 1
    w.receive(callee_request(placed, "BYE", 11), flow, now=3.0)
    assert w.statuses("flow", "BYE") == [500, 200]
    [ended] = [e for e in w.events if isinstance(e, CallEnded)]
    assert ended.reason == "remote-bye"


def test_a_2xx_from_another_fork_after_a_crossed_cancel_is_ended_too() -> None:
    w = world()
    call(w, ring_timeout=1.0)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    w.receive(answer(invite, 180), flow, now=0.1)
    w.run_until(1.0, start=0.1)
    w.receive(forked(invite, "b1", "sips:bob1@127.0.0.3:5061"), flow, now=1.1)
    w.receive(forked(invite, "b2", "sips:bob2@127.0.0.4:5061"), flow, now=1.2)
    assert [m.to.tag for _h, m in w.requests("ACK")] == ["b1", "b2"]
    assert [m.to.tag for _h, m in w.requests("BYE")] == ["b1", "b2"]


def test_a_2xx_retransmitted_after_our_bye_still_gets_its_ack_until_64_t1() -> None:
    # RFC 6026 Timer M: the callee retransmits its 2xx until our ACK reaches it, even after
    # we hung up; each gets the same ACK, for 64·T1 after the end.
    w = world()
    placed = call(w)
    [invite] = invites(w)
    flow = link("flow", outbound=True)
    ok = answer(invite, 200, body=ANSWER)
    w.receive(ok, flow, now=0.1)
    w.endpoint.hangup(placed.call_id, now=0.2)
    w.drain()
    assert len(w.requests("BYE")) == 1
    w.receive(ok, flow, now=0.6)
    w.receive(ok, flow, now=1.6)
    acks = [m for _h, m in w.requests("ACK")]
    assert len(acks) == 3
    assert {a.top_via.branch for a in acks} == {acks[0].top_via.branch}
    assert len(w.requests("BYE")) == 1  # the retransmissions end nothing more
    w.receive(ok, flow, now=0.2 + 64 * T1_SECONDS + 1)
    assert len(w.requests("ACK")) == 3  # forgotten after 64·T1


def test_ended_calls_kept_for_their_2xx_are_bounded_the_oldest_forgotten_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endpoint_module, "MAX_ANSWERED_KEPT", 2)
    w = world()
    flow = link("flow", outbound=True)
    oks = []
    for seed in range(3):
        placed = OutgoingCall(
            target="sips:bob@example.test",
            from_uri="sips:alice@example.test",
            contact="sips:alice@127.0.0.1:5061",
            sent_by="127.0.0.1:5061",
            offer=OFFER,
            rng=random.Random(100 + seed),
        )
        w.endpoint.place_call(placed, flow, 0.0)
        w.drain()
        ok = answer(placed.invite, 200, body=ANSWER)
        w.receive(ok, flow, now=0.1)
        w.endpoint.hangup(placed.call_id, now=0.2)
        w.drain()
        oks.append(ok)
    assert len(w.requests("ACK")) == 3
    for ok in oks:
        w.receive(ok, flow, now=1.0)
    acked = [m.call_id for _h, m in w.requests("ACK")[3:]]
    assert acked == [oks[1].call_id, oks[2].call_id]  # the first call was forgotten
