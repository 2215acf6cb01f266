"""The package metadata in pyproject.toml builds without deprecation warnings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_license_is_an_spdx_expression_with_a_backend_that_reads_it() -> None:
    # A TOML table (`license = { text = ... }`) makes setuptools >= 77 print a deprecation
    # warning on every build; PEP 639's SPDX string is the current form, and setuptools reads
    # it from 77 on, so the build requirement says so.
    data = tomllib.loads(PYPROJECT.read_text())
    assert data["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in data["project"]["classifiers"])
    (setuptools,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert match is not None, setuptools
    assert int(match[1]) >= 77
