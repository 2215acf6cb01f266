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
    """A registrar whose INVITEs (and CANCELs) are answered by `on_invite` (`on_cancel`)."""

    def __init__(self, on_invite: Script, on_cancel: Script | None = None) -> None:
        super().__init__()
        self.on_invite = on_invite
        self.on_cancel = on_cancel
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
            if message.method == "CANCEL" and self.on_cancel is not None:
                await self.on_cancel(self, flow, message)
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

    async with Callee(ring, no_487) as callee, UserAgent(settings(tmp_path, callee)) as ua:
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
