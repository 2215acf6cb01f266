"""Two transaction tables wired back to back, for end-to-end transaction tests.

`CorePair` follows h11's `ConnectionPair` and aioquic's `roundtrip_until_done`: every message
one side sends is serialized, parsed and fed to the other side, until neither has anything left
to send. The loop is capped (`MAX_ROUNDS`) so that a ping-pong bug fails the test instead of
hanging it. Everything that is not a `SendMessage` is recorded per side for the test to check.
A `drop` predicate simulates loss, to exercise the unreliable-transport retransmissions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sipua.sip import Headers, Request, Response, SipUri, parse_message, serialize
from sipua.sip.events import SendMessage, TransactionAction
from sipua.sip.timers import TimerConfig
from sipua.sip.transactions import TransactionTable

MAX_ROUNDS = 64


def make_request(
    method: str,
    *,
    branch: str = "z9hG4bKclient1",
    transport: str = "TLS",
    cseq: int = 1,
    sent_by: str = "client.example.com:5061",
    from_tag: str = "ftag",
    call_id: str = "call-1@client.example.com",
    uri: str = "bob@server.example.com",
    to_tag: str | None = None,
    body: bytes = b"",
) -> Request:
    """A minimal valid request from `sent_by`, with the given top Via branch."""
    branch_param = f";branch={branch}" if branch else ""
    to_param = f";tag={to_tag}" if to_tag else ""
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {sent_by}{branch_param}"),
            ("Max-Forwards", "70"),
            ("From", f"<sips:alice@client.example.com>;tag={from_tag}"),
            ("To", f"<sips:{uri}>{to_param}"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    user, host = uri.split("@")
    return Request(method, SipUri(scheme="sips", user=user, host=host), headers, body)


@dataclass
class Side:
    """One end of the pair: its table and what it reported (everything but sends)."""

    table: TransactionTable
    events: list[TransactionAction] = field(default_factory=list)
    sent: list[Request | Response] = field(default_factory=list)

    def take_events(self) -> list[TransactionAction]:
        """Return and forget the recorded events."""
        events, self.events = self.events, []
        return events


class RoundLimitExceeded(AssertionError):
    """The two sides kept sending each other messages for more than MAX_ROUNDS rounds."""


class CorePair:
    """A client table and a server table connected through serialize/parse.

    Args:
        timers: timer configuration for both tables.
        drop: called with each message about to be delivered; return True to lose it.
    """

    def __init__(
        self,
        *,
        timers: TimerConfig | None = None,
        drop: Callable[[Request | Response], bool] | None = None,
    ) -> None:
        self.client = Side(TransactionTable(timers=timers))
        self.server = Side(TransactionTable(timers=timers))
        self.drop = drop
        self.now = 0.0

    def _peer(self, side: Side) -> Side:
        return self.server if side is self.client else self.client

    def pump(self) -> int:
        """Move messages both ways until quiet; return the number of rounds it took.

        Raises:
            RoundLimitExceeded: still busy after MAX_ROUNDS rounds.
        """
        for rounds in range(1, MAX_ROUNDS + 1):
            moved = False
            for side in (self.client, self.server):
                while (action := side.table.next_action()) is not None:
                    if not isinstance(action, SendMessage):
                        side.events.append(action)
                        continue
                    moved = True
                    side.sent.append(action.message)
                    if self.drop is not None and self.drop(action.message):
                        continue
                    wire = serialize(action.message)
                    self._peer(side).table.receive(parse_message(wire), self.now)
            if not moved:
                return rounds
        raise RoundLimitExceeded(f"the pair was still busy after {MAX_ROUNDS} rounds")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing due timers on both sides and pumping after each."""
        target = self.now + seconds
        for _ in range(10_000):
            deadlines = [
                d
                for d in (self.client.table.next_deadline(), self.server.table.next_deadline())
                if d is not None and d <= target
            ]
            if not deadlines:
                break
            self.now = max(self.now, min(deadlines))
            self.client.table.handle_timer(self.now)
            self.server.table.handle_timer(self.now)
            self.pump()
        else:  # pragma: no cover - only a broken timer gets here
            raise RoundLimitExceeded("timers kept firing without the clock advancing")
        self.now = target
        self.pump()
