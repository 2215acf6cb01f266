"""The operational error tree: what can go wrong for a user, and what to do about it.

Every error that reaches the command line is a `SipuaError`. Its message names what failed and
where (file, setting, peer, check), and its `exit_code` is the process exit status the CLI
returns, a contract CI jobs rely on (see the README):

    0 success; 2 usage or configuration error; 3 TLS handshake or certificate verification
    failure; 4 registration refused (403, authentication failure); 5 network failure or timeout;
    6 a call we placed was not answered (refused, cancelled after the ring timeout, no answer);
    7 a call we placed was answered but no media arrived.

Foreign exceptions (OpenSSL, dnspython, trio, OS errors) are translated into these at the edge
of the module that calls the foreign library, with `raise ... from exc`, so callers never see
them. Protocol errors about SIP bytes live in `sipua.sip.errors` (the core is dependency free).
"""

from __future__ import annotations

import os
from typing import ClassVar, Final

from sipua.sip.errors import bounded_message

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_TLS: Final = 3
EXIT_REFUSED: Final = 4
EXIT_NETWORK: Final = 5
EXIT_CALL_FAILED: Final = 6
EXIT_NO_MEDIA: Final = 7


#: Longest message an operational error carries. Messages quote foreign text (a file's bytes
#: inside cryptography's complaint, an OpenSSL reason, a peer's answer), so they are bounded:
#: the head and the tail (where the advice is) are kept.
MAX_MESSAGE_CHARS: Final = 1024


def os_error_reason(exc: OSError) -> str:
    """The system's words for an OS error ("Connection refused"), to follow sipua's own context.

    Not `strerror` as it comes: trio writes the address into it ("Error connecting to
    ('127.0.0.1', 5999): Connection refused"), which the message around it already names.
    """
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


class SipuaError(Exception):
    """Root of every error sipua reports to a user."""

    exit_code: ClassVar[int] = 1

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (bounded_message(args[0], MAX_MESSAGE_CHARS),)
        super().__init__(*args)


class ConfigError(SipuaError):
    """A setting, flag or configuration file is wrong; the message names which and why."""

    exit_code = EXIT_USAGE


class CertificateError(SipuaError):
    """A certificate or key file cannot be used (not a certificate, wrong format, mismatch...)."""

    exit_code = EXIT_USAGE


class StoreError(SipuaError):
    """The certificate store refused an operation (limit reached, duplicate, unknown id...)."""

    exit_code = EXIT_USAGE


class TlsError(SipuaError):
    """TLS could not be established or was lost."""

    exit_code = EXIT_TLS


class HandshakeFailed(TlsError):
    """The TLS handshake itself failed (protocol, version, cipher, garbage from the peer)."""


class PeerNotTrusted(TlsError):
    """The peer's certificate failed verification under the trust policy.

    `code` is the machine-readable check that failed (the codes of `sipua.tls.verify_chain`).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class TlsAlertReceived(TlsError):
    """The peer ended an established TLS connection with an alert.

    Under TLS 1.3 a server checks our client certificate after the handshake has finished on our
    side, so its refusal ("certificate required", "unknown ca") arrives as an alert on the first
    read: a TLS failure (exit code 3), not a network one.
    """


class ClientCertificateRefused(TlsError):
    """The server asked for our client certificate, then closed before any SIP answer.

    Some servers (pjsip's, e.g. in Asterisk) judge the client certificate after a TLS 1.3
    handshake has finished on our side and, when they refuse it, close the connection without
    an alert. A close before the first response on such a connection is most likely that
    refusal: a TLS failure (exit code 3), not a network one.
    """


class TransportError(SipuaError):
    """The network path failed: connect refused, timeout, connection lost."""

    exit_code = EXIT_NETWORK


class ConnectFailed(TransportError):
    """No connection could be opened to the peer."""


class ConnectionLost(TransportError):
    """An established connection closed or broke."""


class FramingError(TransportError):
    """The peer sent a byte stream that cannot be split into SIP messages."""


class LocateError(TransportError):
    """RFC 3263 server location found no usable target."""


class RegistrationError(SipuaError):
    """The registrar refused the registration (a final non-2xx other than a challenge)."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationFailed(RegistrationError):
    """The registrar rejected our credentials (a second challenge for the same nonce, 403)."""


class CallFailed(SipuaError):
    """A call we placed was not answered: refused with a final response, cancelled after the
    ring timeout, or no answer at all (exit code 6)."""

    exit_code = EXIT_CALL_FAILED

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoMediaReceived(SipuaError):
    """A call we placed was answered and ended, but not one RTP packet arrived (exit code 7)."""

    exit_code = EXIT_NO_MEDIA
