"""Non-blocking stdlib socket I/O that goes through trio's scheduler only on a real wait.

A trio socket call yields to the scheduler even when the kernel did the work at once (the bytes
fitted the send buffer, or had already arrived): a checkpoint per call, ~20 µs of scheduler
round each on this kind of machine. A TLS client's handshake made ten such trips where two
waits are real (the connect, and the server's flight). These helpers try the system call
first and only await `trio.lowlevel.wait_writable`/`wait_readable` when it would block, so
each wait through trio is one the network imposed.

They are what `TlsStream` uses under a client connection opened by `open_tls_stream` and
what the load engine's `RawTlsFlow` uses; both keep trio's rule that every async operation is
a checkpoint by checkpointing once per whole operation when no wait happened.

OS errors are raised as they are; the callers turn them into sipua's errors.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Final

import trio

#: Bytes asked of the socket per receive (a TLS flight, or many SIP messages, fit).
RECEIVE_BYTES: Final = 65_536


def client_socket(host: str) -> socket.socket:
    """A non-blocking TCP socket for `host`'s address family, with TCP_NODELAY.

    SIP messages are small and the exchanges are request/response, so Nagle's algorithm would
    add a delayed-ACK wait per message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


# The time limit is a parameter, not the caller's `fail_after`: a timeout scope costs ~6 us
# and is only entered here when the connect really has to wait.
async def connect(
    sock: socket.socket, address: tuple[str, int], *, limit_seconds: float | None = None
) -> None:
    """Connects the non-blocking `sock`, waiting (through trio) only while it is in progress.

    A connection to a local or nearby peer is often complete by the time connect() returns
    "in progress" (loopback always is): one zero-timeout poll finds that out without a trip
    through the scheduler, and without the cost of a timeout scope.

    Args:
        sock: The socket.
        address: The peer's (host, port).
        limit_seconds: Seconds to wait for the connection to complete, None = no limit.

    Raises:
        OSError: The connection was refused or failed.
        trio.TooSlowError: It did not complete within `limit_seconds`.
    """
    try:
        sock.connect(address)
    except BlockingIOError:
        if not _writable_now(sock):
            if limit_seconds is None:
                await trio.lowlevel.wait_writable(sock)
            else:
                with trio.fail_after(limit_seconds):
                    await trio.lowlevel.wait_writable(sock)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error)) from None


def _writable_now(sock: socket.socket) -> bool:
    if not hasattr(select, "poll"):  # Windows: ask trio
        return False
    ready = select.poll()
    ready.register(sock, select.POLLOUT)
    return bool(ready.poll(0))


async def send_all(sock: socket.socket, data: bytes | memoryview) -> bool:
    """Sends all of `data`; waits for writability only when the send buffer is full.

    Returns:
        True when it waited (went through the scheduler), False when the kernel took it all.

    Raises:
        OSError: The send failed (peer reset, socket closed).
    """
    view = memoryview(data)
    waited = False
    while True:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            sent = 0
        if sent == len(view):
            return waited
        view = view[sent:]
        await trio.lowlevel.wait_writable(sock)
        waited = True


async def receive(sock: socket.socket, max_bytes: int = RECEIVE_BYTES) -> tuple[bytes, bool]:
    """Receives what has arrived, waiting for readability only when nothing has.

    Returns:
        The bytes (b"" at end of stream), and True when it waited through the scheduler.

    Raises:
        OSError: The receive failed (peer reset, socket closed).
    """
    try:
        return sock.recv(max_bytes), False
    except BlockingIOError:
        pass
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return sock.recv(max_bytes), True
        except BlockingIOError:
            continue


def close(sock: socket.socket) -> None:
    """Wakes any task waiting on `sock` (with `trio.ClosedResourceError`) and closes it."""
    trio.lowlevel.notify_closing(sock)
    sock.close()
