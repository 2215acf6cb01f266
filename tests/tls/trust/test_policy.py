"""`TrustPolicy`: values, validation, and what each setting changes."""

from __future__ import annotations

import dataclasses

import pytest

from sipua.tls import TrustPolicy


def test_defaults_are_the_safe_ones() -> None:
    policy = TrustPolicy()
    assert policy.only_trusted is True
    assert policy.accepted_ca == "all"
    assert policy.cn_validation is True
    assert policy.allow_wildcards is False


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrustPolicy().only_trusted = False  # type: ignore[misc]


@pytest.mark.parametrize("value", ["Default", "none", "", "both"])
def test_invalid_accepted_ca(value: str) -> None:
    with pytest.raises(ValueError, match="accepted_ca must be one of default, custom, all"):
        TrustPolicy(accepted_ca=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["only_trusted", "cn_validation", "allow_wildcards"])
def test_flags_must_be_booleans(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrustPolicy(**{field: "yes"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("accepted", "kinds", "expected"),
    [
        ("all", {"default"}, True),
        ("all", {"custom"}, True),
        ("default", {"default"}, True),
        ("default", {"custom"}, False),
        ("custom", {"custom"}, True),
        ("custom", {"default"}, False),
        ("custom", {"default", "custom"}, True),
        ("all", set(), False),
    ],
)
def test_accepts(accepted: str, kinds: set[str], expected: bool) -> None:
    policy = TrustPolicy(accepted_ca=accepted)  # type: ignore[arg-type]
    assert policy.accepts(kinds) is expected  # type: ignore[arg-type]
