"""A small SIPS registrar for end-to-end tests over real loopback TLS sockets.

It is deliberately independent of sipua's TLS code: the server side is the standard library's
`ssl` through `trio.SSLStream`, with certificates from `tests.support.certs`. It parses SIP with
sipua's parser (the message layer has its own tests) and does just enough of a registrar:

- digest challenge (MD5, qop=auth) checked with hashlib, one nonce per challenge;
- 423 Interval Too Brief below `min_expires`, bindings with the granted expiry echoed per Contact;
- answers RFC 5626 pings with pongs unless `answer_pings` is False;
- `restart()`: drop every connection and forget bindings, as a restarted registrar would;
- `send_request(user, request)`: send a request (an INVITE through NAT) to a registered user over
  its registration connection, and `responses(...)` to read what came back.

Everything is bounded: one test at a time, a few connections, short timeouts.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import trio

from sipua.sip import (
    NEED_DATA,
    KeepalivePing,
    MessageFramed,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
    serialize,
)
from tests.support.certs import Issued, make_ca, make_leaf

REALM = "example.test"


@dataclass
class Pki:
    """A CA and the registrar's certificate for `domain`."""

    ca: Issued
    server: Issued

    @classmethod
    def make(cls, domain: str = REALM, **leaf_flaws: object) -> Pki:
        ca = make_ca("Registrar Test CA")
        server = make_leaf(ca, cn=domain, dns=[domain], uris=[f"sip:{domain}"], **leaf_flaws)  # type: ignore[arg-type]
        return cls(ca, server)

    def server_context(self, client_ca: bytes | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if client_ca is not None:  # mutual TLS: require a client certificate from this CA
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=client_ca.decode())
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            cert = Path(tmp) / "cert.pem"
            key = Path(tmp) / "key.pem"
            cert.write_bytes(self.server.pem + self.ca.pem)
            key.write_bytes(self.server.key_pem)
            context.load_cert_chain(cert, key)
        return context


@dataclass
class _Flow:
    stream: trio.SSLStream[trio.SocketStream]
    peer: str
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    responses: list[Response] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    got: trio.Event = field(default_factory=trio.Event)
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def send(self, message: Request | Response | bytes) -> None:
        data = message if isinstance(message, bytes) else serialize(message)
        async with self.send_lock:
            await self.stream.send_all(data)


class TestRegistrar:
    """The registrar. Use `async with TestRegistrar(...) as registrar` inside a trio test."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        *,
        pki: Pki | None = None,
        users: dict[str, str] | None = None,
        min_expires: int = 0,
        max_expires: int = 3600,
        answer_pings: bool = True,
        reject_with: int | None = None,
        wrong_password_status: int | None = None,
        flow_timer: int | None = None,
        client_ca: bytes | None = None,
        close_after_200: bool = False,
    ) -> None:
        self.pki = pki or Pki.make()
        # Close each connection right after a 200 to a REGISTER (the 200 and the close_notify
        # leave together).
        self.close_after_200 = close_after_200
        self.users = users if users is not None else {"alice": "s3cret"}
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.answer_pings = answer_pings
        self.reject_with = reject_with
        # None: a wrong password is challenged again; 403: refused, as Kamailio's auth does.
        self.wrong_password_status = wrong_password_status
        self.flow_timer = flow_timer
        self.port = 0
        self.bindings: dict[str, tuple[_Flow, str, int]] = {}  # user -> flow, contact, expires
        self.registers: list[Request] = []
        self.pings = 0
        self.connections = 0
        self.on_request: Callable[[Request], None] | None = None
        self._flows: list[_Flow] = []
        self._nonces = (f"nonce{i}" for i in itertools.count())
        self._open_nonces: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._listener_scope: trio.CancelScope | None = None
        self._context = self.pki.server_context(client_ca)
        self.client_certs: list[dict[str, object]] = []
        self._registered = trio.Event()

    async def __aenter__(self) -> Self:
        self._manager = trio.open_nursery()
        self._nursery = await self._manager.__aenter__()
        await self._nursery.start(self._listen)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        await self._manager.__aexit__(None, None, None)

    # -- control --------------------------------------------------------------------------------

    async def restart(self, *, downtime: float = 0.0) -> None:
        """Drops every connection, forgets every binding, stops listening for `downtime`."""
        assert self._nursery is not None
        if self._listener_scope is not None:
            self._listener_scope.cancel()
        for flow in list(self._flows):
            flow.cancel.cancel()
            with trio.CancelScope(shield=True):
                await flow.stream.transport_stream.aclose()
        self._flows.clear()
        self.bindings.clear()
        self._registered = trio.Event()
        if downtime:
            await trio.sleep(downtime)
        await self._nursery.start(self._listen)

    async def wait_registered(self, user: str = "alice", within: float = 10.0) -> None:
        """Waits until `user` has a binding."""
        with trio.fail_after(within):
            while user not in self.bindings:
                await self._registered.wait()
                self._registered = trio.Event()

    async def send_request(self, user: str, request: Request) -> _Flow:
        """Sends `request` to `user` over its registration connection (RFC 5626 §5.3)."""
        flow, _, _ = self.bindings[user]
        await flow.send(request)
        return flow

    async def response(
        self,
        flow: _Flow,
        *,
        status: int | None = None,
        method: str = "INVITE",
        within: float = 10.0,
    ) -> Response:
        """The first response on `flow` (for `method`, with `status` if given), waiting for it."""
        with trio.fail_after(within):
            while True:
                for index, response in enumerate(flow.responses):
                    if response.cseq.method == method and (
                        status is None or response.status == status
                    ):
                        del flow.responses[index]
                        return response
                await flow.got.wait()
                flow.got = trio.Event()

    # -- serving --------------------------------------------------------------------------------

    async def _listen(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as scope:
            self._listener_scope = scope
            task_status.started()
            await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, self._context, server_side=True)
        try:
            with trio.fail_after(10):
                await stream.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError):
            await tcp.aclose()
            return
        self.connections += 1
        peer_cert = stream.getpeercert()
        if peer_cert:
            self.client_certs.append(dict(peer_cert))
        flow = _Flow(stream, str(tcp.socket.getpeername()))
        self._flows.append(flow)
        framer = StreamFramer()
        with flow.cancel:
            try:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    framer.receive_data(bytes(data))
                    while (event := framer.next_event()) is not NEED_DATA:
                        if isinstance(event, KeepalivePing):
                            self.pings += 1
                            if self.answer_pings:
                                await flow.send(b"\r\n")
                        elif isinstance(event, MessageFramed):
                            await self._handle(flow, parse_message(event.data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            finally:
                if flow in self._flows:
                    self._flows.remove(flow)
                with trio.CancelScope(shield=True):
                    await tcp.aclose()

    async def _handle(self, flow: _Flow, message: Request | Response) -> None:
        if isinstance(message, Response):
            flow.responses.append(message)
            flow.got.set()
            return
        if self.on_request is not None:
            self.on_request(message)
        if message.method == "REGISTER":
            response = self._register(flow, message)
            closing = self.close_after_200 and response.status == 200
            if closing:  # corked: the 200's record and the close_notify leave as one segment
                flow.stream.transport_stream.socket.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_CORK, 1
                )
            await flow.send(response)
            if closing:
                await flow.stream.aclose()
                raise trio.ClosedResourceError
        elif message.method == "ACK":
            flow.requests.append(message)
            flow.got.set()
        else:
            flow.requests.append(message)
            flow.got.set()
            await flow.send(make_response(message, 200, to_tag="registrar"))

    def _register(self, flow: _Flow, request: Request) -> Response:
        self.registers.append(request)
        if self.reject_with is not None:
            return make_response(request, self.reject_with, to_tag="registrar")
        user = request.to.uri.user if hasattr(request.to.uri, "user") else None
        if user is None or user not in self.users:
            return make_response(request, 404, to_tag="registrar")
        authorization = request.headers.get("Authorization")
        if authorization is None or not self._check(request, authorization, self.users[user]):
            if authorization is not None and self.wrong_password_status is not None:
                return make_response(request, self.wrong_password_status, to_tag="registrar")
            return self._challenge(request)
        expires = request.expires if request.expires is not None else 3600
        if 0 < expires < self.min_expires:
            response = make_response(request, 423, to_tag="registrar")
            response.headers.add("Min-Expires", str(self.min_expires))
            return response
        [contact] = request.headers.get_all("Contact")
        if expires == 0:
            self.bindings.pop(user, None)
            return make_response(request, 200, to_tag="registrar")
        granted = min(expires, self.max_expires)
        self.bindings[user] = (flow, contact, granted)
        self._registered.set()
        response = make_response(request, 200, to_tag="registrar")
        response.headers.add("Contact", f"{contact};expires={granted}")
        response.headers.add("Require", "outbound")
        if self.flow_timer is not None:
            response.headers.add("Flow-Timer", str(self.flow_timer))
        return response

    def _challenge(self, request: Request) -> Response:
        nonce = next(self._nonces)
        self._open_nonces.add(nonce)
        response = make_response(request, 401, to_tag="registrar")
        response.headers.add(
            "WWW-Authenticate",
            f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5',
        )
        return response

    def _check(self, request: Request, authorization: str, password: str) -> bool:
        params: dict[str, str] = {}
        for part in authorization.removeprefix("Digest ").split(","):
            key, _, value = part.strip().partition("=")
            params[key.lower()] = value.strip('"')
        nonce = params.get("nonce", "")
        if nonce not in self._open_nonces:
            return False
        md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
        ha1 = md5(f"{params.get('username')}:{REALM}:{password}")
        ha2 = md5(f"{request.method}:{params.get('uri')}")
        expected = md5(
            f"{ha1}:{nonce}:{params.get('nc')}:{params.get('cnonce')}:{params.get('qop')}:{ha2}"
        )
        return params.get("response") == expected
