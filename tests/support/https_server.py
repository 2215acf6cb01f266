"""A small HTTP(S) file server on loopback for provisioning tests (a throwaway CA made at test
time): serves `files[path]` with 200, or a configured status, over TLS (stdlib ssl) or plain."""

from __future__ import annotations

import functools
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import trio

from tests.support.certs import Issued, make_ca, make_leaf


@dataclass
class Served:
    body: bytes = b""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


class FileServer:
    """`async with FileServer(files) as server`: `server.url(path)`; `server.requests` counts."""

    def __init__(self, files: dict[str, Served], *, tls: bool = True, host: str = "localhost"):
        self.files = files
        self.tls = tls
        self.host = host
        self.ca: Issued = make_ca("Provisioning Test CA")
        self.leaf: Issued = make_leaf(self.ca, cn=host, dns=[host])
        self.port = 0
        self.requests: list[bytes] = []
        self._context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
                cert.write_bytes(self.leaf.pem + self.ca.pem)
                key.write_bytes(self.leaf.key_pem)
                context.load_cert_chain(cert, key)
            self._context = context

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    async def __aenter__(self) -> Self:
        self._manager = trio.open_nursery()
        nursery = await self._manager.__aenter__()
        serve = functools.partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]
        self._nursery = nursery
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._nursery.cancel_scope.cancel()
        return await self._manager.__aexit__(et, e, tb)

    async def _serve(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if self._context is not None:
            stream = trio.SSLStream(tcp, self._context, server_side=True)
        try:
            head = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = await stream.receive_some(4096)
                    if not data:
                        return
                    head += data
            self.requests.append(head)
            path = head.split(b" ", 2)[1].decode()
            served = self.files.get(path, Served(b"not found\n", 404))
            reason = {200: "OK", 404: "Not Found", 302: "Found"}.get(served.status, "X")
            lines = [f"HTTP/1.1 {served.status} {reason}", f"Content-Length: {len(served.body)}"]
            lines += [f"{k}: {v}" for k, v in served.headers]
            lines += ["Connection: close", "", ""]
            await stream.send_all("\r\n".join(lines).encode() + served.body)
            if isinstance(stream, trio.SSLStream):
                await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(tcp)
