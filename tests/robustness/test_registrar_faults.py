"""The registrar refuses or resets the connection mid-transaction: back off, never spin.

(The registrar disappearing and coming back is `tests/ua/test_agent.py::
test_registrar_restart_reconnects_and_reregisters`; a dead flow found by a missing pong is
`test_dead_flow_detected_by_missing_pong` there.)
"""

from __future__ import annotations

from pathlib import Path

import trio

from sipua.sip import Request, Response
from sipua.ua.agent import UserAgent
from tests.support.registrar import TestRegistrar, _Flow
from tests.ua.test_agent import events, lock_states, settings, wait_until


class ResettingRegistrar(TestRegistrar):
    """Drops the TCP connection instead of answering the first `resets` REGISTERs."""

    __test__ = False

    def __init__(self, resets: int) -> None:
        super().__init__()
        self.resets = resets

    async def _handle(self, flow: _Flow, message: Request | Response) -> None:
        if isinstance(message, Request) and message.method == "REGISTER" and self.resets > 0:
            self.resets -= 1
            self.registers.append(message)
            await flow.stream.transport_stream.aclose()  # a reset, mid-transaction
            raise trio.ClosedResourceError
        await super()._handle(flow, message)


async def test_reset_mid_transaction_reconnects_and_registers(tmp_path: Path) -> None:
    async with (
        ResettingRegistrar(resets=3) as registrar,
        UserAgent(settings(tmp_path, registrar), backoff_base=0.2) as ua,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(ua.account.maintain)
        await registrar.wait_registered(within=20)
        states = lock_states(ua)
        assert states[-1] == "locked"  # the lock follows the flow that works now
        assert states.count("unlocked") >= 3  # ... and dropped with each reset one
        assert registrar.connections >= 4
        retries = [e["delay"] for e in events(ua, "registration-retry")]
        assert all(delay > 0 for delay in retries)  # never an immediate retry loop
        nursery.cancel_scope.cancel()


async def test_refusing_registrar_is_retried_with_growing_jittered_backoff(
    tmp_path: Path,
) -> None:
    async with (
        TestRegistrar(reject_with=503) as registrar,
        UserAgent(settings(tmp_path, registrar), backoff_base=0.1) as ua,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(ua.account.maintain)
        await wait_until(lambda: len(events(ua, "registration-retry")) >= 4, 20)
        nursery.cancel_scope.cancel()
    delays = [e["delay"] for e in events(ua, "registration-retry")]
    assert all(delay > 0 for delay in delays)
    assert delays[3] > delays[0]  # it grows (RFC 5626 §4.5)
    assert len(set(delays)) == len(delays)  # and is jittered
    # Never spins: one REGISTER per attempt, bounded by the back-off.
    assert len(registrar.registers) <= len(delays) + 2
    failed = events(ua, "registration-failed")
    assert failed[0]["status"] == 503
    # The TLS flow itself is fine and verified all along: the lock says so while refused.
    assert all(e["lock"] == "locked" for e in failed)
