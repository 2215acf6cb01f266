"""SRTP (RFC 3711) with SDES keys (RFC 4568), through libsrtp (the `pylibsrtp` binding).

The suites are the ones desk phones and PBXs offer: AES_CM_128_HMAC_SHA1_80 and _32 (RFC 4568
§6.2) and the AEAD GCM suites of RFC 7714 §12. The cryptography is libsrtp's: this module maps a
suite name to libsrtp's profile, encodes and decodes the `inline:` key parameter, and turns
libsrtp's errors into `SrtpAuthFailed` (a packet that does not authenticate, or replays) and
`SrtpError`. Keys come from a random source the caller passes in (`KeySource`: n -> n bytes).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import pylibsrtp

from sipua.media.errors import SrtpAuthFailed, SrtpError
from sipua.media.rtp import MAX_PACKET_BYTES

#: n -> n random bytes from a cryptographic source (`secrets.token_bytes` in production).
KeySource = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """One SDES crypto-suite and the libsrtp profile that implements it."""

    name: str
    profile: int
    key_bytes: int
    salt_bytes: int

    @property
    def master_bytes(self) -> int:
        """The length of the `inline:` key: master key then master salt."""
        return self.key_bytes + self.salt_bytes


#: The suites sipua offers, in its order of preference, and accepts.
SUITES: Final[tuple[SrtpSuite, ...]] = (
    SrtpSuite("AES_CM_128_HMAC_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
    SrtpSuite("AES_CM_128_HMAC_SHA1_32", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16, 14),
    SrtpSuite("AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    SrtpSuite("AEAD_AES_256_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12),
)
SUITES_BY_NAME: Final = {suite.name: suite for suite in SUITES}
# RFC 4568 §9.2: "inline:" key-salt ["|" lifetime] ["|" MKI ":" length]
_KEY_PARAM: Final = re.compile(
    r"inline:(?P<key>[A-Za-z0-9+/]{1,128}={0,2})(?:\|(?P<lifetime>2\^[0-9]{1,2}|[0-9]{1,20}))?"
    r"(?:\|(?P<mki>[0-9]{1,10}:[0-9]{1,3}))?",
    re.ASCII,
)
#: libsrtp's error for a packet whose tag does not verify: counted as an auth failure. A replay
#: (a duplicate from the network) is an `SrtpError` like any other dropped packet.
_AUTH_ERRORS: Final = frozenset({"authentication failure"})


def new_master_key(suite: SrtpSuite, random_bytes: KeySource) -> bytes:
    """A fresh master key and salt for `suite`."""
    key = random_bytes(suite.master_bytes)
    if len(key) != suite.master_bytes:
        raise SrtpError(f"the key source gave {len(key)} bytes, not {suite.master_bytes}")
    return key


def inline_key(key: bytes) -> str:
    """The key parameter of an a=crypto line (RFC 4568 §6.1): `inline:<base64 key||salt>`."""
    return "inline:" + base64.b64encode(key).decode("ascii")


def decode_key_params(suite: SrtpSuite, key_params: str) -> bytes:
    """The master key and salt of an offered or answered a=crypto key parameter.

    One key only (several `inline:` keys need MKIs, which sipua does not use); a lifetime is
    accepted and ignored (calls are far shorter than 2^31 packets).

    Raises:
        SrtpError: not `inline:<base64>`, not base64, the wrong length for the suite, or with
            an MKI.
    """
    match = _KEY_PARAM.fullmatch(key_params)
    if match is None:
        raise SrtpError(f"{suite.name} key is not 'inline:<base64>[|lifetime]'")
    if match["mki"] is not None:
        raise SrtpError(f"{suite.name} key has an MKI, which sipua does not support")
    try:
        key = base64.b64decode(match["key"] + "=" * (-len(match["key"]) % 4), validate=True)
    except binascii.Error:
        raise SrtpError(f"{suite.name} key is not valid base64") from None
    if len(key) != suite.master_bytes:
        raise SrtpError(
            f"{suite.name} key is {len(key)} bytes, not {suite.master_bytes} (key and salt)"
        )
    return key


def _error(exc: pylibsrtp.Error | ValueError, what: str) -> SrtpError:
    reason = str(exc)
    if reason in _AUTH_ERRORS:
        return SrtpAuthFailed(f"{what}: {reason}")
    return SrtpError(f"{what}: {reason}")


class SrtpContext:
    """Both directions of one SRTP stream: our key protects, the peer's key unprotects.

    libsrtp keeps the rollover counters and replay windows per SSRC; any SSRC is accepted inbound
    and outbound (the session decides which source it takes).
    """

    def __init__(self, suite: SrtpSuite, *, local_key: bytes, remote_key: bytes) -> None:
        self.suite = suite
        try:
            self._out = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=local_key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=suite.profile,
                )
            )
            self._in = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=remote_key,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                    srtp_profile=suite.profile,
                )
            )
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise SrtpError(f"libsrtp refused the {suite.name} keys: {exc}") from None

    def protect(self, packet: bytes) -> bytes:
        """The SRTP packet of an RTP packet we send."""
        try:
            return self._out.protect(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc, "SRTP protect failed") from None

    def protect_rtcp(self, packet: bytes) -> bytes:
        """The SRTCP packet of an RTCP packet we send."""
        try:
            return self._out.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc, "SRTCP protect failed") from None

    def unprotect(self, packet: bytes) -> bytes:
        """The RTP packet inside a received SRTP packet.

        Raises:
            SrtpAuthFailed: it does not authenticate.
            SrtpError: a replay, or libsrtp cannot read it at all (too short, too long).
        """
        if not 12 <= len(packet) <= MAX_PACKET_BYTES:
            raise SrtpError(f"SRTP packet of {len(packet)} bytes is not 12-{MAX_PACKET_BYTES}")
        try:
            return self._in.unprotect(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc, "SRTP packet dropped") from None

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The RTCP packet inside a received SRTCP packet (errors as `unprotect`)."""
        if not 8 <= len(packet) <= MAX_PACKET_BYTES:
            raise SrtpError(f"SRTCP packet of {len(packet)} bytes is not 8-{MAX_PACKET_BYTES}")
        try:
            return self._in.unprotect_rtcp(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc, "SRTCP packet dropped") from None
