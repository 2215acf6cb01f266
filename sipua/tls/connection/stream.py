"""`TlsStream`: TLS over any trio stream, driven by a pyOpenSSL memory-BIO engine.

Theory of operation
-------------------
The design is trio's `SSLStream`, on `TlsEngine` instead of the stdlib's `SSLObject`.

Every TLS operation (handshake, read, write, close) goes through one loop, `_retry`. Each
iteration (1) calls the engine without awaiting, (2) drains the engine's outgoing ciphertext,
then (3) does exactly one blocking step: if there is ciphertext to send it sends it, otherwise,
if the engine wants input, it receives once. Never both in one iteration: after any await, what
we knew about the engine may be stale (another task may have fed it), so we go round again.

* Ciphertext must reach the wire in the order the engine produced it, so sends happen under a
  FIFO lock (`trio.StrictFIFOLock`).
* "Want read" refers to the *transport*. When two tasks both want input (a reader, and a writer
  whose write wants read in TLS 1.3 post-handshake traffic), only one receives; the other sees
  the receive count moved and simply retries the engine.
* A write that returned "want read" is retried with the *same* bytes (OpenSSL's rule).
* TLS 1.3 servers send session tickets right after the handshake. A client that is not reading
  could then block our server's handshake forever on a clogged transport, so those bytes are
  held back and sent in front of the next outgoing bytes (trio's `_delayed_outgoing`).

The handshake is explicit and runs once (`do_handshake`; `send_all`/`receive_some` run it
implicitly, which is safe because verification is part of it). After OpenSSL finished, the
peer chain goes to the verifier (`trust.policy.verify_chain`, the one truth); if the policy
refuses the peer, the transport is closed and `PeerNotTrusted` raised, so no SIP byte is ever
sent on an unverified connection. What happened is kept as data (`handshake_event`,
`close_event`) for the lock tracker.

Ending: `aclose()` sends our close_notify once and closes the transport without waiting for
the peer's (RFC 8446 §6.1 allows it). Reading b"" means the peer sent close_notify (a clean
end). A transport EOF without close_notify is a truncation: `receive_some` raises
`BrokenTlsStream` and `close_event.clean` is False; callers log it as a warning.

Errors: nothing from OpenSSL or the transport escapes raw. Failures are sipua errors that are
also `trio.BrokenResourceError`, so generic trio code and sipua's error handling both work.
"""

from __future__ import annotations

import enum
import operator
import socket
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import Final, TypeVar

import trio

from sipua.errors import ConnectionLost, HandshakeFailed, PeerNotTrusted, TlsAlertReceived
from sipua.tls.connection import events, sockio
from sipua.tls.connection.context import (
    TlsClientConfig,
    TlsServerConfig,
    client_context,
    server_context,
)
from sipua.tls.connection.engine import WANT_READ, TlsEngine, Want
from sipua.tls.connection.events import HandshakeCompleted, TlsClosed, Verifier

T = TypeVar("T")

#: The most plaintext one `receive_some` returns (callers may ask for less).
MAX_RECEIVE_BYTES: Final = 256 * 1024
#: What `receive_some()` asks the engine for when the caller gives no size.
DEFAULT_RECEIVE_BYTES: Final = 64 * 1024
#: How long a failing stream tries to hand its final alert to the peer (seconds).
ALERT_SEND_SECONDS: Final = 1.0


class BrokenTlsStream(ConnectionLost, trio.BrokenResourceError):
    """The TLS connection broke after the handshake (peer vanished, truncation, bad record)."""


class BrokenByTlsAlert(TlsAlertReceived, trio.BrokenResourceError):
    """The peer ended the connection with a TLS alert after the handshake (a TLS failure)."""


class TlsHandshakeError(HandshakeFailed, trio.BrokenResourceError):
    """The handshake failed (protocol, version, cipher, transport lost, timeout)."""


class _State(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class _ConflictDetector:
    """Raises `trio.BusyResourceError` when two tasks use one direction at once.

    A plain context manager (`with detector():`), not a generator-based one: it wraps every
    send and receive, and contextlib's machinery cost ~8 Python calls each time.
    """

    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __call__(self) -> _ConflictDetector:
        return self

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} this TLS stream")
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


class TlsStream(trio.abc.Stream):
    """A TLS connection over `transport_stream`, client or server side.

    Build one with `TlsStream.client(...)` or `TlsStream.server(...)`, then call
    `await do_handshake()` before anything else (the handshake is run implicitly otherwise).

    Args:
        transport_stream: The byte stream to run TLS over (a TCP stream, or a test stream).
        engine: A fresh `TlsEngine` for this connection.
        verifier: Decides on the peer's chain; for a server it is only used when the client
            presents a certificate.
        raw_socket: The non-blocking stdlib socket under `transport_stream` (a
            `trio.SocketStream` made with `trio.socket.from_stdlib_socket` on it), or None.
            With it, sends and receives try the system call first and go through trio's
            scheduler only to wait (`sockio`); the transport stream still closes it.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        engine: TlsEngine,
        *,
        verifier: Verifier,
        raw_socket: socket.socket | None = None,
    ) -> None:
        self.transport_stream = transport_stream
        self._raw = raw_socket
        self._engine = engine
        self._verifier = verifier
        self._state = _State.OK
        self._send_lock = trio.StrictFIFOLock()
        self._recv_lock = trio.Lock()
        self._recv_count = 0
        self._delayed_outgoing: bytes | None = None
        self._handshake_started = False
        self._handshake_finished = trio.Event()
        self._handshake_event: HandshakeCompleted | events.HandshakeFailed | None = None
        self._handshake_error: HandshakeFailed | PeerNotTrusted | None = None
        self._close_event: TlsClosed | None = None
        self._send_conflict = _ConflictDetector("sending on")
        self._recv_conflict = _ConflictDetector("receiving from")

    @classmethod
    def client(
        cls,
        transport_stream: trio.abc.Stream,
        config: TlsClientConfig,
        *,
        verifier: Verifier | None = None,
        raw_socket: socket.socket | None = None,
    ) -> TlsStream:
        """A client-side stream as `config` says.

        Args:
            transport_stream: The connected transport.
            config: Client settings (TLS name, versions, trust, identity for mutual TLS).
            verifier: Overrides the verifier built from `config` (tests, special policies).
            raw_socket: The stdlib socket under `transport_stream`, if any (see the class).
        """
        if verifier is None:
            from sipua.tls.trust.verify import client_verifier

            verifier = client_verifier(config)
        engine = TlsEngine(
            client_context(config),
            server_side=False,
            server_name=config.server_name,
            learn_key_share=config.protocol.groups is None,
        )
        return cls(transport_stream, engine, verifier=verifier, raw_socket=raw_socket)

    @classmethod
    def server(
        cls,
        transport_stream: trio.abc.Stream,
        config: TlsServerConfig,
        *,
        verifier: Verifier | None = None,
    ) -> TlsStream:
        """A server-side stream as `config` says.

        Args:
            transport_stream: The accepted transport.
            config: Server settings (identity, client certificate mode, versions, trust).
            verifier: Overrides the client-certificate verifier built from `config`.
        """
        if verifier is None:
            from sipua.tls.trust.verify import server_verifier

            verifier = server_verifier(config)
        engine = TlsEngine(server_context(config), server_side=True)
        return cls(transport_stream, engine, verifier=verifier)

    # -- what happened ------------------------------------------------------------------

    @property
    def server_side(self) -> bool:
        """True on the accepting side."""
        return self._engine.server_side

    @property
    def handshake_event(self) -> HandshakeCompleted | events.HandshakeFailed | None:
        """The handshake's outcome, None while it has not ended."""
        return self._handshake_event

    @property
    def close_event(self) -> TlsClosed | None:
        """How the connection ended, None while it is open."""
        return self._close_event

    # -- the retry loop -------------------------------------------------------------------

    def _check_status(self) -> None:
        if self._state is _State.CLOSED:
            raise trio.ClosedResourceError("this TLS stream was closed")
        if self._state is _State.BROKEN:
            if self._handshake_error is not None and not self._engine.handshake_done:
                raise TlsHandshakeError(str(self._handshake_error))
            raise BrokenTlsStream("this TLS stream is broken; open a new connection")

    async def _retry(
        self,
        step: Callable[[], T | Want],
        *,
        ignore_want_read: bool = False,
        is_handshake: bool = False,
    ) -> T | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        yielded = False
        while True:
            try:
                result = step()
            except (HandshakeFailed, ConnectionLost):
                await self._send_alert()
                raise
            want_read = result is WANT_READ and not ignore_want_read
            to_send = self._engine.data_to_send()
            if (
                is_handshake
                and not want_read
                and self._engine.server_side
                and self._engine.version == "TLSv1.3"
            ):
                # Session tickets: hold them until we next send (see the module docstring).
                self._delayed_outgoing = to_send
                to_send = b""
            if to_send:
                yielded |= await self._locked_send(to_send)
            elif want_read:
                if self._raw is not None and not yielded and not is_handshake:
                    # Let the other tasks run before reading, as taking a trio stream's lock
                    # did: a task that is about to send (a request right after the handshake)
                    # goes first, and what the peer sent meanwhile (an alert refusing our
                    # certificate) is read after it, in the order the user agent reports.
                    # Still one trip per receive, as reading first and yielding after would be.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    yielded = True
                count = self._recv_count
                # A free lock is taken without a trip through the scheduler; the operation
                # still ends with a checkpoint when nothing waited (below).
                try:
                    self._recv_lock.acquire_nowait()
                except trio.WouldBlock:
                    await self._recv_lock.acquire()
                    yielded = True
                try:
                    if count == self._recv_count:
                        data, waited = await self._transport_receive()
                        yielded |= waited
                        if data:
                            self._engine.receive_data(data)
                        else:
                            self._engine.receive_eof()
                        self._recv_count += 1
                finally:
                    self._recv_lock.release()
            if not want_read:
                break
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return None if isinstance(result, Want) else result

    async def _send_alert(self) -> None:
        # OpenSSL queued an alert saying why it gave up ("protocol version", "handshake
        # failure"); hand it to the peer so it fails fast with the reason instead of waiting.
        alert = self._engine.data_to_send()
        self._mark_broken()
        if not alert:
            return
        with trio.move_on_after(ALERT_SEND_SECONDS):
            async with self._send_lock:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.transport_stream.send_all(alert)

    async def _locked_send(self, to_send: bytes) -> bool:
        # Under the FIFO send lock, with the held-back session tickets in front. Returns True
        # when it went through the scheduler.
        lock = self._send_lock
        waited = False
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
            waited = True
        try:
            if self._delayed_outgoing is not None:
                to_send = self._delayed_outgoing + to_send
                self._delayed_outgoing = None
            return await self._transport_send(to_send) or waited
        finally:
            lock.release()

    async def _transport_send(self, data: bytes) -> bool:
        # True when the send went through the scheduler (always, for a trio stream).
        try:
            if self._raw is None:
                await self.transport_stream.send_all(data)
                return True
            if self._state is _State.CLOSED:
                raise trio.ClosedResourceError("this TLS stream was closed")
            return await sockio.send_all(self._raw, data)
        except trio.ClosedResourceError:
            self._mark_broken()
            if self._state is _State.CLOSED:
                raise
            raise self._broken("the transport was closed under the TLS stream") from None
        except (trio.BrokenResourceError, OSError) as exc:
            self._mark_broken()
            raise self._broken(f"the peer's transport broke while sending ({exc})") from exc
        except BaseException:
            # Cancelled in the middle of a record: the stream can never be used again.
            self._mark_broken()
            raise

    async def _transport_receive(self) -> tuple[bytes, bool]:
        # The bytes, and True when the receive went through the scheduler.
        try:
            if self._raw is None:
                return bytes(await self.transport_stream.receive_some()), True
            if self._state is _State.CLOSED:
                raise trio.ClosedResourceError("this TLS stream was closed")
            return await sockio.receive(self._raw)
        except trio.ClosedResourceError:
            self._mark_broken()
            if self._state is _State.CLOSED:
                raise
            raise self._broken("the transport was closed under the TLS stream") from None
        except (trio.BrokenResourceError, OSError) as exc:
            self._mark_broken()
            raise self._broken(f"the peer's transport broke while receiving ({exc})") from exc

    def _mark_broken(self) -> None:
        if self._state is _State.OK:
            self._state = _State.BROKEN

    def _broken(self, what: str) -> trio.BrokenResourceError:
        if self._engine.handshake_done:
            return BrokenTlsStream(f"TLS connection lost: {what}")
        return TlsHandshakeError(f"TLS handshake failed: {what}")

    # -- handshake ------------------------------------------------------------------------

    # The timeout is a parameter, not left to the caller's `fail_after` (ASYNC109), because a
    # timed-out handshake must break the stream and be reported as a `HandshakeFailed` that
    # names the timeout, which only the stream can do.
    async def do_handshake(self, *, timeout: float | None = None) -> HandshakeCompleted:  # noqa: ASYNC109
        """Run the handshake and the trust verification, once.

        Calls after the first wait for it and return the same result. Nothing is sent on the
        connection by sipua before this returned.

        Args:
            timeout: Seconds the handshake and verification may take, None = no limit. On
                timeout the transport is closed and the handshake event's code is "timeout".

        Returns:
            What was negotiated and the verifier's verdict.

        Raises:
            HandshakeFailed: The handshake failed or timed out (a `TlsHandshakeError`).
            PeerNotTrusted: The trust policy refused the peer; the connection is closed.
            ValueError: `timeout` is not a positive number.
        """
        self._check_status_for_handshake()
        if timeout is None:
            await self._ensure_handshake(checkpoint=True)
        else:
            if not timeout > 0:
                raise ValueError("the handshake timeout must be a positive number of seconds")
            try:
                with trio.fail_after(timeout):
                    await self._ensure_handshake(checkpoint=True)
            except trio.TooSlowError:
                message = (
                    f"TLS handshake with {self._peer_label()} did not finish within "
                    f"{timeout:g} s; the peer is silent or too slow"
                )
                self._fail_handshake(message, code="timeout")
                error = TlsHandshakeError(message)
                self._handshake_error = error
                self._state = _State.BROKEN
                await trio.aclose_forcefully(self.transport_stream)
                raise error from None
        assert isinstance(self._handshake_event, HandshakeCompleted)
        return self._handshake_event

    def _check_status_for_handshake(self) -> None:
        if self._handshake_error is not None:
            raise self._handshake_error
        self._check_status()

    async def _ensure_handshake(self, *, checkpoint: bool) -> None:
        if not self._handshake_started:
            self._handshake_started = True
            try:
                await self._do_handshake()
            finally:
                self._handshake_finished.set()
            return
        if not self._handshake_finished.is_set():
            await self._handshake_finished.wait()
        elif checkpoint:
            await trio.lowlevel.checkpoint()
        if self._handshake_error is not None:
            raise self._handshake_error
        if not isinstance(self._handshake_event, HandshakeCompleted):
            self._check_status()
            raise TlsHandshakeError("TLS handshake did not complete; open a new connection")

    async def _do_handshake(self) -> None:
        def step() -> Want | None:
            return None if self._engine.handshake() else WANT_READ

        try:
            await self._retry(step, is_handshake=True)
        except HandshakeFailed as exc:
            self._state = _State.BROKEN
            self._fail_handshake(str(exc), code="handshake")
            if isinstance(exc, TlsHandshakeError):
                self._handshake_error = exc
                raise
            # The engine's plain HandshakeFailed becomes one that trio code understands too;
            # OpenSSL's exception stays the cause.
            error = TlsHandshakeError(str(exc))
            self._handshake_error = error
            raise error from exc.__cause__
        except trio.Cancelled:
            self._state = _State.BROKEN
            raise
        chain = self._engine.peer_chain()
        verification: events.Verification | None = None
        if chain:
            verification = self._verifier(chain)
        elif not self._engine.server_side:
            await self._refuse("the server presented no certificate", code="invalid-chain")
        if verification is not None and not verification.ok:
            await self._refuse(verification.reason, code=verification.code, result=verification)
        self._engine.remember_key_share()
        self._handshake_event = HandshakeCompleted(
            version=self._engine.version,
            cipher=self._engine.cipher,
            peer_chain=chain,
            verification=verification,
            server_name=(
                self._engine.received_sni if self._engine.server_side else self._engine.server_name
            ),
            sni=self._engine.received_sni if self._engine.server_side else None,
            openssl_verdicts=self._engine.openssl_verdicts,
            server_side=self._engine.server_side,
            certificate_requested=self._engine.certificate_requested,
        )

    async def _refuse(
        self, reason: str, *, code: str, result: events.Verification | None = None
    ) -> None:
        message = f"{self._peer_label()} is not trusted: {reason}"
        self._fail_handshake(message, code=code, verification=result)
        self._state = _State.BROKEN
        error = PeerNotTrusted(message, code=code)
        self._handshake_error = error
        # No alert and no close_notify: nothing at all is sent on a refused connection.
        await trio.aclose_forcefully(self.transport_stream)
        raise error

    def _fail_handshake(
        self, reason: str, *, code: str, verification: events.Verification | None = None
    ) -> None:
        if not isinstance(self._handshake_event, events.HandshakeFailed):
            self._handshake_event = events.HandshakeFailed(
                reason=reason, code=code, verification=verification
            )

    def _peer_label(self) -> str:
        if self._engine.server_side:
            return "the client"
        name = self._engine.server_name
        return f"the server {name}" if name else "the server"

    # -- trio.abc.Stream ------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive decrypted bytes; b"" once the peer sent close_notify.

        Raises:
            BrokenTlsStream: The connection broke or was truncated (no close_notify).
            HandshakeFailed, PeerNotTrusted: From the implicit handshake.
            trio.ClosedResourceError: This stream was closed by us.
            trio.BusyResourceError: Another task is already receiving.
        """
        with self._recv_conflict():
            self._check_status()
            await self._ensure_handshake(checkpoint=False)
            if max_bytes is None:
                size = DEFAULT_RECEIVE_BYTES
            else:
                size = operator.index(max_bytes)
                if size < 1:
                    raise ValueError("max_bytes must be >= 1")
                size = min(size, MAX_RECEIVE_BYTES)
            try:
                data = await self._retry(lambda: self._engine.read(size))
            except TlsAlertReceived as exc:
                self._mark_broken()
                self._note_closed(clean=False, reason=str(exc))
                raise BrokenByTlsAlert(str(exc)) from exc
            except ConnectionLost as exc:
                self._mark_broken()
                if self._engine.closed_cleanly is False:
                    self._note_closed(clean=False, reason=str(exc))
                if isinstance(exc, BrokenTlsStream):
                    raise
                raise BrokenTlsStream(str(exc)) from exc
            assert data is not None
            if not data:
                self._note_closed(clean=True, reason="the peer sent close_notify")
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of `data` (after the handshake and its verification).

        Raises:
            BrokenTlsStream: The connection broke.
            HandshakeFailed, PeerNotTrusted: From the implicit handshake.
            trio.ClosedResourceError: This stream was closed by us.
            trio.BusyResourceError: Another task is already sending.
        """
        with self._send_conflict():
            self._check_status()
            await self._ensure_handshake(checkpoint=False)
            if not data:
                await trio.lowlevel.checkpoint()
                return
            plaintext = memoryview(bytes(data))
            try:
                # pyOpenSSL turns SSL_MODE_ENABLE_PARTIAL_WRITE on for every context (and has
                # no way to clear it), so one write may take a single record (16 KiB) and
                # report how much it took: write the rest until nothing is left. Each round
                # takes at least one byte, so the loop ends.
                while plaintext:
                    taken = await self._retry(partial(self._engine.write, plaintext))
                    if not taken:  # never: a write that took nothing returns WANT_READ
                        raise BrokenTlsStream("the TLS engine took no bytes of a send")
                    plaintext = plaintext[taken:]
            except TlsAlertReceived as exc:
                self._mark_broken()
                raise BrokenByTlsAlert(str(exc)) from exc
            except ConnectionLost as exc:
                self._mark_broken()
                if isinstance(exc, BrokenTlsStream):
                    raise
                raise BrokenTlsStream(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        """See `trio.abc.SendStream.wait_send_all_might_not_block`."""
        with self._send_conflict():
            self._check_status()
            async with self._send_lock:
                await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Not supported: TLS cannot half-close (close_notify ends both directions)."""
        raise NotImplementedError("TLS has no half-close; use aclose()")

    async def aclose(self) -> None:
        """Send close_notify once (without waiting for the peer's) and close the transport.

        Safe to call more than once and from any state; the stream ends CLOSED.
        """
        if self._state is _State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._state is _State.BROKEN or not self._engine.handshake_done:
            # Nothing useful can be said on a broken or unfinished connection.
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
            return
        try:
            self._engine.close()
            outgoing = self._engine.data_to_send()
            if self._delayed_outgoing is not None:
                outgoing = self._delayed_outgoing + outgoing
                self._delayed_outgoing = None
            if outgoing:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._locked_send(outgoing)
        except BaseException:
            self._state = _State.CLOSED
            await trio.aclose_forcefully(self.transport_stream)
            raise
        else:
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
        finally:
            self._note_closed(clean=True, reason="closed locally")

    def _note_closed(self, *, clean: bool, reason: str) -> None:
        if self._close_event is None:
            self._close_event = TlsClosed(clean=clean, reason=reason)
