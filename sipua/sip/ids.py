"""Random identifiers of SIP: branches, tags, Call-IDs and digest cnonces.

Every factory takes the randomness source as an argument (anything with `getrandbits`, such as
`random.Random(seed)` in tests or `random.SystemRandom()` in the UA), so the core never touches
module-level randomness and tests are reproducible. The identifiers are hex strings: they need
to be unique and unguessable, not pretty, and hex is legal in every place they go (a Via
`branch` token, a `tag` token, a Call-ID `word`, a quoted cnonce).
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = [
    "BRANCH_MAGIC_COOKIE",
    "RandomSource",
    "new_branch",
    "new_call_id",
    "new_cnonce",
    "new_tag",
    "random_hex",
]

# RFC 3261 §8.1.1.7: a branch from an RFC 3261 element MUST start with this cookie, so that
# servers can tell it was built to be globally unique (and use §17.2.3 matching).
BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"

# Bits of randomness per identifier. RFC 3261 §19.3 asks for at least 32 random bits in a tag
# and "cryptographically random" Call-IDs; 96+ bits makes collisions and guessing irrelevant.
BRANCH_BITS: Final = 96
TAG_BITS: Final = 64
CALL_ID_BITS: Final = 128
CNONCE_BITS: Final = 128


class RandomSource(Protocol):
    """What the id factories need from a random generator (`random.Random` fits)."""

    def getrandbits(self, k: int, /) -> int:
        """Return a non-negative integer with `k` random bits."""
        ...


def random_hex(rng: RandomSource, bits: int) -> str:
    """Return `bits` random bits as lowercase hex, zero-padded to a fixed width.

    Args:
        rng: the randomness source.
        bits: number of random bits; must be a positive multiple of 4.

    Raises:
        ValueError: if `bits` is not a positive multiple of 4.
    """
    if bits <= 0 or bits % 4:
        raise ValueError(f"random_hex needs a positive multiple of 4 bits, got {bits}")
    return format(rng.getrandbits(bits), f"0{bits // 4}x")


def new_branch(rng: RandomSource) -> str:
    """Return a new Via branch: the RFC 3261 magic cookie plus 96 random bits (§8.1.1.7)."""
    return BRANCH_MAGIC_COOKIE + random_hex(rng, BRANCH_BITS)


def new_tag(rng: RandomSource) -> str:
    """Return a new From/To tag with 64 random bits (RFC 3261 §19.3)."""
    return random_hex(rng, TAG_BITS)


def new_call_id(rng: RandomSource, host: str | None = None) -> str:
    """Return a new Call-ID with 128 random bits, optionally as `random@host` (§8.1.1.4).

    Args:
        rng: the randomness source.
        host: an optional host name or address to append after `@`.
    """
    word = random_hex(rng, CALL_ID_BITS)
    return f"{word}@{host}" if host else word


def new_cnonce(rng: RandomSource) -> str:
    """Return a new digest client nonce with 128 random bits (RFC 7616 §3.4)."""
    return random_hex(rng, CNONCE_BITS)
