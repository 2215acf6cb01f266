"""The load engine's one way past the transport layer: a TLS client on a raw non-blocking socket.

`sipua register` and the listener reach the network through `sipua.transport` (trio streams,
`TlsStream`). The load engine instead drives a plain non-blocking stdlib socket with trio's
readiness waits (`wait_readable`/`wait_writable`), because a trio stream call yields to the
scheduler even when the kernel took the bytes at once, and a registration makes ~10 such calls:
here a send or receive the kernel can do at once is one system call, and only a real wait goes
through trio (measured: client CPU 1.76 → 1.49 ms per registration, scripts/bench/README.md).

This module is that fast path's whole surface, `RawTlsFlow`: open (connect, TLS handshake,
sipua's trust verdict), send plaintext, receive plaintext, close. `tests/test_layers.py`
checks that no other module of the UA or the load engine touches sockets or the TLS engine
directly.

- `TCP_NODELAY` is set: SIP messages are small and the exchange is request/response, so Nagle
  would add a delayed-ACK wait per message.
- The client's TLS 1.3 Finished stays queued after `open` and leaves in the same segment as the
  first request (one write, after the trust verdict: no SIP byte before the peer is verified).
- `close` sends close_notify with one non-blocking send and never waits.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Final

import trio

from sipua.errors import ConnectFailed, ConnectionLost, PeerNotTrusted
from sipua.sip.uri import host_port
from sipua.tls.connection import sockio
from sipua.tls.connection.engine import WANT_READ, TlsEngine

if TYPE_CHECKING:
    from OpenSSL import SSL

    from sipua.tls.connection.events import Verifier

#: Bytes asked of the socket per receive (a TLS flight or many responses fit).
RECEIVE_BYTES: Final = sockio.RECEIVE_BYTES


async def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        await sockio.send_all(sock, data)
    except OSError as exc:
        raise ConnectionLost(f"sending failed: {exc.strerror or exc}") from exc


async def _receive(sock: socket.socket) -> bytes:
    data, waited = await sockio.receive(sock, RECEIVE_BYTES)
    if not waited:
        # Data was waiting: still let the other tasks run (a flood must not starve them).
        await trio.lowlevel.cancel_shielded_checkpoint()
    return data


class RawTlsFlow:
    """One client TLS connection on a raw non-blocking socket; no tasks, no locks.

    Only one task may use a flow at a time (the load engine gives each flow one owner, or one
    reader and one writer on the shared connection).

    Attributes:
        local: ``host:port`` of the local end (the Via sent-by and the Contact's host).
    """

    __slots__ = ("_ended", "_engine", "_sock", "local")

    def __init__(self, sock: socket.socket, engine: TlsEngine, local: str) -> None:
        self._sock = sock
        self._engine = engine
        self.local = local
        self._ended = False  # the peer closed after plaintext that was handed out first

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        server_name: str | None,
        context: SSL.Context,
        verifier: Verifier,
        learn_key_share: bool = False,
    ) -> RawTlsFlow:
        """Connects, runs the handshake and the trust verdict (the Finished stays queued).

        `learn_key_share`: the context is on OpenSSL's default groups; see `TlsEngine`.

        Raises:
            ConnectFailed: The TCP connect failed.
            ConnectionLost: The connection broke during the handshake.
            HandshakeFailed: TLS failed.
            PeerNotTrusted: The server's chain is not trusted for `server_name`.
        """
        sock = sockio.client_socket(host)
        try:
            try:
                await sockio.connect(sock, (host.strip("[]"), port))
            except OSError as exc:
                raise ConnectFailed(
                    f"cannot connect to {host}:{port}: {exc.strerror or exc}"
                ) from exc
            engine = TlsEngine(
                context,
                server_side=False,
                server_name=server_name,
                learn_key_share=learn_key_share,
            )
            while not engine.handshake():
                outgoing = engine.data_to_send()
                if outgoing:
                    await _send_all(sock, outgoing)
                try:
                    data = await _receive(sock)
                except OSError as exc:
                    raise ConnectionLost(
                        f"receiving failed during the TLS handshake: {exc.strerror or exc}"
                    ) from exc
                if not data:
                    engine.receive_eof()
                else:
                    engine.receive_data(data)
            verdict = verifier(engine.peer_chain())
            if not verdict.ok:
                raise PeerNotTrusted(
                    f"the server {server_name or host} is not trusted: {verdict.reason}",
                    code=verdict.code,
                )
            engine.remember_key_share()
            name = sock.getsockname()
        except BaseException:
            sockio.close(sock)
            raise
        return cls(sock, engine, host_port(name[0], name[1]))

    async def send(self, plaintext: bytes) -> None:
        """Encrypts and sends (with whatever the engine still had queued, e.g. Finished).

        Raises:
            ConnectionLost: The send failed, or the peer asked to renegotiate.
        """
        if self._engine.write(plaintext) is WANT_READ:
            raise ConnectionLost("the TLS connection wants to renegotiate; sipua refuses that")
        await _send_all(self._sock, self._engine.data_to_send())

    async def receive(self) -> bytes:
        """The plaintext of the next read from the socket (b"" when a record is incomplete).

        Raises:
            ConnectionLost: The peer closed the connection, or the read failed. Plaintext that
                arrived in the same read as the close is returned first, and the close is
                raised by the next call.
        """
        if self._ended:
            raise ConnectionLost("the registrar closed the connection")
        try:
            data = await _receive(self._sock)
        except OSError as exc:
            raise ConnectionLost(f"receiving failed: {exc.strerror or exc}") from exc
        engine = self._engine
        if data:
            engine.receive_data(data)
        else:
            engine.receive_eof()
        chunks: list[bytes] = []
        while True:
            plaintext = engine.read(RECEIVE_BYTES)
            if plaintext is WANT_READ:
                break
            if not plaintext:
                if not chunks:
                    raise ConnectionLost("the registrar closed the connection")
                # A 200 and the close_notify after it in one read: the 200 counts.
                self._ended = True
                break
            chunks.append(plaintext)
        # Reading may have produced TLS output (a KeyUpdate answer); it must not linger.
        pending = engine.data_to_send()
        if pending:
            await _send_all(self._sock, pending)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        """Sends close_notify if the socket takes it at once, and closes the socket.

        One non-blocking send: a close_notify (a few dozen bytes) fits any socket buffer that
        is not clogged, and a clogged one means the registrar stopped reading, which no wait
        at the end of a run would cure.
        """
        with contextlib.suppress(OSError):
            self._engine.close()
            outgoing = self._engine.data_to_send()
            if outgoing:
                self._sock.send(outgoing)
        sockio.close(self._sock)
