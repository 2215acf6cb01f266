"""The transaction layer: creates, matches and retires transactions (RFC 3261 §17.1.3, §17.2.3).

Theory of operation
-------------------
`TransactionTable` is the one object the UA pumps. Our requests go in with `send_request`, which
creates a client transaction; every message from the network goes in with `receive`, which
finds its transaction or creates a server transaction; the TU's responses go in with
`send_response(key, ...)`. After each call the UA drains `next_action()` (send this, deliver
that, this transaction ended) and sleeps until `next_deadline()`, then calls `handle_timer(now)`.

Matching:

- a response belongs to the client transaction with its top Via branch and its CSeq method
  (§17.1.3); none found: `StrayResponse` (typically a 2xx retransmitted after Timer M, which
  the dialog must ACK again);
- a request with an RFC 3261 branch (magic cookie `z9hG4bK`) belongs to the server transaction
  with the same branch, sent-by and method, where an ACK looks for the INVITE (§17.2.3) and a
  CANCEL has its own transaction (§9.2; `invite_for_cancel` finds the INVITE it cancels);
- a request from an RFC 2543 peer (no cookie) is matched on the §17.2.3 fallback fields
  (Request-URI, From tag, Call-ID, CSeq number, top Via), without the To tag (see
  `LegacyServerTxKey`);
- an ACK that matches nothing is a 2xx ACK and goes to the TU as `AckReceived`.

Whether a transaction runs the unreliable-transport timers is read from the transport in its
top Via (UDP is unreliable, TCP/TLS/SCTP/WS are reliable, RFC 3261 §18), unless the caller says.

The table holds at most `max_transactions`; past that, new client transactions are refused with
`LocalProtocolError` and new server transactions with `RemoteProtocolError(status_hint=503)`,
which the UA can answer with a 503.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from sipua.sip.errors import LocalProtocolError, RemoteProtocolError
from sipua.sip.events import (
    AckReceived,
    ClientTxKey,
    LegacyServerTxKey,
    ServerTxKey,
    StrayResponse,
    TransactionAction,
    TransactionKey,
)
from sipua.sip.fields import Via
from sipua.sip.ids import BRANCH_MAGIC_COOKIE
from sipua.sip.message import Request, Response
from sipua.sip.timers import TimerConfig
from sipua.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Transaction,
)

__all__ = [
    "MAX_TRANSACTIONS",
    "ReliableClientTable",
    "TransactionTable",
    "client_key",
    "is_reliable_transport",
    "server_key",
]

# Live transactions per table. A UA has a handful; this bounds memory under a request flood
# (each server transaction lives 32 s with default timers on UDP, less on TLS).
MAX_TRANSACTIONS: Final = 4096
# Actions waiting to be drained; more means the UA stopped pumping, which is a bug.
MAX_PENDING_ACTIONS: Final = 65536

_UNRELIABLE_TRANSPORTS: Final = frozenset({"UDP"})
#: Timer F of the default timers on a reliable transport (64*T1, RFC 3261 §17.1.2.2).
DEFAULT_TIMER_F: Final = TimerConfig().for_transport(reliable=True).f


def is_reliable_transport(via: Via) -> bool:
    """Whether the Via's transport is reliable (RFC 3261 §18: all but UDP here)."""
    return via.transport.upper() not in _UNRELIABLE_TRANSPORTS


def _sent_by(via: Via) -> str:
    host = via.host.lower()
    return host if via.port is None else f"{host}:{via.port}"


def client_key(message: Request | Response) -> ClientTxKey | None:
    """The client transaction key of our request or of a response to it (§17.1.3).

    Returns None when the top Via has no branch (such a response matches nothing).

    Raises:
        ParseError: the message has no Via or CSeq, or they are malformed.
    """
    branch = message.top_via.branch
    if not branch:
        return None
    method = message.method if isinstance(message, Request) else message.cseq.method
    return ClientTxKey(branch=branch, method=method)


def server_key(request: Request) -> ServerTxKey | LegacyServerTxKey:
    """The server transaction key of a received request (§17.2.3).

    Raises:
        ParseError: the request lacks a header the key needs, or it is malformed.
    """
    via = request.top_via
    # §17.2.3: ACK matches the INVITE it acknowledges; CANCEL keeps its own method.
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch and branch.startswith(BRANCH_MAGIC_COOKIE):
        return ServerTxKey(branch=branch, sent_by=_sent_by(via), method=method)
    return LegacyServerTxKey(
        request_uri=str(request.uri),
        from_tag=request.from_.tag,
        call_id=request.call_id,
        cseq=request.cseq.seq,
        method=method,
        via=str(via),
    )


class TransactionTable:
    """Every live transaction of one UA, keyed and matched per RFC 3261 §17.

    Args:
        timers: the T1/T2/T4 configuration.
        max_transactions: the most live transactions kept at once.
    """

    __slots__ = ("_actions", "_max", "_timers", "_transactions")

    def __init__(
        self, *, timers: TimerConfig | None = None, max_transactions: int = MAX_TRANSACTIONS
    ) -> None:
        self._timers = timers if timers is not None else TimerConfig()
        self._max = max_transactions
        self._transactions: dict[TransactionKey, Transaction] = {}
        self._actions: deque[TransactionAction] = deque()

    def __repr__(self) -> str:
        return f"TransactionTable(live={len(self._transactions)}, pending={len(self._actions)})"

    def __len__(self) -> int:
        return len(self._transactions)

    def get(self, key: TransactionKey) -> Transaction | None:
        """The live transaction with this key, or None."""
        return self._transactions.get(key)

    # --- inputs -------------------------------------------------------------------------

    def send_request(
        self, request: Request, now: float, *, reliable: bool | None = None
    ) -> ClientTxKey:
        """Start a client transaction for `request` and queue it for sending.

        The request must carry its top Via with a fresh RFC 3261 branch (`ids.new_branch`).
        An ACK is not a transaction (§17): send a 2xx ACK directly, not through the table.

        Args:
            request: the request to send.
            now: the current time.
            reliable: override the reliability read from the top Via's transport.

        Raises:
            LocalProtocolError: ACK, no branch or one without the magic cookie, a duplicate
                key, or the table is full.
        """
        if request.method == "ACK":
            raise LocalProtocolError(
                "ACK is not sent through a client transaction: send it directly (§17.1.1.3)"
            )
        via = request.top_via
        key = client_key(request)
        if key is None or not key.branch.startswith(BRANCH_MAGIC_COOKIE):
            raise LocalProtocolError(
                f"{request.method} request needs a top Via branch starting with "
                f"{BRANCH_MAGIC_COOKIE} (RFC 3261 §8.1.1.7); build one with new_branch()"
            )
        if key in self._transactions:
            raise LocalProtocolError(
                f"a client transaction for branch {key.branch} and {key.method} already "
                f"exists; every new request needs a new branch"
            )
        if len(self._transactions) >= self._max:
            raise LocalProtocolError(
                f"{len(self._transactions)} transactions are live, the limit; "
                f"wait for some to finish before sending {request.method}"
            )
        timers = self._timers.for_transport(
            reliable=is_reliable_transport(via) if reliable is None else reliable
        )
        tx: ClientInviteTransaction | ClientNonInviteTransaction
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, key=key, timers=timers)
        else:
            tx = ClientNonInviteTransaction(request, key=key, timers=timers)
        self._transactions[key] = tx
        self._collect(tx, tx.start(now))
        return key

    def receive(
        self, message: Request | Response, now: float, *, reliable: bool | None = None
    ) -> None:
        """Take a message from the network and route it (§17.1.3, §17.2.3).

        Args:
            message: a parsed request or response.
            now: the current time.
            reliable: override the reliability read from the top Via (new server transactions).

        Raises:
            ParseError: a header needed for matching is missing or malformed; the UA answers
                a request with `status_hint` (400) and drops a response.
            RemoteProtocolError: the table is full (status_hint 503).
        """
        if isinstance(message, Response):
            self._receive_response(message, now)
        else:
            self._receive_request(message, now, reliable)

    def send_response(
        self, key: ServerTxKey | LegacyServerTxKey, response: Response, now: float
    ) -> None:
        """Send a response from the TU through its server transaction.

        Raises:
            LocalProtocolError: no such live transaction, or its state forbids the response.
        """
        tx = self._transactions.get(key)
        if not isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction):
            raise LocalProtocolError(
                f"no live server transaction for {key}; it has terminated or never existed, "
                f"so the {response.status} response cannot be sent through it"
            )
        self._collect(tx, tx.send_response(response, now))

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """Report that the transport failed for this transaction (§17.1.4, §17.2.4).

        Unknown keys are ignored: the transaction may have ended while the send was failing.
        """
        tx = self._transactions.get(key)
        if tx is not None:
            self._collect(tx, tx.transport_error(now))

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`, in every transaction."""
        for tx in list(self._transactions.values()):
            deadline = tx.next_deadline()
            if deadline is not None and deadline <= now:
                self._collect(tx, tx.handle_timer(now))

    def invite_for_cancel(self, cancel: Request) -> ServerTxKey | LegacyServerTxKey | None:
        """The live INVITE server transaction a received CANCEL refers to (§9.2), or None.

        The TU answers the CANCEL itself (200, or 481 when this returns None) and, if the
        INVITE has not been answered with a final response yet, answers it with 487.
        """
        key = server_key(cancel)
        invite_key: ServerTxKey | LegacyServerTxKey
        if isinstance(key, ServerTxKey):
            invite_key = ServerTxKey(branch=key.branch, sent_by=key.sent_by, method="INVITE")
        else:
            invite_key = LegacyServerTxKey(
                request_uri=key.request_uri,
                from_tag=key.from_tag,
                call_id=key.call_id,
                cseq=key.cseq,
                method="INVITE",
                via=key.via,
            )
        tx = self._transactions.get(invite_key)
        return invite_key if isinstance(tx, ServerInviteTransaction) else None

    # --- outputs ------------------------------------------------------------------------

    def next_action(self) -> TransactionAction | None:
        """The oldest pending action, or None when there is nothing to do."""
        return self._actions.popleft() if self._actions else None

    def next_deadline(self) -> float | None:
        """The earliest timer deadline across all transactions, or None."""
        deadlines = [tx.next_deadline() for tx in self._transactions.values()]
        return min((d for d in deadlines if d is not None), default=None)

    # --- internals ----------------------------------------------------------------------

    def _receive_response(self, response: Response, now: float) -> None:
        key = client_key(response)
        tx = self._transactions.get(key) if key is not None else None
        if not isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
            self._push(StrayResponse(response=response))
            return
        self._collect(tx, tx.receive_response(response, now))

    def _receive_request(self, request: Request, now: float, reliable: bool | None) -> None:
        key = server_key(request)
        tx = self._transactions.get(key)
        if isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction):
            self._collect(tx, tx.receive_request(request, now))
            return
        if request.method == "ACK":
            # §17.2.3 / RFC 6026 §8.7: an ACK matching no transaction acknowledges a 2xx.
            self._push(AckReceived(request=request))
            return
        if len(self._transactions) >= self._max:
            raise RemoteProtocolError(
                f"{len(self._transactions)} transactions are live, the limit; "
                f"answer {request.method} with 503 and a Retry-After",
                status_hint=503,
            )
        timers = self._timers.for_transport(
            reliable=is_reliable_transport(request.top_via) if reliable is None else reliable
        )
        server: ServerInviteTransaction | ServerNonInviteTransaction
        if request.method == "INVITE":
            server = ServerInviteTransaction(request, key=key, timers=timers)
        else:
            server = ServerNonInviteTransaction(request, key=key, timers=timers)
        self._transactions[key] = server
        self._collect(server, server.start(now))

    def _collect(self, tx: Transaction, actions: list[TransactionAction]) -> None:
        for action in actions:
            self._push(action)
        if tx.terminated:
            self._transactions.pop(tx.key, None)

    def _push(self, action: TransactionAction) -> None:
        if len(self._actions) >= MAX_PENDING_ACTIONS:
            raise LocalProtocolError(
                f"{MAX_PENDING_ACTIONS} transaction actions are waiting; "
                f"the UA must drain next_action() after every input"
            )
        self._actions.append(action)


class ReliableClientTable:
    """Non-INVITE client transactions over a reliable transport, reduced to what they do there.

    Over TCP and TLS a non-INVITE client transaction (RFC 3261 §17.1.2.2, Figure 6) sends its
    request once (Timer E is off), passes the provisional responses and the first final one to
    its user and ends at once (Timer K is zero), or times out when Timer F fires; a response
    after that matches nothing. That is all this table keeps: the live keys and their Timer F
    deadlines, matched with the same `client_key` as `TransactionTable` (§17.1.3). It is the
    transaction layer of owners that run many such requests each on its own flow, where the
    general table's per-message machinery costs measurably (the load engine's registrations).

    Args:
        timer_f: Timer F in seconds (`TimerConfig.for_transport(reliable=True).f`, 64*T1).
        max_transactions: the most live transactions kept at once.
    """

    __slots__ = ("_f", "_live", "_max")

    def __init__(
        self, *, timer_f: float = DEFAULT_TIMER_F, max_transactions: int = MAX_TRANSACTIONS
    ) -> None:
        self._f = timer_f
        self._max = max_transactions
        # key -> (the key as sent, its Timer F deadline): `match` hands back the sent key
        # itself, which its owner can then recognise by identity.
        self._live: dict[ClientTxKey, tuple[ClientTxKey, float]] = {}

    @property
    def timeout(self) -> float:
        """Timer F in seconds."""
        return self._f

    def __len__(self) -> int:
        return len(self._live)

    def send(self, key: ClientTxKey, now: float) -> None:
        """Starts the transaction of a request with key `key`, sent now.

        Raises:
            LocalProtocolError: an INVITE or an ACK, a branch without the magic cookie, a
                duplicate key, or the table is full.
        """
        if key.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"{key.method} does not run in a non-INVITE transaction")
        if not key.branch.startswith(BRANCH_MAGIC_COOKIE):
            raise LocalProtocolError(
                f"branch {key.branch!r} lacks the {BRANCH_MAGIC_COOKIE} cookie (RFC 3261 §8.1.1.7)"
            )
        if len(self._live) >= self._max:
            raise LocalProtocolError(f"{len(self._live)} transactions are live, the limit")
        entry = (key, now + self._f)
        if self._live.setdefault(key, entry) is not entry:
            raise LocalProtocolError(f"a client transaction for {key} already exists")

    def match(self, response: Response) -> ClientTxKey | None:
        """The live transaction `response` answers (the key given to `send`), or None (a stray,
        §17.1.3).

        A final response ends its transaction (Timer K is zero on a reliable transport).

        Raises:
            ParseError: the response's Via or CSeq is missing or malformed.
        """
        key = client_key(response)
        if key is None:
            return None
        entry = self._live.pop(key, None) if response.status >= 200 else self._live.get(key)
        return entry[0] if entry is not None else None

    def drop(self, key: ClientTxKey) -> None:
        """Ends a transaction whose transport failed (§17.1.4)."""
        self._live.pop(key, None)

    def next_deadline(self) -> float | None:
        """The earliest Timer F, or None."""
        return min((deadline for _key, deadline in self._live.values()), default=None)

    def expired(self, now: float) -> list[ClientTxKey]:
        """The transactions whose Timer F fired by `now`; they are over."""
        due = [key for key, (_sent, deadline) in self._live.items() if deadline <= now]
        for key in due:
            del self._live[key]
        return due
