"""The pump's outboxes: backpressure on the reader, and the hard bound behind it."""

from __future__ import annotations

import random

import trio
import trio.testing
from structlog.testing import capture_logs

from sipua.sip import Request, Response, make_response
from sipua.ua.calls import OUTBOX_LIMIT, OUTBOX_SIZE, AnswerPolicy, CallHandler
from tests.ua.test_calls import request


class SlowConnection:
    """Stands in for a SipConnection whose peer takes a message only when the test lets it."""

    def __init__(self) -> None:
        self.local = "127.0.0.1:5061"
        self.peer = "127.0.0.2:40000"
        self.tls_name: str | None = None
        self.closed = trio.Event()
        self.closed_reason: str | None = None
        self.is_open = True
        self.sent: list[Request | Response] = []
        self.gate = trio.Semaphore(0)  # one release lets one message through
        self.closes: list[str] = []

    async def send(self, message: Request | Response) -> None:
        await self.gate.acquire()
        self.sent.append(message)

    async def aclose(self, reason: str = "closed by us") -> None:
        self.closes.append(reason)
        self.closed_reason = reason
        self.is_open = False
        self.closed.set()
        await trio.lowlevel.checkpoint()

    def set_in_use(self, in_use: bool) -> None:
        pass


def handler_in(nursery: trio.Nursery) -> CallHandler:
    return CallHandler(
        policy=AnswerPolicy(delay=30.0),
        publish=lambda _event, **_fields: None,
        contact_for=lambda connection: f"sips:alice@{connection.local}",
        nursery=nursery,
        rng=random.Random(1),
        users=frozenset({"alice"}),
    )


async def test_the_reader_waits_for_room_and_goes_on_as_the_peer_reads() -> None:
    async with trio.open_nursery() as nursery:
        handler = handler_in(nursery)
        connection = SlowConnection()
        for i in range(OUTBOX_SIZE - 1):  # one 200 each: the outbox fills up to its size
            options = request("OPTIONS", "sips:alice@x", call_id=f"o{i}")
            await handler.handle_message(connection, options)  # type: ignore[arg-type]
        waited = trio.Event()

        async def last() -> None:
            final = request("OPTIONS", "sips:alice@x", call_id="last")
            await handler.handle_message(connection, final)  # type: ignore[arg-type]
            waited.set()

        nursery.start_soon(last)
        await trio.testing.wait_all_tasks_blocked()
        assert not waited.is_set()  # the reader waits: OUTBOX_SIZE messages wait to be sent
        connection.gate.release()  # the peer reads one
        with trio.fail_after(2):
            await waited.wait()
        assert connection.closes == []  # a peer that reads slowly keeps its connection
        for _ in range(OUTBOX_SIZE):
            connection.gate.release()
        await trio.testing.wait_all_tasks_blocked()
        assert len(connection.sent) == OUTBOX_SIZE
        nursery.cancel_scope.cancel()


async def test_an_outbox_at_its_hard_bound_closes_its_connection_once() -> None:
    async with trio.open_nursery() as nursery:
        handler = handler_in(nursery)
        connection = SlowConnection()
        options = request("OPTIONS", "sips:alice@x", call_id="o")
        answer = make_response(options, 200, to_tag="t")
        with capture_logs() as logs:
            # What no reader holds back (timers, other connections) is posted without waiting.
            for _ in range(OUTBOX_LIMIT + 10):
                handler._post(connection, answer)  # type: ignore[arg-type]
            await trio.testing.wait_all_tasks_blocked()
        assert connection.closes == [
            f"{OUTBOX_LIMIT} messages wait to be sent; closing the connection"
        ]
        assert [log["event"] for log in logs].count("connection-overloaded") == 1
        nursery.cancel_scope.cancel()
