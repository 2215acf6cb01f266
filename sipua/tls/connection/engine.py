"""`TlsEngine`: a typed, I/O-free facade over a pyOpenSSL memory-BIO connection.

`SSL.Connection(context, None)` keeps two memory buffers instead of a socket: ciphertext from
the peer is written into the incoming one (`receive_data`), and whatever OpenSSL wants to send
is read out of the outgoing one (`data_to_send`). Every TLS operation (handshake step, read,
write, close) may then need more input ("want read") and may have produced output; the caller
(`TlsStream`) moves the bytes and retries. Memory BIOs never block on writing, so "want write"
does not happen.

This module translates pyOpenSSL's exception-driven results into values and sipua's errors,
so nothing above it sees an OpenSSL exception:

* want read                           -> `WANT_READ`
* `ZeroReturnError` (close_notify)    -> `b""` from `read`, `closed_cleanly` becomes True
* `SysCallError` (EOF, no close_notify) -> `ConnectionLost` naming the truncation, or
                                         `HandshakeFailed` during the handshake
* any other `SSL.Error` (alerts, garbage) -> `HandshakeFailed` (with OpenSSL's reason, e.g.
                                         "no shared cipher") or `ConnectionLost` after it

The engine knows no time and no sockets; timeouts belong to the stream.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Final

from cryptography import x509
from OpenSSL import SSL

from sipua.errors import ConnectionLost, HandshakeFailed, TlsAlertReceived
from sipua.tls.connection.context import (
    HandshakeNotes,
    learn_key_share,
    learned_key_share_groups,
    openssl_reason,
    sni_name,
)
from sipua.tls.connection.events import OpenSslVerdict
from sipua.tls.trust.identity import ascii_host

# Alerts by which a server refuses the client certificate we presented (RFC 8446 §6.2).
_CERTIFICATE_ALERTS: Final = (
    "certificate required",
    "unknown ca",
    "bad certificate",
    "certificate unknown",
    "unsupported certificate",
    "certificate expired",
    "certificate revoked",
    "access denied",
)

# OpenSSL's reasons when client and server share no protocol version.
_VERSION_MISMATCH: Final = ("protocol version", "unsupported protocol")
_VERSION_HINT: Final = (
    "; the server and sipua share no TLS version: sipua offers --tls-min-version (1.2 by default) "
    "and newer, while the server may offer only older ones (a pjproject-based server, such as an "
    "Asterisk TLS transport without `method`, offers TLS 1.0 only)"
)

#: Upper bound on one `data_to_send` drain; OpenSSL's records are ≤ 16 KiB + overhead, and a
#: write can queue many, so the bound is a sanity cap, not a record size.
MAX_PENDING_CIPHERTEXT_BYTES: Final = 64 * 1024 * 1024
_BIO_READ_CHUNK: Final = 64 * 1024


def _set_connection_groups(conn: SSL.Connection, groups: bytes) -> None:
    # pyOpenSSL 26 has no call for a connection's groups (SSL_set1_groups_list; its alias
    # SSL_set1_curves_list is in the binding, as for `context._set_groups`). Without it, or if
    # OpenSSL refuses the list, the context's default key shares stay: only speed is lost.
    from OpenSSL._util import lib as _lib

    setter = getattr(_lib, "SSL_set1_curves_list", None)
    if setter is not None and setter(conn._ssl, groups) != 1:
        _lib.ERR_clear_error()


class Want(enum.Enum):
    """The engine needs more ciphertext from the peer before this operation can finish."""

    READ = "want-read"


WANT_READ: Final = Want.READ


class TlsEngine:
    """One TLS connection's state machine, without I/O.

    Args:
        context: A fully built context (`client_context`/`server_context` in `context.py`).
        server_side: True to accept, False to connect.
        server_name: Client side: the TLS name; sent as SNI unless it is an IP literal.
        learn_key_share: Client side, a context on OpenSSL's default groups: offer only the
            key share `server_name` used when it was last verified (`remember_key_share`;
            see `context.learn_key_share`).
    """

    def __init__(
        self,
        context: SSL.Context,
        *,
        server_side: bool,
        server_name: str | None = None,
        learn_key_share: bool = False,
    ) -> None:
        self.server_side = server_side
        self.server_name = server_name
        self._notes = HandshakeNotes()
        self._conn = SSL.Connection(context, None)
        # The context's callbacks record OpenSSL's verdicts (and a CertificateRequest) here.
        self._conn.set_app_data(self._notes)
        self._handshake_done = False
        #: None while open; True after the peer's close_notify; False after a truncation.
        self.closed_cleanly: bool | None = None
        if server_side:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
            sni = sni_name(server_name)
            # RFC 6066 §3: SNI carries the A-label form; IDNA 2008 (`ascii_host`), never the
            # "idna" codec's IDNA 2003, which names another domain (faß.de -> fass.de). A name
            # that is no valid IDN is not sent: the identity check then refuses the peer.
            host = ascii_host(sni) if sni is not None else None
            if host:
                self._conn.set_tlsext_host_name(host.encode("ascii"))
            self._learn_key_share = learn_key_share and bool(server_name)
            if self._learn_key_share:
                groups = learned_key_share_groups(server_name or "")
                if groups is not None:
                    _set_connection_groups(self._conn, groups)

    # -- ciphertext in and out --------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed ciphertext received from the peer."""
        self._conn.bio_write(data)

    def receive_eof(self) -> None:
        """The transport ended: tell OpenSSL no more ciphertext will come."""
        self._conn.bio_shutdown()

    def data_to_send(self) -> bytes:
        """Drain the ciphertext OpenSSL produced (b"" when there is none)."""
        chunks: list[bytes] = []
        total = 0
        while total < MAX_PENDING_CIPHERTEXT_BYTES:
            try:
                chunk = self._conn.bio_read(_BIO_READ_CHUNK)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    # -- TLS operations ---------------------------------------------------------------------

    @property
    def handshake_done(self) -> bool:
        """True once the handshake finished (verification is the stream's job)."""
        return self._handshake_done

    def handshake(self) -> bool:
        """Run the handshake as far as the ciphertext received allows.

        Returns:
            True when the handshake is complete, False when it wants more ciphertext.

        Raises:
            HandshakeFailed: The peer sent an alert or garbage, no version or cipher was
                shared, or the transport ended mid-handshake.
        """
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.SysCallError as exc:
            raise HandshakeFailed(
                f"TLS handshake failed: {self._peer()} closed the connection during the "
                "handshake (it may not speak TLS, or it refused our version or certificate)"
            ) from exc
        except SSL.Error as exc:
            reason = openssl_reason(exc)
            mismatch = any(m in reason for m in _VERSION_MISMATCH)
            hint = _VERSION_HINT if mismatch and not self.server_side else ""
            raise HandshakeFailed(
                f"TLS handshake failed with {self._peer()}: {reason}{hint}"
            ) from exc
        self._handshake_done = True
        return True

    def read(self, max_bytes: int) -> bytes | Want:
        """Decrypt up to `max_bytes` of plaintext.

        Returns:
            Plaintext; b"" after the peer's close_notify (a clean end); or `WANT_READ`.

        Raises:
            ConnectionLost: The transport ended without close_notify (truncation), or the
                peer sent something that is not valid TLS.
        """
        try:
            return self._conn.recv(max_bytes)
        except SSL.WantReadError:
            return WANT_READ
        except SSL.ZeroReturnError:
            self.closed_cleanly = True
            return b""
        except SSL.SysCallError as exc:
            self.closed_cleanly = False
            raise ConnectionLost(
                f"{self._peer()} closed the connection without a TLS close_notify "
                "(truncated); anything it sent last may be lost"
            ) from exc
        except SSL.Error as exc:
            raise self._broken(exc, "") from exc

    def write(self, data: bytes | memoryview) -> int | Want:
        """Encrypt the start of `data` into the outgoing buffer.

        pyOpenSSL enables partial writes on every context, so OpenSSL may take less than all
        of `data` (one record, 16 KiB, at a time): the caller writes the rest.

        Returns:
            The number of bytes taken (at least 1), or `WANT_READ`; after `WANT_READ`, call
            again with the same bytes once more ciphertext came in (OpenSSL's rule for retried
            writes).

        Raises:
            ConnectionLost: The connection is broken or already closed.
        """
        try:
            return self._conn.send(data)
        except SSL.WantReadError:
            return WANT_READ
        except SSL.ZeroReturnError as exc:
            raise ConnectionLost(f"{self._peer()} already closed the TLS connection") from exc
        except SSL.Error as exc:
            raise self._broken(exc, " while sending") from exc

    def _broken(self, exc: SSL.Error, when: str) -> ConnectionLost | TlsAlertReceived:
        reason = openssl_reason(exc)
        if "alert" not in reason:
            return ConnectionLost(f"TLS connection with {self._peer()} broke{when}: {reason}")
        hint = ""
        if any(word in reason for word in _CERTIFICATE_ALERTS):
            hint = (
                "; it did not accept our client (device) certificate: give it the device CA "
                "(`sipua cert export-ca`) or choose another one with --device-cert"
            )
        return TlsAlertReceived(f"{self._peer()} ended TLS with the alert '{reason}'{hint}")

    def close(self) -> None:
        """Queue our close_notify (collect it with `data_to_send`); errors are ignored.

        We never wait for the peer's close_notify (RFC 8446 §6.1 allows it): the transport is
        closed right after ours is sent.
        """
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()

    def remember_key_share(self) -> None:
        """After the peer was verified: remember its group for the next handshake with it."""
        if not self.server_side and self._learn_key_share:
            learn_key_share(self.server_name or "", self._conn.get_group_name())

    # -- what was negotiated ----------------------------------------------------------------

    @property
    def version(self) -> str:
        """The negotiated protocol version ("TLSv1.2", "TLSv1.3")."""
        return self._conn.get_protocol_version_name()

    @property
    def cipher(self) -> str:
        """The negotiated cipher suite ("" before the handshake)."""
        return self._conn.get_cipher_name() or ""

    @property
    def received_sni(self) -> str | None:
        """Server side: the SNI name the client sent, None if it sent none."""
        name = self._conn.get_servername()
        return name.decode("ascii", "replace") if name else None

    @property
    def openssl_verdicts(self) -> tuple[OpenSslVerdict, ...]:
        """OpenSSL's recorded per-certificate verdicts (advisory)."""
        return tuple(self._notes.verdicts)

    @property
    def certificate_requested(self) -> bool:
        """Client side: the server asked for our certificate (sent a CertificateRequest)."""
        return self._notes.certificate_requested

    def peer_chain(self) -> tuple[x509.Certificate, ...]:
        """The peer's certificates as it sent them, leaf first (empty if it sent none)."""
        chain = list(self._conn.get_peer_cert_chain(as_cryptography=True) or ())
        if not self.server_side:
            # A client's view of the server's chain starts with the leaf (SSL_get_peer_cert_
            # chain(3)); converting the leaf a second time cost ~10 us per handshake.
            return tuple(chain)
        # OpenSSL leaves the leaf out of the server side's view of a client's chain.
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        if leaf is not None and (not chain or chain[0] != leaf):
            chain.insert(0, leaf)
        return tuple(chain)

    def _peer(self) -> str:
        if self.server_side:
            return "the client"
        return f"the server {self.server_name}" if self.server_name else "the server"
