"""Requests and responses that do not fit a dialog or transaction, end to end over TLS.

The test registrar sends them to a registered sipua over its registration flow (RFC 5626
§5.3); after each abuse the same flow must still serve a well-formed request.
"""

from __future__ import annotations

from pathlib import Path

import trio

from sipua.sip import Response, make_response
from tests.ua.test_agent import events, wait_until
from tests.ua.test_calls import OFFER, registered_ua, request


async def test_bye_with_a_wrong_tag_is_481_and_the_call_survives(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        await flow.send(request("BYE", uri, cseq=2, to_tag="not-our-tag"))
        assert (await registrar.response(flow, method="BYE")).status == 481
        await flow.send(request("BYE", uri, call_id="no-such-call", cseq=2, to_tag=ok.to.tag))
        assert (await registrar.response(flow, method="BYE")).status == 481
        assert ua.calls.active_calls == 1
        assert not events(ua, "call-ended")


async def test_in_dialog_request_with_an_old_cseq_is_500(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, cseq=5, body=OFFER))
        ok = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, cseq=5, to_tag=ok.to.tag))
        await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
        # RFC 3261 §12.2.2: a CSeq not above the last one is out of order: 500.
        await flow.send(request("BYE", uri, cseq=4, to_tag=ok.to.tag))
        stale = await registrar.response(flow, method="BYE")
        assert stale.status == 500
        assert stale.to.tag == ok.to.tag  # answered inside the dialog
        assert ua.calls.active_calls == 1
        await flow.send(request("BYE", uri, cseq=6, to_tag=ok.to.tag))
        assert (await registrar.response(flow, method="BYE")).status == 200
        await wait_until(lambda: bool(events(ua, "call-ended")), 5)


async def test_second_invite_while_in_a_call_is_answered_per_policy(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
        first = await registrar.response(flow, status=200)
        await flow.send(request("ACK", uri, to_tag=first.to.tag))
        await flow.send(request("INVITE", uri, call_id="call-2", body=OFFER))
        second = await registrar.response(flow, status=200)
        assert second.headers.get("Call-ID") == "call-2"
        assert second.to.tag != first.to.tag  # a dialog of its own
        assert ua.calls.active_calls == 2
        # A retransmission of the second INVITE (same Call-ID, no To tag) starts nothing new.
        await flow.send(request("INVITE", uri, call_id="call-2", body=OFFER))
        await flow.send(request("OPTIONS", uri, call_id="probe"))
        await registrar.response(flow, method="OPTIONS")
        assert len(events(ua, "call-incoming")) == 2
        # Acknowledged, so that leaving hangs up at once instead of waiting for the ACK.
        await flow.send(request("ACK", uri, call_id="call-2", to_tag=second.to.tag))


async def test_responses_that_match_nothing_are_dropped_and_counted(tmp_path: Path) -> None:
    async with registered_ua(tmp_path) as (registrar, ua, uri):
        flow, _, _ = registrar.bindings["alice"]
        stray = make_response(request("REGISTER", uri, call_id="nobody-asked"), 200)
        assert isinstance(stray, Response)
        # More than the account's inbox holds: none of them may stall the flow's reader.
        for _ in range(100):
            await flow.send(stray)
        await flow.send(request("OPTIONS", uri, call_id="after-strays"))
        assert (await registrar.response(flow, method="OPTIONS")).status == 200
        assert ua.account.stray_responses == 100
        assert ua.account.state.value == "registered"
        # The flow still refreshes and unregisters normally.
        with trio.fail_after(10):
            assert await ua.account.unregister()
