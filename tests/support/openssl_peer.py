"""Real TLS peers for tests: `openssl s_server` and `openssl s_client` on 127.0.0.1.

Every process is bounded in time and always killed: `openssl_server` is an async context
manager that kills its process on exit; `run_openssl_client` runs under `trio.fail_after`
(trio kills a process whose `run_process` is cancelled).

The server runs in `-rev` mode: it sends back each line it receives, reversed, and reports
on stdout what it negotiated ("Protocol version:", "Ciphersuite:", the peer certificate) and
how the connection ended ("CONNECTION CLOSED" after the client's close_notify).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio

#: Upper bound on what we keep of a peer's output (bytes).
MAX_OUTPUT_BYTES: Final = 1024 * 1024
#: Seconds any single openssl process may live in a test.
PROCESS_TIMEOUT: Final = 20.0

_ACCEPT = re.compile(rb"ACCEPT\s+\S*:(\d+)")


@dataclass
class OpenSslServer:
    """A running `openssl s_server` (see `openssl_server`)."""

    process: trio.Process
    port: int = 0
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def output(self) -> str:
        """Everything the server printed so far (stdout then stderr)."""
        return (bytes(self.stdout) + bytes(self.stderr)).decode("utf-8", "replace")

    async def wait_for(self, text: str, *, seconds: float = 5.0) -> None:
        """Wait until `text` shows in the output.

        Raises:
            AssertionError: It did not within `seconds` (the output is in the message).
        """
        with trio.move_on_after(seconds):
            while text not in self.output:
                await self._changed.wait()
            return
        raise AssertionError(f"s_server never printed {text!r}; output:\n{self.output}")

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


async def _pump(stream: trio.abc.ReceiveStream, sink: bytearray, server: OpenSslServer) -> None:
    while True:
        try:
            chunk = await stream.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break
        if not chunk:
            break
        if len(sink) < MAX_OUTPUT_BYTES:
            sink.extend(chunk[: MAX_OUTPUT_BYTES - len(sink)])
        server._note()


@asynccontextmanager
async def openssl_server(args: Sequence[str]) -> AsyncIterator[OpenSslServer]:
    """Start `openssl s_server -rev -naccept 1` on 127.0.0.1 and a free port.

    Args:
        args: Extra s_server arguments (certificate, key, versions, -Verify ...).

    Yields:
        The server, once it listens; its `port` is set.
    """
    command = [
        "openssl",
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-rev",
        *args,
    ]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    server = OpenSslServer(process=process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(_pump, process.stdout, server.stdout, server)
            nursery.start_soon(_pump, process.stderr, server.stderr, server)
            with trio.fail_after(PROCESS_TIMEOUT):
                while (match := _ACCEPT.search(bytes(server.stdout))) is None:
                    if process.poll() is not None:
                        raise AssertionError(f"s_server exited early:\n{server.output}")
                    await server._changed.wait()
                server.port = int(match.group(1))
                yield server
            nursery.cancel_scope.cancel()
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


@dataclass(frozen=True)
class ClientRun:
    """How an `openssl s_client` run ended."""

    returncode: int
    stdout: str
    stderr: str


async def run_openssl_client(
    port: int, args: Sequence[str], *, stdin: bytes = b"", seconds: float = PROCESS_TIMEOUT
) -> ClientRun:
    """Run `openssl s_client` against 127.0.0.1:`port`, bounded by `seconds`.

    `-ign_eof` keeps it connected after its stdin ends, until the server closes.
    """
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *args]
    with trio.fail_after(seconds):
        result = await trio.run_process(
            command, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )
    return ClientRun(
        returncode=result.returncode,
        stdout=result.stdout.decode("utf-8", "replace"),
        stderr=result.stderr.decode("utf-8", "replace"),
    )
