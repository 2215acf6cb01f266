"""Calls sipua places, end to end over loopback TLS, against a callee that misbehaves.

The far side is `tests.support.registrar.TestRegistrar` (it registers the account) with a
scripted answer to the INVITE: every response goes back on sipua's own flow, as a proxy's
would. Each test bounds its wait; a call that never ends fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import trio

from sipua.commands.call import _call
from sipua.media.rtp import RtpPacket, build_rtp
from sipua.sip import Request, Response, make_response
from sipua.sip.registration import MAX_CHALLENGES_PER_ATTEMPT
from sipua.sip.serializer import serialize
from sipua.ua.agent import UserAgent
from sipua.ua.calls import PlacedCall
from tests.support.registrar import TestRegistrar, _Flow
from tests.ua.test_agent import settings, wait_until

Script = Callable[["Callee", _Flow, Request], Awaitable[None]]


class Callee(TestRegistrar):
    """A registrar whose INVITEs are answered by `on_invite`, and other requests by `on`'s
    script for their method (else 200)."""

    def __init__(self, on_invite: Script, **on: Script) -> None:
        super().__init__()
        self.on_invite = on_invite
        self.on = on
        self.seen: list[Request] = []

    def of(self, method: str) -> list[Request]:
        return [m for m in self.seen if m.method == method]

    async def _handle(self, flow: _Flow, message: Request | Response) -> None:
        if isinstance(message, Request) and message.method != "REGISTER":
            self.seen.append(message)
            assert self._nursery is not None
            if message.method == "INVITE" and message.to.tag is None:
                self._nursery.start_soon(self.on_invite, self, flow, message)
                return
            script = self.on.get(message.method)
            if script is not None:
                self._nursery.start_soon(script, self, flow, message)
                return
            if message.method == "ACK":
                return
        await super()._handle(flow, message)


async def test_a_proxy_that_challenges_every_invite_gets_a_bounded_number_of_them(
    tmp_path: Path,
) -> None:
    async def stale(callee: Callee, flow: _Flow, invite: Request) -> None:
        challenge = make_response(invite, 407, to_tag="px")
        nonce = f"n{len(callee.of('INVITE'))}"
        challenge.headers.add(
            "Proxy-Authenticate",
            f'Digest realm="example.test", nonce="{nonce}", qop="auth", stale=true',
        )
        await flow.send(challenge)

    async with Callee(stale) as callee:
        with trio.fail_after(10):
            rc = await _call(settings(tmp_path, callee), "sips:bob@example.test", 30.0, 1.0)
    assert rc != 0
    assert len(callee.of("INVITE")) == 1 + MAX_CHALLENGES_PER_ATTEMPT


async def test_a_hangup_after_a_cancel_that_gets_no_487_ends_the_call_at_once(
    tmp_path: Path,
) -> None:
    async def ring(callee: Callee, flow: _Flow, invite: Request) -> None:
        await flow.send(make_response(invite, 180, to_tag="b1"))

    async def no_487(callee: Callee, flow: _Flow, cancel: Request) -> None:
        await flow.send(make_response(cancel, 200, to_tag="b1"))  # and never a 487

    async with Callee(ring, CANCEL=no_487) as callee, UserAgent(settings(tmp_path, callee)) as ua:
        await ua.account.register()
        connection = ua.account.connection
        assert connection is not None
        call_id = ua.calls.place_call(
            connection,
            target="sips:bob@example.test",
            from_uri="sips:alice@example.test",
            responder=None,
            ring_timeout=0.3,
            duration=None,
        )
        await wait_until(lambda: bool(callee.of("CANCEL")), 5)
        ua.calls.hangup(call_id)  # what SIGINT or SIGTERM does
        with trio.fail_after(2):
            placed = await ua.calls.wait_ended(call_id)
    assert placed.outcome is not None
    assert placed.outcome.reason == "cancelled"


async def test_a_2xx_retransmitted_after_our_bye_gets_its_ack_again(tmp_path: Path) -> None:
    # RFC 6026: the callee's 2xx retransmissions outlive the call when our ACK was lost.
    ok: list[Response] = []

    async def answer(callee: Callee, flow: _Flow, invite: Request) -> None:
        ok.append(make_response(invite, 200, to_tag="b1"))
        ok[0].headers.add("Contact", "<sips:bob@127.0.0.1:5999;transport=tls>")
        await flow.send(ok[0])

    async def repeat_then_answer(callee: Callee, flow: _Flow, bye: Request) -> None:
        await flow.send(ok[0])  # after the BYE: sipua must still ACK it
        await wait_until(lambda: len(callee.of("ACK")) == 2, 3)
        await flow.send(make_response(bye, 200))

    async with Callee(answer, BYE=repeat_then_answer) as callee:
        with trio.fail_after(10):
            await _call(settings(tmp_path, callee), "sips:bob@example.test", 5.0, 0.2)
    first, second = callee.of("ACK")
    assert first.top_via.branch == second.top_via.branch
    assert len(callee.of("BYE")) == 1


def _plain_sdp(port: int) -> bytes:
    return (
        "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp-mux\r\n"
    ).encode()


def _offered_port(invite: Request) -> int:
    [line] = [ln for ln in invite.body.decode().split("\r\n") if ln.startswith("m=audio ")]
    return int(line.split()[1])


async def _play_rtp(sock: trio.socket.SocketType, port: int, ssrc: int, count: int) -> None:
    for seq in range(count):
        packet = RtpPacket(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=ssrc,
                           payload=b"\xff" * 160)  # fmt: skip
        await sock.sendto(build_rtp(packet), ("127.0.0.1", port))
        await trio.sleep(0.02)


Forks = dict[str, trio.socket.SocketType]
Heard = dict[str, list[int]]  # the payload types each fork received from sipua, in order


async def _call_two_forks(
    tmp_path: Path, answering: Callable[[Forks, Heard], Script], *, duration: float
) -> tuple[PlacedCall, dict[str, int], Heard]:
    """Places a call answered by `answering(forks, heard)`'s script from two forks, A and B
    (UDP sockets on 127.0.0.1); returns the call, the forks' ports and what each heard."""
    forks = {name: trio.socket.socket(type=trio.socket.SOCK_DGRAM) for name in "AB"}
    heard: Heard = {"A": [], "B": []}

    async def listen(name: str) -> None:
        while True:
            heard[name].append((await forks[name].recv(2048))[1] & 0x7F)

    with forks["A"], forks["B"]:
        for sock in forks.values():
            await sock.bind(("127.0.0.1", 0))
        ports = {name: sock.getsockname()[1] for name, sock in forks.items()}
        async with (
            trio.open_nursery() as listeners,
            Callee(answering(forks, heard)) as callee,
            UserAgent(settings(tmp_path, callee)) as ua,
        ):
            for name in forks:
                listeners.start_soon(listen, name)
            await ua.account.register()
            connection = ua.account.connection
            assert connection is not None
            call_id = ua.calls.place_call(
                connection,
                target="sips:bob@example.test",
                from_uri="sips:alice@example.test",
                responder=None,
                ring_timeout=5.0,
                duration=duration,
            )
            with trio.fail_after(10):
                placed = await ua.calls.wait_ended(call_id)
                await placed.media_done.wait()
            listeners.cancel_scope.cancel()
    return placed, ports, heard


def _answered_by(
    invite: Request, status: int, tag: str, sdp: bytes, *, contact: bool = False
) -> Response:
    response = make_response(invite, status, to_tag=tag)
    if contact:
        response.headers.add("Contact", "<sips:bob@127.0.0.1:5999;transport=tls>")
    response.headers.add("Content-Type", "application/sdp")
    return replace(response, body=sdp)


async def test_media_follows_the_2xx_of_another_fork_than_the_early_medias(
    tmp_path: Path,
) -> None:
    # RFC 3261 §13.2.1/§13.2.2.4: fork A's 183 starts early media; fork B answers with its own
    # SDP. The call's media must go to B (it stayed with A: B's audio was dropped as coming
    # from the wrong source, and ours went to A).
    heard_before_b: dict[str, int] = {}

    def answering(forks: Forks, heard: Heard) -> Script:
        async def answer(callee: Callee, flow: _Flow, invite: Request) -> None:
            ours = _offered_port(invite)
            port_a, port_b = (forks[n].getsockname()[1] for n in "AB")
            await flow.send(_answered_by(invite, 183, "forkA", _plain_sdp(port_a)))
            await _play_rtp(forks["A"], ours, 0xAAAA, 20)
            await flow.send(_answered_by(invite, 200, "forkB", _plain_sdp(port_b), contact=True))
            heard_before_b.update({name: len(got) for name, got in heard.items()})
            await _play_rtp(forks["B"], ours, 0xBBBB, 40)

        return answer

    placed, ports, heard = await _call_two_forks(tmp_path, answering, duration=1.6)
    report = placed.media_report
    assert report is not None
    assert report["remote"] == f"127.0.0.1:{ports['B']}"
    assert report["wrong_source"] == 0
    assert len(heard["B"]) - heard_before_b["B"] > 20
    assert len(heard["A"]) == heard_before_b["A"]  # nothing more for A once B answered


async def test_a_2xx_in_the_same_read_as_the_183_sets_the_media_up_from_its_answer(
    tmp_path: Path,
) -> None:
    # The 2xx may be handled before the early media's task has run at all: its answer (fork
    # B, PCMA) must still be the one the media takes up, although B sends nothing first.
    def answering(forks: Forks, heard: Heard) -> Script:
        async def answer(callee: Callee, flow: _Flow, invite: Request) -> None:
            port_a, port_b = (forks[n].getsockname()[1] for n in "AB")
            pcma = _plain_sdp(port_b).replace(b" RTP/AVP 0", b" RTP/AVP 8")
            pcma = pcma.replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:8 PCMA/8000")
            early = _answered_by(invite, 183, "forkA", _plain_sdp(port_a))
            ok = _answered_by(invite, 200, "forkB", pcma, contact=True)
            await flow.send(serialize(early) + serialize(ok))

        return answer

    placed, _, heard = await _call_two_forks(tmp_path, answering, duration=0.8)
    assert placed.media_report is not None
    assert placed.media_report["codec"] == "pcma"
    assert heard["A"] == []
    assert len(heard["B"]) > 20
    assert set(heard["B"]) == {8}
