"""The SIP endpoint (sans-IO): every behaviour with a given `now`, no sockets, no clock.

Each test feeds requests as a caller would send them (a fresh branch per request, as RFC 3261
§8.1.1.7 requires) and reads what the endpoint wants sent, on which connection.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest

from sipua.sip import Request, Response, parse_message, serialize
from sipua.sip.endpoint import (
    MAX_CALLS_PER_SOURCE,
    AnswerPolicy,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallIncoming,
    ConnectionInUse,
    Endpoint,
    EndpointEvent,
    Link,
    RequestRefused,
    Send,
)
from sipua.sip.invite import ACK_TIMEOUT_SECONDS, T1_SECONDS
from sipua.ua.call_media import MediaDescriber

OFFER = (
    b"v=0\r\no=bob 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)
_branches = itertools.count()


def link(handle: str = "c1", peer: str = "127.0.0.2:40000", **flags: bool) -> Link[str]:
    return Link(
        handle=handle,
        peer=peer,
        local="127.0.0.1:5061",
        contact="sips:alice@127.0.0.1:5061",
        **flags,
    )


def request(
    method: str,
    *,
    call_id: str = "call-1",
    cseq: int = 1,
    from_tag: str = "bob1",
    to_tag: str | None = None,
    branch: str | None = None,
    uri: str = "sips:alice@127.0.0.1:5061",
    body: bytes = b"",
    extra: tuple[str, ...] = (),
) -> Request:
    """A request as a caller sends it; every call makes a new branch unless one is given."""
    to = "<sips:alice@example.test>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/TLS 127.0.0.2:40000;branch={branch or f'z9hG4bKe{next(_branches)}'}",
        "Max-Forwards: 70",
        f"From: <sips:bob@example.test>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",  # ACK and CANCEL reuse the INVITE's number (§13.2.2.4, §9.1)
        "Contact: <sips:bob@127.0.0.2:40000>",
        *extra,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    raw = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def ack_for(ok: Response, *, call_id: str = "call-1", body: bytes = b"") -> Request:
    return request("ACK", call_id=call_id, to_tag=ok.to.tag, body=body)


@dataclass
class World:
    """An endpoint and everything it emitted, split by kind."""

    endpoint: Endpoint[str]
    sent: list[tuple[str, Request | Response]] = field(default_factory=list)
    events: list[EndpointEvent[str]] = field(default_factory=list)
    in_use: list[tuple[str, bool]] = field(default_factory=list)  # ConnectionInUse, in order

    def drain(self) -> None:
        while (event := self.endpoint.next_event()) is not None:
            if isinstance(event, Send):
                self.sent.append((event.handle, event.message))
            elif isinstance(event, ConnectionInUse):
                self.in_use.append((event.handle, event.in_use))
            else:
                self.events.append(event)

    def receive(self, message: Request | Response, on: Link[str], now: float) -> None:
        self.endpoint.receive(message, on, now)
        self.drain()

    def timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.drain()

    def run_until(self, until: float, start: float = 0.0) -> None:
        """Fires every deadline up to `until`, as the user agent's pump would."""
        now = start
        while (deadline := self.endpoint.next_deadline()) is not None and deadline <= until:
            now = max(now, deadline)
            self.timer(now)

    def statuses(self, handle: str = "c1", method: str | None = None) -> list[int]:
        return [
            m.status
            for h, m in self.sent
            if h == handle and isinstance(m, Response) and method in (None, m.cseq.method)
        ]

    def requests(self, method: str) -> list[tuple[str, Request]]:
        return [(h, m) for h, m in self.sent if isinstance(m, Request) and m.method == method]

    def last(self, status: int) -> Response:
        return [m for _h, m in self.sent if isinstance(m, Response) and m.status == status][-1]

    def of(self, kind: type[object]) -> list[EndpointEvent[str]]:
        return [e for e in self.events if isinstance(e, kind)]


def world(**policy: object) -> World:
    rng = random.Random(7)
    endpoint: Endpoint[str] = Endpoint(
        policy=AnswerPolicy(**policy),  # type: ignore[arg-type]
        describer=MediaDescriber(rng),
        rng=rng,
        users=frozenset({"alice"}),
    )
    return World(endpoint)


# -- a call's life ---------------------------------------------------------------------------


def test_invite_rings_then_is_answered_confirmed_and_ended_by_bye() -> None:
    w = world(delay=1.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    assert w.statuses() == [100, 180]
    assert [type(e) for e in w.events] == [CallIncoming]
    assert w.endpoint.next_deadline() == 1.0
    w.timer(1.0)
    ok = w.last(200)
    assert b"m=audio 4000 RTP/AVP 0" in ok.body
    assert ok.to.tag == w.last(180).to.tag
    w.receive(ack_for(ok), link(), now=1.1)
    w.receive(request("BYE", cseq=2, to_tag=ok.to.tag), link(), now=5.0)
    assert w.statuses(method="BYE") == [200]
    assert [type(e) for e in w.events] == [CallIncoming, CallAnswered, CallConfirmed, CallEnded]
    assert w.endpoint.active_calls == 0


def test_end_call_ends_a_call_from_our_side_as_its_state_allows_with_the_reason() -> None:
    # The user agent ends a call whose media failed: 480 while it rings, a BYE once it is up,
    # and a BYE only after the ACK when our 2xx is not acknowledged yet (§15); the reason is
    # the call's end reason every time.
    w = world(delay=1.0)
    w.receive(request("INVITE", body=OFFER, call_id="ringing"), link(), now=0.0)
    (ringing,) = w.of(CallIncoming)
    assert isinstance(ringing, CallIncoming)
    w.endpoint.end_call(ringing.tag, "media-failed: X", now=0.5)
    w.drain()
    assert w.statuses(method="INVITE")[-1] == 480
    w.receive(request("INVITE", body=OFFER, call_id="up"), link(), now=1.0)
    w.timer(2.0)
    ok = w.last(200)
    assert ok.call_id == "up"
    assert ok.to.tag is not None
    w.endpoint.end_call(ok.to.tag, "media-failed: Y", now=2.1)
    w.drain()
    assert w.requests("BYE") == []  # not before the caller's ACK (§15)
    w.receive(ack_for(ok, call_id="up"), link(), now=2.2)
    assert [m.call_id for _h, m in w.requests("BYE")] == ["up"]
    reasons = [(e.call_id, e.reason) for e in w.of(CallEnded) if isinstance(e, CallEnded)]
    assert reasons == [("ringing", "media-failed: X"), ("up", "media-failed: Y")]
    w.endpoint.end_call(ok.to.tag, "again", now=3.0)  # an ended call: nothing more
    w.endpoint.end_call("no-such-tag", "again", now=3.0)
    w.drain()
    assert len(w.requests("BYE")) == 1
    assert w.endpoint.active_calls == 0


def test_a_connection_is_in_use_while_it_carries_a_call_or_a_transaction() -> None:
    # The user agent suspends the idle timeout of a connection in use: a call without session
    # timers sends nothing on it for as long as it lasts.
    w = world(delay=0.0)
    w.receive(request("OPTIONS", call_id="o"), link("c2"), now=0.0)
    assert w.in_use == [("c2", True), ("c2", False)]  # its transaction ended with the 200
    ok = confirmed_call(w)
    assert w.in_use[2:] == [("c1", True)]
    w.run_until(600.0, start=0.1)  # a long call: no SIP at all
    assert w.in_use[2:] == [("c1", True)]
    w.receive(request("BYE", cseq=2, to_tag=ok.to.tag), link(), now=600.0)
    assert w.in_use[2:] == [("c1", True), ("c1", False)]
    assert w.endpoint.active_calls == 0


def test_a_closed_connection_is_no_longer_in_use() -> None:
    w = world(delay=0.0)
    confirmed_call(w)
    w.receive(request("INVITE", body=OFFER, call_id="other"), link("c2"), now=0.2)
    w.endpoint.connection_closed("c1", "reset", now=1.0)
    w.drain()
    assert w.in_use == [("c1", True), ("c2", True), ("c1", False)]
    w.endpoint.connection_closed("c2", "reset", now=1.0)
    w.drain()
    assert w.in_use[-1] == ("c2", False)
    assert w.endpoint.active_calls == 0


def test_retransmitted_invite_gets_the_last_provisional_from_its_transaction() -> None:
    w = world()
    invite = request("INVITE", branch="z9hG4bKsame", body=OFFER)
    w.receive(invite, link(), now=0.0)
    w.receive(invite, link(), now=0.5)  # the same request again (RFC 3261 §17.2.1)
    assert w.statuses() == [100, 180, 180]
    assert len(w.of(CallIncoming)) == 1


def test_retransmission_on_another_connection_is_answered_there() -> None:
    w = world(delay=1.0)
    invite = request("INVITE", branch="z9hG4bKmoved", body=OFFER)
    w.receive(invite, link("c1"), now=0.0)
    w.receive(invite, link("c2", peer="127.0.0.2:40001"), now=0.5)
    assert w.statuses("c2") == [180]  # RFC 3261 §18.2.2: where the request came in


def test_merged_invite_gets_482_and_another_from_tag_is_a_new_call() -> None:
    w = world()
    w.receive(request("INVITE", branch="z9hG4bKone", body=OFFER), link(), now=0.0)
    w.receive(request("INVITE", branch="z9hG4bKtwo", body=OFFER), link(), now=0.1)
    assert w.statuses() == [100, 180, 482]  # §8.2.2.2: same From tag, Call-ID and CSeq
    w.receive(request("INVITE", from_tag="carol1", body=OFFER), link("c2"), now=0.2)
    assert w.statuses("c2") == [100, 180]
    assert w.endpoint.active_calls == 2


def test_cancel_gets_200_and_the_invite_487_each_on_its_own_connection() -> None:
    w = world(delay=5.0)
    w.receive(request("INVITE", branch="z9hG4bKc", body=OFFER), link("c1"), now=0.0)
    w.receive(request("CANCEL", branch="z9hG4bKc"), link("c2", peer="127.0.0.2:40001"), now=1.0)
    assert w.statuses("c2", "CANCEL") == [200]
    assert w.statuses("c1", "INVITE") == [100, 180, 487]
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert (ended.reason, ended.status) == ("cancelled", 487)
    # A CANCEL whose branch matches no INVITE (§9.2).
    w.receive(request("CANCEL", branch="z9hG4bKnone"), link("c1"), now=2.0)
    assert w.statuses("c1", "CANCEL") == [481]


def test_invite_without_offer_gets_ours_and_the_ack_carries_the_answer() -> None:
    w = world(delay=0.0)
    w.receive(request("INVITE"), link(), now=0.0)
    w.timer(0.0)
    ok = w.last(200)
    assert b"m=audio 4000 RTP/AVP 0 8 101" in ok.body  # RFC 3261 §13.3.1.4
    w.receive(ack_for(ok, body=OFFER), link(), now=0.1)
    assert w.of(CallConfirmed)


# -- the checks of §8.2, in order ------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "status", "header"),
    [
        (request("SUBSCRIBE"), 405, "Allow"),
        (request("FROBNICATE"), 501, None),
        (request("INVITE", uri="tel:+15551234", body=OFFER), 416, "Unsupported"),
        (request("INVITE", uri="sips:mallory@127.0.0.1", body=OFFER), 404, None),
        (
            request("INVITE", body=OFFER, extra=("Content-Encoding: gzip",)),
            415,
            "Accept-Encoding",
        ),
        (request("INVITE", body=OFFER.replace(b"40000", b"70000")), 488, "Warning"),
        (request("INVITE", body=OFFER.replace(b"RTP/AVP 0 8", b"RTP/AVP 18")), 488, "Warning"),
    ],
    ids=["405", "501", "416", "404", "415-encoding", "488-bad-sdp", "488"],
)
def test_each_check_answers_with_its_status(
    message: Request, status: int, header: str | None
) -> None:
    w = world()
    w.receive(message, link(), now=0.0)
    assert w.statuses() == [status]
    if header is not None:
        assert w.last(status).headers.get(header)
    assert not w.of(CallIncoming)
    [refused] = w.of(RequestRefused)
    assert isinstance(refused, RequestRefused)
    assert refused.status == status


def test_a_request_uri_without_user_names_the_device() -> None:
    w = world()
    w.receive(request("OPTIONS", uri="sips:127.0.0.1:5061"), link(), now=0.0)
    assert w.statuses() == [200]


def test_max_forwards_zero_is_processed_by_its_final_recipient() -> None:
    w = world()
    invite = parse_message(
        serialize(request("INVITE", body=OFFER)).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    )
    assert isinstance(invite, Request)
    w.receive(invite, link(), now=0.0)
    assert w.statuses() == [100, 180]  # RFC 4475 §3.3.11


def test_a_malformed_request_at_the_cap_gets_its_own_status_not_486() -> None:
    w = world(delay=60.0)
    for i in range(MAX_CALLS_PER_SOURCE):
        w.receive(request("INVITE", call_id=f"f{i}", body=OFFER), link(f"f{i}"), now=0.0)
    w.receive(request("INVITE", call_id="over", body=OFFER), link("over"), now=0.0)
    assert w.statuses("over") == [486]
    bad = request("INVITE", call_id="bad", body=OFFER.replace(b"40000", b"\xc2\xb2000"))
    w.receive(bad, link("bad"), now=0.0)
    assert w.statuses("bad") == [488]


def test_one_source_cannot_take_every_slot_but_our_flows_and_servers_can() -> None:
    w = world(delay=60.0)
    for i in range(MAX_CALLS_PER_SOURCE):
        w.receive(request("INVITE", call_id=f"f{i}", body=OFFER), link(f"f{i}"), now=0.0)
    w.receive(request("INVITE", call_id="f-over", body=OFFER), link("over"), now=0.0)
    assert w.statuses("over") == [486]
    other = link("other", peer="127.0.0.3:40000")
    w.receive(request("INVITE", call_id="o", body=OFFER), other, now=0.0)
    assert w.statuses("other") == [100, 180]
    flow = link("flow", outbound=True)
    w.receive(request("INVITE", call_id="r1", body=OFFER), flow, now=0.0)
    assert w.statuses("flow") == [100, 180]
    server = link("server", server=True)
    w.receive(request("INVITE", call_id="r2", body=OFFER), server, now=0.0)
    assert w.statuses("server") == [100, 180]


# -- a peer that is gone holds nothing -------------------------------------------------------


def test_a_closed_connection_ends_its_ringing_call_at_once() -> None:
    w = world(delay=30.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    w.endpoint.connection_closed("c1", "closed by peer", now=0.2)
    w.drain()
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason == "connection-lost: closed by peer"
    assert w.endpoint.active_calls == 0
    assert w.endpoint.next_deadline() is None  # nothing left to ring, no transaction left
    w.run_until(60.0)
    assert w.statuses() == [100, 180]


# -- what we send: BYEs in client transactions -----------------------------------------------


def test_hangup_after_sends_bye_in_a_transaction_whose_answer_is_consumed() -> None:
    w = world(delay=0.0, hangup_after=10.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    w.timer(0.0)
    w.receive(ack_for(w.last(200)), link(), now=0.1)
    w.run_until(10.0)
    [(handle, bye)] = w.requests("BYE")
    assert handle == "c1"
    assert bye.top_via.branch.startswith("z9hG4bK")
    ok = parse_message(serialize(bye).split(b"\r\n", 1)[1].join([b"SIP/2.0 200 OK\r\n", b""]))
    assert isinstance(ok, Response)
    w.receive(ok, link(), now=10.1)
    assert w.endpoint.stray_responses == 0
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason == "local-bye"


def test_a_bye_never_answered_times_out_and_leaves_nothing() -> None:
    w = world(delay=0.0, hangup_after=1.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    w.timer(0.0)
    w.receive(ack_for(w.last(200)), link(), now=0.1)
    w.run_until(200.0)
    assert len(w.requests("BYE")) == 1
    assert w.endpoint.next_deadline() is None  # Timer F fired; the table is empty


def test_no_ack_means_2xx_retransmissions_then_a_bye() -> None:
    w = world(delay=0.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    w.timer(0.0)
    w.run_until(ACK_TIMEOUT_SECONDS + 1)
    assert w.statuses().count(200) >= 6  # T1, 2*T1, 4*T1, ... capped at T2
    assert len(w.requests("BYE")) == 1
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason == "ack-timeout"
    assert T1_SECONDS == 0.5


def test_shutdown_hangs_up_each_call_as_its_state_allows() -> None:
    w = world(delay=0.0)
    w.receive(request("INVITE", call_id="up", body=OFFER), link("up"), now=0.0)
    w.timer(0.0)
    w.receive(ack_for(w.last(200), call_id="up"), link("up"), now=0.1)
    w.receive(request("INVITE", call_id="answered", body=OFFER), link("ans"), now=0.2)
    w.timer(0.2)
    ok = w.last(200)
    w.endpoint.policy = AnswerPolicy(delay=60.0)
    w.receive(request("INVITE", call_id="ringing", body=OFFER), link("ring"), now=0.3)
    w.endpoint.hangup_all(now=1.0)
    w.drain()
    assert [h for h, _bye in w.requests("BYE")] == ["up"]
    assert w.statuses("ring") == [100, 180, 480]
    assert w.endpoint.unacknowledged_hangups == 1  # its BYE waits for the ACK (§15)
    w.receive(ack_for(ok, call_id="answered"), link("ans"), now=1.5)
    assert [h for h, _bye in w.requests("BYE")] == ["up", "ans"]
    assert w.endpoint.unacknowledged_hangups == 0


def test_a_bye_that_cannot_be_built_ends_only_its_call() -> None:
    w = world(delay=0.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    w.timer(0.0)
    w.receive(ack_for(w.last(200)), link(), now=0.1)
    [call] = w.endpoint._calls.values()
    call.session.dialog.route_set = ["<tel:+1234>"]  # a backstop: checked on arrival
    w.endpoint.hangup_all(now=1.0)
    w.drain()
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason.startswith("protocol-error")
    w.receive(request("OPTIONS", call_id="o"), link(), now=2.0)
    assert w.statuses(method="OPTIONS") == [200]


def test_ack_and_responses_that_match_nothing_are_dropped() -> None:
    w = world()
    w.receive(request("ACK", to_tag="nope"), link(), now=0.0)
    assert w.sent == []
    [dropped] = w.of(RequestRefused)
    assert isinstance(dropped, RequestRefused)
    assert dropped.status is None
    stray = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKnot-ours\r\n"
        b"From: <sips:a@x>;tag=1\r\nTo: <sips:b@x>;tag=2\r\nCall-ID: s\r\nCSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    w.receive(stray, link(), now=0.0)
    assert w.endpoint.stray_responses == 1


# -- refreshes: re-INVITE, UPDATE, session timers (RFC 3311, RFC 4028) -----------------------


def confirmed_call(w: World, *extra: str) -> Response:
    w.receive(request("INVITE", body=OFFER, extra=extra), link(), now=0.0)
    w.timer(0.0)
    ok = w.last(200)
    w.receive(ack_for(ok), link(), now=0.1)
    return ok


def test_a_refresh_without_change_gets_our_sdp_again_and_a_change_488() -> None:
    w = world(delay=0.0)
    ok = confirmed_call(w)
    w.receive(request("UPDATE", cseq=2, to_tag=ok.to.tag), link(), now=1.0)
    assert w.last(200).cseq.method == "UPDATE"
    assert w.last(200).body == ok.body  # no offer: ours, as it was
    w.receive(request("INVITE", cseq=3, to_tag=ok.to.tag, body=OFFER), link(), now=2.0)
    assert w.last(200).cseq.seq == 3
    assert w.last(200).body == ok.body
    changed = OFFER.replace(b"o=bob 1 1 ", b"o=bob 1 2 ")
    w.receive(request("UPDATE", cseq=4, to_tag=ok.to.tag, body=changed), link(), now=3.0)
    assert w.statuses(method="UPDATE") == [200, 488]
    assert w.endpoint.active_calls == 1  # the session goes on unchanged (RFC 3264 §8)


def test_a_refresh_before_the_call_is_up_is_491() -> None:
    w = world(delay=10.0)
    w.receive(request("INVITE", body=OFFER), link(), now=0.0)
    tag = w.last(180).to.tag
    w.receive(request("UPDATE", cseq=2, to_tag=tag), link(), now=1.0)
    assert w.statuses(method="UPDATE") == [491]


def test_session_timers_are_granted_refreshed_and_end_an_unrefreshed_call() -> None:
    w = world(delay=0.0)
    ok = confirmed_call(w)
    too_short = request("UPDATE", cseq=2, to_tag=ok.to.tag, extra=("Session-Expires: 60",))
    w.receive(too_short, link(), now=1.0)
    assert w.last(422).headers.get("Min-SE") == "90"
    granted = request("UPDATE", cseq=3, to_tag=ok.to.tag, extra=("Session-Expires: 120",))
    w.receive(granted, link(), now=2.0)
    answer = w.last(200)
    assert answer.headers.get("Session-Expires") == "120;refresher=uac"
    assert answer.headers.get("Require") == "timer"
    # Refreshed in time: the expiry moves on.
    again = request("UPDATE", cseq=4, to_tag=ok.to.tag, extra=("Session-Expires: 120",))
    w.receive(again, link(), now=100.0)
    w.run_until(219.0, start=100.0)
    assert not w.requests("BYE")
    # Not refreshed: the call is over at the expiry (RFC 4028 §10).
    w.run_until(221.0, start=219.0)
    assert len(w.requests("BYE")) == 1
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason == "session-expired"


def test_an_invite_asking_for_session_timers_gets_them_in_its_200() -> None:
    w = world(delay=0.0)
    ok = confirmed_call(w, "Supported: timer", "Session-Expires: 1800")
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    w.run_until(1801.0, start=0.1)
    [ended] = w.of(CallEnded)
    assert isinstance(ended, CallEnded)
    assert ended.reason == "session-expired"


def test_a_required_extension_sipua_does_not_know_is_420() -> None:
    w = world()
    w.receive(request("INVITE", body=OFFER, extra=("Require: 100rel",)), link(), now=0.0)
    assert w.statuses() == [420]
    assert w.last(420).headers.get("Unsupported") == "100rel"
