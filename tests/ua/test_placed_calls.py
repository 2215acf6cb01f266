"""Calls sipua places, end to end over loopback TLS, against a callee that misbehaves.

The far side is `tests.support.registrar.TestRegistrar` (it registers the account) with a
scripted answer to the INVITE: every response goes back on sipua's own flow, as a proxy's
would. Each test bounds its wait; a call that never ends fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from sipua.commands.call import _call
from sipua.sip import Request, Response, make_response
from sipua.sip.registration import MAX_CHALLENGES_PER_ATTEMPT
from sipua.ua.agent import UserAgent
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
