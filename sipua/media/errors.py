"""The media errors: what can go wrong with RTP, SRTP, the offer/answer and the media files.

Peer input (datagrams, SDP) raises `RtpError` and `SrtpError` (counted and dropped by the
session, never fatal) or `MediaRefused` (the call answers with its `status`). What the user
configured raises `MediaSourceError`; an exhausted port range raises `PortRangeExhausted`, which
a call answers with 503.
"""

from __future__ import annotations

from sipua.errors import EXIT_NETWORK, EXIT_USAGE, SipuaError


class MediaError(SipuaError):
    """Root of the media errors."""


class RtpError(MediaError):
    """A datagram is not an RTP or RTCP packet we can read; the message says what is wrong."""


class SrtpError(MediaError):
    """SRTP could not protect or unprotect a packet, or a key is not usable for its suite."""


class SrtpAuthFailed(SrtpError):
    """A received SRTP/SRTCP packet failed authentication: it is counted and dropped."""


class MediaRefused(MediaError):
    """The offer or answer cannot be accepted under the SRTP policy or offers no usable stream.

    `status` is the SIP response that refuses it (488 Not Acceptable Here, RFC 3261 §21.4.26)
    and the message is the Warning text that says why.
    """

    def __init__(self, message: str, *, status: int = 488) -> None:
        super().__init__(message)
        self.status = status


class PortRangeExhausted(MediaError):
    """No even port pair of the configured media port range could be bound (answer 503)."""

    exit_code = EXIT_NETWORK


class MediaSourceError(MediaError):
    """A media source or recording cannot be used (a WAV file that is not 8 kHz mono 16-bit)."""

    exit_code = EXIT_USAGE
