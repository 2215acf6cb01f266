from __future__ import annotations

import random
import re

import pytest

from sipua.sip.ids import (
    BRANCH_MAGIC_COOKIE,
    new_branch,
    new_call_id,
    new_cnonce,
    new_tag,
    random_hex,
)


def test_branch_starts_with_the_magic_cookie_and_is_a_token() -> None:
    branch = new_branch(random.Random(1))
    assert branch.startswith(BRANCH_MAGIC_COOKIE)
    assert re.fullmatch(r"z9hG4bK[0-9a-f]{24}", branch)


def test_ids_are_reproducible_from_a_seeded_source() -> None:
    assert new_branch(random.Random(7)) == new_branch(random.Random(7))
    assert new_tag(random.Random(7)) == new_tag(random.Random(7))


def test_ids_from_one_source_differ() -> None:
    rng = random.Random(3)
    branches = {new_branch(rng) for _ in range(1000)}
    assert len(branches) == 1000


def test_widths_are_fixed_even_for_small_numbers() -> None:
    class Zero:
        def getrandbits(self, k: int, /) -> int:
            return 0

    assert new_tag(Zero()) == "0" * 16
    assert new_cnonce(Zero()) == "0" * 32
    assert new_call_id(Zero()) == "0" * 32


def test_call_id_with_host() -> None:
    call_id = new_call_id(random.Random(2), "client.example.com")
    assert re.fullmatch(r"[0-9a-f]{32}@client\.example\.com", call_id)


def test_system_random_is_accepted() -> None:
    assert len(new_cnonce(random.SystemRandom())) == 32


@pytest.mark.parametrize("bits", [0, -4, 6])
def test_random_hex_rejects_bad_widths(bits: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        random_hex(random.Random(), bits)
