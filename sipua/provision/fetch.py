"""Fetching a provisioning URL: `https://` over sipua's own TLS, `file://`, `http://` if allowed.

Theory of operation. HTTPS runs over `sipua.tls.connection.listener.open_tls_stream`, the same
TLS client as a SIP flow, with the configuration `TlsSetup.client(host)` builds: the trust
policy and the trusted list as they stand, the same identity rules (the URL's host must be in
the certificate), and the device certificate as client certificate when the server asks (as a
desk phone presents its own certificate to an HTTPS provisioning server). No byte of the
request is sent before the server passed.

HTTP/1.1 is h11 (python-hyper's sans-IO protocol engine, the one httpx uses underneath): sipua
feeds it the stream's bytes (`ResponseReader`). httpx itself was not used: its TLS is the
standard library's `ssl`, whose verification cannot call sipua's verifier during the handshake,
so it would be a second, different trust decision (no CA type, no RFC 5922 identity, no
strength floor, other messages).

Bounds: one GET, no redirects followed (give the final URL), a response head of at most
`MAX_HEAD_BYTES`, a body of at most `MAX_BODY_BYTES` (the phone's 5 MB per file), the whole
fetch within a timeout. Every failure is a `FetchError` naming the URL and what went wrong; its
`exit_code` is 3 for a TLS or certificate failure, 5 for the network and the server's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import h11
import trio

from sipua import __version__, storage
from sipua.errors import EXIT_NETWORK, EXIT_TLS, SipuaError, StoreError, TlsError
from sipua.settings.model import provisioning_url_scheme
from sipua.tls.connection.context import TlsClientConfig
from sipua.tls.connection.listener import open_tls_stream

#: The largest file a provisioning URL may serve (the phone's limit).
MAX_BODY_BYTES: Final = storage.MAX_FILE_BYTES
#: The largest response head (status line and headers).
MAX_HEAD_BYTES: Final = 16 * 1024
#: Seconds a whole fetch (connect, handshake, request, response) may take.
FETCH_TIMEOUT_SECONDS: Final = 30.0
_RECEIVE_BYTES: Final = 64 * 1024


class FetchError(SipuaError):
    """A provisioning URL could not be fetched; the message names the URL and why."""

    exit_code = EXIT_NETWORK

    def __init__(self, message: str, *, exit_code: int = EXIT_NETWORK) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # per instance: TLS or network


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed provisioning URL."""

    scheme: str
    host: str
    port: int
    authority: str  # host[:port] as the URL wrote it: the Host header, and the peer in messages
    target: str  # path and query, as sent in the request line
    path: Path | None  # file:// only


def parse_url(url: str) -> Target:
    """Splits a provisioning URL.

    Raises:
        FetchError: not an https://, http:// or file:// URL sipua can fetch.
    """
    try:
        scheme = provisioning_url_scheme(url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"{url[:200]}: {exc}") from None
    if scheme == "file":
        return Target(scheme, "", 0, "", "", Path(unquote(parts.path)))
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if scheme == "https" else 80
    authority = parts.netloc.rpartition("@")[2]
    return Target(scheme, host, port if port is not None else default, authority, target, None)


class ResponseReader:
    """The response to one GET, read with h11 from the bytes the caller feeds.

    Args:
        url: The URL, for messages.
        limit: The largest body accepted.

    Raises (from `feed`):
        FetchError: a malformed response, a status other than 200, a head or body over the
            limit, or a connection that ended before the body did.
    """

    def __init__(self, url: str, *, limit: int = MAX_BODY_BYTES) -> None:
        self._url = url
        self._limit = limit
        self._connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._body = bytearray()

    def request(self, host: str, target: str) -> bytes:
        """The bytes of the GET request."""
        headers = [
            ("Host", host),
            ("User-Agent", f"sipua/{__version__}"),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ]
        connection = self._connection
        try:
            head = connection.send(h11.Request(method="GET", target=target, headers=headers))
            end = connection.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise FetchError(f"{self._url}: cannot request it ({exc})") from None
        return (head or b"") + (end or b"")

    def feed(self, data: bytes) -> bytes | None:
        """Feeds bytes read from the server (b"" at the end of the stream).

        Returns:
            The whole body once the response is complete, else None (feed more).
        """
        connection = self._connection
        try:
            connection.receive_data(data)
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        raise FetchError(
                            f"{self._url}: the server closed the connection before the end "
                            "of the response"
                        )
                    return None
                if isinstance(event, h11.Response):
                    self._check_head(event)
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) > self._limit:
                        raise self._too_large()
                elif isinstance(event, h11.EndOfMessage):
                    return bytes(self._body)
                elif isinstance(event, h11.ConnectionClosed):
                    raise FetchError(
                        f"{self._url}: the server closed the connection before the end of the "
                        "response"
                    )
                # InformationalResponse (1xx): wait for the final one.
        except h11.RemoteProtocolError as exc:
            raise FetchError(
                f"{self._url}: the server's answer is not valid HTTP/1.1 ({str(exc)[:200]})"
            ) from None

    def _check_head(self, response: h11.Response) -> None:
        status = response.status_code
        if status != 200:
            reason = response.reason.decode("ascii", "replace")[:80]
            hint = "; redirects are not followed: give the final URL" if 300 <= status < 400 else ""
            raise FetchError(f"{self._url}: the server answered {status} {reason}{hint}")
        for name, value in response.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self._limit:
                raise self._too_large()

    def _too_large(self) -> FetchError:
        return FetchError(
            f"{self._url}: the file is larger than {self._limit // (1024 * 1024)} MB, the limit "
            "for a provisioned certificate file; nothing was stored"
        )


async def fetch(
    url: str,
    *,
    client: TlsClientConfig | None,
    allow_http: bool = False,
    seconds: float = FETCH_TIMEOUT_SECONDS,
    limit: int = MAX_BODY_BYTES,
) -> bytes:
    """The content at `url`.

    Args:
        url: An https://, file:// or (with `allow_http`) http:// URL.
        client: The TLS client configuration for https:// (`TlsSetup.client(host)`); its
            server name must be the URL's host.
        allow_http: Allow plain http://.
        seconds: How long the whole fetch may take.
        limit: The largest content accepted.

    Raises:
        FetchError: the URL cannot be fetched; the message says why.
    """
    where = parse_url(url)
    if where.scheme == "file":
        assert where.path is not None
        try:
            data = storage.read_bounded(where.path, limit=limit)
        except StoreError as exc:
            raise FetchError(f"{url}: {exc}") from None
        return data
    if where.scheme == "http" and not allow_http:
        raise FetchError(
            f"{url}: plain http:// is refused (anyone on the path could change what sipua "
            "trusts); use https://, or allow it with certificates.allow_http",
            exit_code=EXIT_TLS,
        )
    try:
        with trio.fail_after(seconds):
            return await _get(url, where, client, limit)
    except trio.TooSlowError:
        raise FetchError(f"{url}: no complete answer within {seconds:g} s") from None
    except TlsError as exc:
        raise FetchError(f"{url}: {exc}", exit_code=EXIT_TLS) from None
    except SipuaError as exc:
        if isinstance(exc, FetchError):
            raise
        raise FetchError(f"{url}: {exc}") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise FetchError(f"{url}: the connection failed ({exc})") from None


async def _get(url: str, where: Target, client: TlsClientConfig | None, limit: int) -> bytes:
    reader = ResponseReader(url, limit=limit)
    stream: trio.abc.Stream
    if where.scheme == "https":
        if client is None or client.server_name != where.host:
            raise ValueError("an https:// fetch needs the TLS configuration of its host")
        stream = await open_tls_stream(where.host, where.port, client, peer=where.authority)
    else:
        stream = await trio.open_tcp_stream(where.host, where.port)
    async with stream:
        await stream.send_all(reader.request(where.authority, where.target))
        while True:
            data = await stream.receive_some(_RECEIVE_BYTES)
            body = reader.feed(data)
            if body is not None:
                return body
