"""G.711 µ-law (PCMU) and A-law (PCMA) codecs (ITU-T G.711), table-based.

The standard library's `audioop` is deprecated and removed in Python 3.13, and the codec is a
few lines, so it is written here: each direction is a lookup table computed once from the
G.711 segment rules (decode: 256 entries; encode: one entry per 16-bit sample value). Samples
are signed 16-bit little-endian PCM, as WAV files hold them.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Final, Literal

Codec = Literal["pcmu", "pcma"]
CODECS: Final[tuple[Codec, ...]] = ("pcmu", "pcma")
#: The RTP payload type of each codec (RFC 3551 static types).
PAYLOAD_TYPES: Final[dict[Codec, int]] = {"pcmu": 0, "pcma": 8}
#: The encoding of digital silence (sample 0), to fill frames when there is nothing to send.
SILENCE_BYTE: Final[dict[Codec, int]] = {"pcmu": 0xFF, "pcma": 0xD5}

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159  # in 14-bit units


def _ulaw_encode(sample: int) -> int:
    value = sample >> 2  # 14-bit
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = max(0, value.bit_length() - 6)
    if segment >= 8:
        return 0x7F ^ mask
    return (segment << 4 | (value >> (segment + 1)) & 0x0F) ^ mask


def _ulaw_decode(byte: int) -> int:
    byte = ~byte & 0xFF
    exponent = (byte >> 4) & 0x07
    sample = (((byte & 0x0F) << 3) + _ULAW_BIAS << exponent) - _ULAW_BIAS
    return -sample if byte & 0x80 else sample


def _alaw_encode(sample: int) -> int:
    value = sample >> 3  # 13-bit
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = max(0, value.bit_length() - 5)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return (segment << 4 | (value >> shift) & 0x0F) ^ mask


def _alaw_decode(byte: int) -> int:
    byte ^= 0x55
    sample = (byte & 0x0F) << 4
    segment = (byte & 0x70) >> 4
    if segment == 0:
        sample += 8
    else:
        sample = (sample + 0x108) << (segment - 1)
    return sample if byte & 0x80 else -sample


@cache
def _decode_table(codec: Codec) -> tuple[bytes, ...]:
    decode = _ulaw_decode if codec == "pcmu" else _alaw_decode
    return tuple(struct.pack("<h", decode(byte)) for byte in range(256))


@cache
def _encode_table(codec: Codec) -> bytes:
    encode = _ulaw_encode if codec == "pcmu" else _alaw_encode
    # Indexed by the sample as an unsigned 16-bit value.
    return bytes(encode(value - 65536 if value >= 32768 else value) for value in range(65536))


def encode(codec: Codec, pcm: bytes) -> bytes:
    """G.711 bytes of signed 16-bit little-endian PCM (one byte per sample)."""
    table = _encode_table(codec)
    count = len(pcm) // 2
    return bytes(table[value] for value in struct.unpack(f"<{count}H", pcm[: 2 * count]))


def decode(codec: Codec, data: bytes) -> bytes:
    """Signed 16-bit little-endian PCM of G.711 bytes (two bytes per sample)."""
    table = _decode_table(codec)
    return b"".join(table[byte] for byte in data)
