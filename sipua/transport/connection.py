"""A SIP connection: one byte stream (TLS after its handshake) carrying SIP messages.

Theory of operation: a `SipConnection` wraps a `trio.abc.Stream` that is already secured and
verified (the TLS handshake and trust decision happen before, in `transport.client.open_tls` or the
listener), plus the core's `StreamFramer`. `run()` is the reader task: it reads, frames, parses
and hands each message to the handler, answers RFC 5626 CRLFCRLF pings with a CRLF pong,
tells `on_pong` of the pongs that answer our pings, and returns the reason when the connection
ends. A reader runs for the whole life of every connection, even one we only write to, because
TLS 1.3 servers send session tickets after the handshake and a client that never reads can stall.

- Sends go through one lock (`trio.abc.Stream.send_all` must not run twice at once), and every
  send (a message, a ping, the reader's pongs and error responses) is bounded: one that stays
  blocked for `SEND_STALL_SECONDS` (the peer's receive window full) means the peer does not
  read, and closes the connection (`connection-not-reading`, logged once). So a peer that
  writes without reading, pings included, holds neither the reader nor a sender for ever, and
  the idle timeout and the admission bounds keep working.
- Messages from the peer are handled one at a time in arrival order; a handler that raises
  `ConnectionLost` ends the connection. Any other exception from the handler is a bug in
  sipua: it is logged with its traceback (`internal-error`, through `report_internal_error`,
  which the test suite turns into a failure), a request is answered 500, and the connection
  and everything else go on: no peer's message can end the process.
- A framed message that does not parse is not handed to the handler and is counted
  (`dropped_messages`); when it is a request whose Via, From, To, Call-ID and CSeq can be
  recovered it is answered with the parser's status hint (400, 505, 513) and a Warning naming
  the problem (`sipua.sip.rejection`, counted in `error_responses`). Either way it is logged at
  info level (`message-refused`, with the reason and whether it was answered). The connection
  lives (design.md pitfalls, RFC 3261 §8.2).
- A framing error (no Content-Length, oversized message) kills the connection (RFC 3261
  §18.3), after the same kind of error response when the head of the message allows one. The
  close lingers (as HTTP servers do): what the peer still sends is read and discarded until it
  closes or pauses for `LINGER_QUIET_SECONDS` (it sent its message and waits for the answer),
  for at most `LINGER_SECONDS` and `LINGER_MAX_BYTES` (counted in `discarded_bytes`), because
  closing a socket with unread bytes makes the kernel reset the connection, and a peer that is
  still sending its oversized message would then lose the answer unread.
- The idle timeout closes a connection that received nothing for that long (inbound
  connections), unless it is `in_use`: the owner (the endpoint, through the user agent's pump)
  says so while the connection carries a call or an open transaction, since a call without
  session timers sends no SIP for as long as it lasts. While in use the idle timeout does not
  run; it starts anew, a full period, when the connection is no longer in use. When to ping
  a registration flow and when a missing pong means it is dead
  (RFC 5626 §4.4.1) is the endpoint's decision (`sipua.sip.registrations`); the connection only
  sends the pings it is given (`send_ping`) and reports the pongs.
- Foreign exceptions (trio's BrokenResourceError, ClosedResourceError, TLS errors) end the
  connection with a reason; they never escape `run()`. `send()` raises only `ConnectionLost`,
  also for a TLS alert; the sipua error that ended the connection (a `TlsError` for an alert)
  is in `closed_error` for callers that report TLS failures apart (exit code 3).
- A connection on which the server asked for our client certificate is `awaiting_acceptance`
  until the first SIP message arrives: if the peer closes it (or it breaks) before that, the
  end is reported as `ClientCertificateRefused` in `closed_error` (a TLS 1.3 server judges the
  certificate after our handshake is done, and pjsip closes without an alert).
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from sipua.errors import ClientCertificateRefused, ConnectionLost, SipuaError, TlsError
from sipua.logs import get_logger
from sipua.sip import (
    NEED_DATA,
    KeepalivePing,
    KeepalivePong,
    MessageFramed,
    Request,
    Response,
    StreamFramer,
    parse_message,
    serialize,
)
from sipua.sip.errors import FramingError, ParseError, RemoteProtocolError
from sipua.sip.ids import new_tag
from sipua.sip.message import make_response
from sipua.sip.rejection import (
    MAX_HEAD_BYTES,
    error_response,
    unreadable_response_key,
    warning,
)

RECEIVE_CHUNK_BYTES: Final = 16 * 1024
MAX_EVENTS_PER_CHUNK: Final = 1024  # a chunk cannot hold more messages than this; loop bound
PING: Final = b"\r\n\r\n"  # RFC 5626 §4.4.1
PONG: Final = b"\r\n"
#: How long one send may stay blocked before the peer is judged not to read and the connection
#: is closed: a peer that writes (pings, garbage, requests) without reading must not hold the
#: reader or a sender up, nor keep its connection past the idle timeout.
SEND_STALL_SECONDS: Final = 5.0
#: After a framing error: how long, and how many bytes, the rest of what the peer sends is read
#: and discarded before the connection closes (a lingering close, so our answer is not lost to
#: a reset).
LINGER_SECONDS: Final = 2.0
LINGER_MAX_BYTES: Final = 256 * 1024
#: A peer silent this long while we linger has sent what it had: close at once.
LINGER_QUIET_SECONDS: Final = 0.5

_TAGS: Final = random.SystemRandom()  # To tags of error responses (RFC 3261 §19.3)
#: Characters of a refusal reason or an internal error's message that reach the log.
MAX_LOGGED_REASON_CHARS: Final = 512

_log = get_logger(component="connection")

Message = Request | Response


def report_internal_error(error: Exception, **fields: object) -> None:
    """Logs an unexpected error met while handling a peer's message, with its traceback.

    Such an error is a bug in sipua, never the peer's fault; the process goes on. One
    function for it so that the test suite can make every such error fail the test.
    """
    _log.error("internal-error", exc_info=error, error=type(error).__name__, **fields)


MessageHandler = Callable[["SipConnection", Message], Awaitable[None]]
PongHook = Callable[["SipConnection"], None]
#: (connection, branch, CSeq method, reason) of a response that did not parse.
UnreadableHook = Callable[["SipConnection", str, str, str], None]
TraceHook = Callable[[str, "SipConnection", bytes], None]


class SipConnection:
    """SIP messages over one secured stream.

    Args:
        stream: the byte stream (a handshaken, verified TLS stream).
        peer: ``host:port`` of the peer, for logs and errors.
        local: ``host:port`` of our end (the Via sent-by of requests sent on it).
        tls_name: the identity the peer was verified for (connection reuse is per identity).
        handler: called for every message received, in order.
        trace: called with ("sent" | "received", connection, bytes) for `--trace`.
        idle_timeout: close after this many seconds without a byte received (None: never).
        max_message_bytes: the framer's cap for one message.
        certificate_requested: the server asked for our client certificate during the
            handshake (see `awaiting_acceptance`).
        on_pong: called for every RFC 5626 pong received.
        on_unreadable_response: called with the branch, CSeq method and reason of a response
            that did not parse, so that its transaction need not wait for its timeout.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        peer: str,
        local: str,
        tls_name: str | None,
        handler: MessageHandler,
        trace: TraceHook | None = None,
        idle_timeout: float | None = None,
        max_message_bytes: int | None = None,
        certificate_requested: bool = False,
        on_pong: PongHook | None = None,
        on_unreadable_response: UnreadableHook | None = None,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self.local = local
        self.tls_name = tls_name
        self.closed_reason: str | None = None
        # The sipua error that ended the connection, when there was one: a caller reports a
        # TLS alert (exit code 3) differently from a dropped socket (exit code 5).
        self.closed_error: SipuaError | None = None
        self.closed = trio.Event()
        self.dropped_messages = 0
        self.error_responses = 0
        self.discarded_bytes = 0  # read and thrown away while lingering after a framing error
        self._linger = False
        #: True until the peer's first SIP message when it asked for our client certificate:
        #: until then it may still refuse that certificate by closing the connection.
        self.awaiting_acceptance = certificate_requested
        self._handler = handler
        self._trace = trace
        self._idle_timeout = idle_timeout
        self._framer = (
            StreamFramer(max_message_bytes) if max_message_bytes is not None else StreamFramer()
        )
        self._send_lock = trio.Lock()
        self._on_pong = on_pong
        self._on_unreadable_response = on_unreadable_response
        self._cancel = trio.CancelScope()
        self._in_use = False
        self._idle_scope: trio.CancelScope | None = None  # around the receive being awaited

    def __repr__(self) -> str:
        return f"SipConnection(peer={self.peer!r}, local={self.local!r}, name={self.tls_name!r})"

    @property
    def is_open(self) -> bool:
        """Whether the connection can still carry messages."""
        return self.closed_reason is None

    @property
    def in_use(self) -> bool:
        """Whether the connection carries a call or a transaction (no idle timeout then)."""
        return self._in_use

    def set_in_use(self, in_use: bool) -> None:
        """Suspends the idle timeout (`in_use`), or restarts it with a full period."""
        self._in_use = in_use
        if self._idle_scope is not None:
            self._idle_scope.deadline = self._idle_deadline()

    def _idle_deadline(self) -> float:
        if self._idle_timeout is None or self._in_use:
            return math.inf
        return trio.current_time() + self._idle_timeout

    # -- sending --------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Sends one message.

        Raises:
            ConnectionLost: the connection is closed or broke while sending (a TLS alert too:
                see `closed_error`).
        """
        data = serialize(message)
        await self._send_bytes(data)
        if self._trace is not None:
            self._trace("sent", self, data)

    async def send_ping(self) -> None:
        """Sends an RFC 5626 CRLFCRLF keep-alive ping."""
        await self._send_bytes(PING)

    async def _send_bytes(self, data: bytes) -> None:
        # Every failure is a ConnectionLost, the one error the reader, the keep-alive and the
        # call handler catch; a TLS cause (an alert, e.g. our client certificate refused under
        # TLS 1.3) is kept in `closed_error` and chained, for callers that report it (exit 3).
        async with self._send_lock:
            if self.closed_reason is not None:  # also when it closed while this send waited
                raise ConnectionLost(
                    f"connection to {self.peer} is closed ({self.closed_reason})"
                ) from self.closed_error
            try:
                with trio.move_on_after(SEND_STALL_SECONDS) as stall:
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, SipuaError) as exc:
                reason = f"send failed: {exc}" if str(exc) else "send failed"
                if isinstance(exc, SipuaError) and self.closed_error is None:
                    self.closed_error = exc
                self._note_refusal()
                self._close_now(reason)
                raise ConnectionLost(f"connection to {self.peer} lost: {reason}") from exc
            if stall.cancelled_caught:
                # The peer's receive window stayed full; part of a record may have gone out,
                # so the stream cannot carry another byte anyway.
                reason = f"peer does not read: a send stayed blocked for {SEND_STALL_SECONDS:g} s"
                if self.closed_reason is None:
                    _log.info("connection-not-reading", peer=self.peer, reason=reason)
                self._close_now(reason)
                raise ConnectionLost(f"connection to {self.peer} closed: {reason}")

    def _close_now(self, reason: str) -> None:
        """Marks the connection closed; the reader ends with it and closes the stream."""
        self._mark_closed(reason)
        self._cancel.cancel()

    # -- the reader -----------------------------------------------------------------------------

    async def run(self) -> str:
        """Reads until the connection ends; returns why it ended. Never raises network errors."""
        with self._cancel:
            reason = await self._read_loop()
            self._mark_closed(reason)
            if self._linger:
                await self._discard_incoming()
        if self.closed_reason is None:
            self._mark_closed("closed")
        await self._close_stream()
        assert self.closed_reason is not None
        return self.closed_reason

    async def aclose(self, reason: str = "closed by us") -> None:
        """Closes the connection (close_notify once, no wait for the peer's)."""
        self._mark_closed(reason)
        self._cancel.cancel()
        await self._close_stream()

    async def _close_stream(self) -> None:
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(1.0),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, SipuaError),
        ):
            await self.stream.aclose()

    async def _discard_incoming(self) -> None:
        """A lingering close: reads and drops what still arrives until the peer closes or
        pauses, for a bounded time and size, so that our answer is read before we close."""
        with trio.move_on_after(LINGER_SECONDS):
            while self.discarded_bytes < LINGER_MAX_BYTES:
                want = min(RECEIVE_CHUNK_BYTES, LINGER_MAX_BYTES - self.discarded_bytes)
                data: bytes | bytearray | None = None
                with trio.move_on_after(LINGER_QUIET_SECONDS):
                    try:
                        data = await self.stream.receive_some(want)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, SipuaError):
                        return
                if not data:  # closed by the peer, or quiet
                    return
                self.discarded_bytes += len(data)

    def _note_refusal(self) -> None:
        """The connection ended: before any answer on one that asked for our certificate, that
        is most likely the certificate's refusal (unless a TLS alert already said more)."""
        if self.awaiting_acceptance and not isinstance(self.closed_error, TlsError):
            self.closed_error = ClientCertificateRefused(
                f"{self.peer} asked for our client (device) certificate, then closed the "
                "connection before any answer: it probably refused the certificate; give it "
                "the device CA (`sipua cert export-ca`) or choose another one with --device-cert"
            )

    def _mark_closed(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.closed.set()

    async def _read_loop(self) -> str:
        while True:
            data: bytes | bytearray | None = None
            # The idle timeout bounds the wait for bytes only: a handler that is answering a
            # message (sending 100/180 for a new call) must never be cancelled half-way.
            # `set_in_use` moves the deadline while the receive waits.
            with trio.CancelScope(deadline=self._idle_deadline()) as self._idle_scope:
                try:
                    data = await self.stream.receive_some(RECEIVE_CHUNK_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, SipuaError) as exc:
                    if isinstance(exc, SipuaError):
                        self.closed_error = exc
                    self._note_refusal()
                    return f"receive failed: {exc}" if str(exc) else "receive failed"
                finally:
                    self._idle_scope = None
            if data is None:
                return f"idle for {self._idle_timeout:g} s"
            if not data:
                self._framer.receive_data(None)
                self._note_refusal()
                return "closed by peer"
            try:
                self._framer.receive_data(bytes(data))
                await self._drain_framer()
            except FramingError as exc:
                await self._reject(self._framer.pending(MAX_HEAD_BYTES), exc)
                self._linger = True
                return f"framing error: {exc}"
            except ConnectionLost as exc:
                return str(exc)

    async def _drain_framer(self) -> None:
        for _ in range(MAX_EVENTS_PER_CHUNK):
            event = self._framer.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, KeepalivePing):
                # RFC 5626 §4.4.1: answer a ping with a pong; a peer that pings and does not
                # read gets its connection closed (the send is bounded), not a stuck reader.
                await self._send_bytes(PONG)
            elif isinstance(event, KeepalivePong):
                if self._on_pong is not None:
                    self._on_pong(self)
            elif isinstance(event, MessageFramed):
                await self._deliver(event.data)
        raise FramingError(f"more than {MAX_EVENTS_PER_CHUNK} events in one read")

    async def _deliver(self, data: bytes) -> None:
        if self._trace is not None:
            self._trace("received", self, data)
        self.awaiting_acceptance = False  # the peer speaks SIP to us: it took our certificate
        try:
            message = parse_message(data)
        except ParseError as exc:
            # Never handed to the handler; a request is answered when its Via, From, To,
            # Call-ID and CSeq can be recovered (RFC 3261 §8.2), a response is dropped
            # (§18.1.2). Either way the connection lives.
            self.dropped_messages += 1
            await self._reject(data, exc)
            return
        try:
            await self._handler(self, message)
        except ConnectionLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not end the connection's peer
            await self._internal_error(message, exc)

    async def _internal_error(self, message: Message, error: Exception) -> None:
        """Answers a request whose handling failed with 500 (RFC 3261 §21.5.1) and logs it."""
        report_internal_error(
            error,
            peer=self.peer,
            message=message.method if isinstance(message, Request) else message.status,
            reason=str(error)[:MAX_LOGGED_REASON_CHARS],
        )
        if not isinstance(message, Request) or message.method == "ACK" or not self.is_open:
            return
        try:
            response = make_response(message, 500, to_tag=new_tag(_TAGS))
        except (RemoteProtocolError, ValueError):
            return
        response.headers.add("Warning", warning("internal error; see the log of sipua"))
        with contextlib.suppress(ConnectionLost):  # the send is bounded (SEND_STALL_SECONDS)
            await self.send(response)

    async def _reject(self, data: bytes, error: RemoteProtocolError) -> None:
        """Answers a message that could not be parsed or framed, when that is possible; a
        response is never answered, and its transaction is told (`on_unreadable_response`)."""
        if self._on_unreadable_response is not None:
            key = unreadable_response_key(data)
            if key is not None:
                self._on_unreadable_response(self, *key, str(error)[:MAX_LOGGED_REASON_CHARS])
        response = error_response(data, error.status_hint, str(error), to_tag=new_tag(_TAGS))
        _log.info(
            "message-refused",
            peer=self.peer,
            status=error.status_hint if response is not None else None,
            answered=response is not None and self.is_open,
            reason=str(error)[:MAX_LOGGED_REASON_CHARS],
        )
        if response is None or not self.is_open:
            return
        with contextlib.suppress(ConnectionLost):  # the send is bounded (SEND_STALL_SECONDS)
            await self.send(response)
            self.error_responses += 1
