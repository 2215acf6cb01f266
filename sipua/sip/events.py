"""What the transaction layer asks of its user (actions) and tells it (events).

Commands are imperative (`SendMessage`), facts are past tense (`TransactionTerminated`). Every
one is a frozen, slotted, keyword-only dataclass, so they compare by value in tests and cannot
be changed after the fact. The UA pumps them out of a `TransactionTable` with `next_action()`.

Keys: a client transaction is named by the branch of the top Via it sent and its CSeq method
(RFC 3261 §17.1.3); a server transaction by the received branch, sent-by and method
(§17.2.3). They are opaque handles for the user: pass them back to `send_response` and
`transport_error`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from sipua.sip.message import Request, Response

__all__ = [
    "AckReceived",
    "ClientTxKey",
    "DeliverRequest",
    "DeliverResponse",
    "LegacyServerTxKey",
    "SendMessage",
    "ServerTxKey",
    "StrayResponse",
    "TerminationReason",
    "TransactionAction",
    "TransactionKey",
    "TransactionTerminated",
    "TransactionTimedOut",
]


class ClientTxKey(NamedTuple):
    """A client transaction: top Via branch and CSeq method (RFC 3261 §17.1.3).

    A named tuple, not a dataclass like the other keys: it is made, hashed and compared for
    every request we send and every response we read (the load engine's hot path), and a
    tuple does all three in C.
    """

    branch: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTxKey:
    """A server transaction of an RFC 3261 peer: branch, sent-by and method (§17.2.3).

    `method` is the request method, except that an ACK is keyed as INVITE so that it finds the
    INVITE transaction it acknowledges; a CANCEL keeps its own method and transaction.
    """

    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyServerTxKey:
    """A server transaction of an RFC 2543 peer (no z9hG4bK branch), §17.2.3 fallback.

    The To tag is left out: the INVITE has none and the ACK carries ours, and the remaining
    fields already identify the request (Call-ID, From tag and CSeq are unique per request).
    """

    request_uri: str
    from_tag: str | None
    call_id: str
    cseq: int
    method: str
    via: str


TransactionKey = ClientTxKey | ServerTxKey | LegacyServerTxKey


class TerminationReason(enum.Enum):
    """Why a transaction ended."""

    #: It ran its course (final response, then the absorption timer).
    COMPLETED = "completed"
    #: Timer B, F or H fired: no final response, or no ACK for our final response.
    TIMED_OUT = "timed-out"
    #: The transport failed to send, or the connection under it was lost (§17.1.4, §17.2.4).
    TRANSPORT_ERROR = "transport-error"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessage:
    """Send this message on the transaction's transport.

    Attributes:
        message: the request or response to send.
        key: the transaction that wants it sent.
        retransmission: True for a resend (timers A/E/G, or a retransmitted request received).
    """

    message: Request | Response
    key: TransactionKey
    retransmission: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverResponse:
    """A response for a client transaction; hand it to the transaction user."""

    response: Response
    key: ClientTxKey


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverRequest:
    """A new request: a server transaction was created; answer it with `send_response(key)`."""

    request: Request
    key: ServerTxKey | LegacyServerTxKey


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived:
    """An ACK for a 2xx: it belongs to the dialog, not to a transaction (§17.2.3, RFC 6026).

    `key` is the INVITE transaction it matched (only while in ACCEPTED), or None when it
    matched none, which is the normal case for a 2xx ACK with its own branch.
    """

    request: Request
    key: ServerTxKey | LegacyServerTxKey | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponse:
    """A response that matches no client transaction (§17.1.3).

    Usually a retransmitted 2xx for an INVITE after Timer M: the dialog layer should ACK it
    again. Anything else can be logged and dropped.
    """

    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Timer B, F or H fired (`timer` is its letter); `TransactionTerminated` follows."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    """The transaction reached TERMINATED and was removed from the table."""

    key: TransactionKey
    reason: TerminationReason


TransactionAction = (
    SendMessage
    | DeliverResponse
    | DeliverRequest
    | AckReceived
    | StrayResponse
    | TransactionTimedOut
    | TransactionTerminated
)
