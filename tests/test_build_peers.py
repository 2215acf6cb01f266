"""`scripts/build-peers` checks its sources before it builds anything, and finds cached builds.

These run the script with `--path` (which never builds) against throwaway source folders, so
they cost milliseconds: a tarball must be listed in a SHA256SUMS with its exact digest, the
cache key follows the sources' bytes, and a missing build says how to make it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

BUILD_PEERS = Path(__file__).resolve().parents[1] / "scripts" / "build-peers"
TARBALLS = (
    "asterisk-22.10.1.tar.xz",
    "pjproject-2.17.tar.xz",
    "sipp-3.7.7.tar.xz",
    "sipp-tls-poll.patch",
)


def _sources(directory: Path, *, listed: bool = True, wrong: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in TARBALLS:
        data = f"not really {name}".encode()
        (directory / name).write_bytes(data)
        digest = hashlib.sha256(b"other bytes" if wrong else data).hexdigest()
        lines.append(f"{digest}  {name}")
    if listed:
        (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return directory


def _run(*args: str, src: Path, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD_PEERS), *args],
        env={**os.environ, "SIPUA_PEERS_SRC": str(src), "SIPUA_PEERS_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", ["asterisk", "pjsua", "sipp"])
def test_not_built_says_how_to_build(tmp_path: Path, name: str) -> None:
    proc = _run("--path", name, src=_sources(tmp_path / "src"), cache=tmp_path / "cache")
    assert proc.returncode == 1
    assert f"{name} is not built" in proc.stderr
    assert f"run scripts/build-peers {name}" in proc.stderr


def _expected_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    found = re.search(r"expected in (\S+)\)", proc.stderr)
    assert found is not None, proc.stderr
    return Path(found.group(1))


def test_a_cached_build_is_found_by_its_sources(tmp_path: Path) -> None:
    src = _sources(tmp_path / "src")
    cache = tmp_path / "cache"
    built = _expected_dir(_run("--path", "pjsua", src=src, cache=cache))
    assert built.parent == cache
    assert built.name.startswith("pjsua-2.17-")
    # What a finished build leaves (an unfinished one has no .complete and does not count).
    built.mkdir(parents=True)
    assert _run("--path", "pjsua", src=src, cache=cache).returncode == 1
    (built / ".complete").write_text("name=pjsua\n")
    found = _run("--path", "pjsua", src=src, cache=cache)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(built)
    # Other source bytes are another build.
    (src / "pjproject-2.17.tar.xz").write_bytes(b"changed")
    lines = [
        f"{hashlib.sha256((src / name).read_bytes()).hexdigest()}  {name}" for name in TARBALLS
    ]
    (src / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    again = _run("--path", "pjsua", src=src, cache=cache)
    assert again.returncode == 1
    assert _expected_dir(again) != built


def test_the_sipp_build_follows_its_tarball_and_its_patch(tmp_path: Path) -> None:
    src = _sources(tmp_path / "src")
    cache = tmp_path / "cache"
    first = _expected_dir(_run("--path", "sipp", src=src, cache=cache))
    assert first.name.startswith("sipp-3.7.7-")
    # Another patch is another build; a patch the sums file does not vouch for is refused.
    (src / "sipp-tls-poll.patch").write_bytes(b"another patch")
    refused = _run("--path", "sipp", src=src, cache=cache)
    assert refused.returncode == 1
    assert "sipp-tls-poll.patch: SHA-256" in refused.stderr
    lines = [
        f"{hashlib.sha256((src / name).read_bytes()).hexdigest()}  {name}" for name in TARBALLS
    ]
    (src / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert _expected_dir(_run("--path", "sipp", src=src, cache=cache)) != first


def test_a_tarball_with_another_digest_is_refused(tmp_path: Path) -> None:
    proc = _run("--path", "asterisk", src=_sources(tmp_path / "src", wrong=True), cache=tmp_path)
    assert proc.returncode == 1
    assert "asterisk-22.10.1.tar.xz: SHA-256" in proc.stderr
    assert "but" in proc.stderr


def test_a_tarball_no_sums_file_lists_is_refused(tmp_path: Path) -> None:
    src = _sources(tmp_path / "src", listed=False)
    proc = _run("--path", "asterisk", src=src, cache=tmp_path / "cache")
    assert proc.returncode == 1
    assert "no SHA256SUMS" in proc.stderr
    (src / "SHA256SUMS").write_text("0" * 64 + "  something-else.tar.xz\n")
    proc = _run("--path", "asterisk", src=src, cache=tmp_path / "cache")
    assert "does not list asterisk-22.10.1.tar.xz" in proc.stderr


def test_user_given_tarball_paths_and_sums(tmp_path: Path) -> None:
    elsewhere = _sources(tmp_path / "downloads")
    (elsewhere / "SHA256SUMS").rename(tmp_path / "my-sums")
    proc = _run(
        "--path",
        "asterisk",
        src=tmp_path / "nowhere",
        cache=tmp_path / "cache",
        SIPUA_ASTERISK_TARBALL=str(elsewhere / "asterisk-22.10.1.tar.xz"),
        SIPUA_PJPROJECT_TARBALL=str(elsewhere / "pjproject-2.17.tar.xz"),
        SIPUA_PEERS_SHA256SUMS=str(tmp_path / "my-sums"),
    )
    # Verified, so the only complaint is that nothing is built yet.
    assert "asterisk is not built" in proc.stderr, proc.stderr


def test_missing_tarball_points_to_the_readme(tmp_path: Path) -> None:
    proc = _run("--path", "pjsua", src=tmp_path / "empty", cache=tmp_path / "cache")
    assert proc.returncode == 1
    assert "no tarball at" in proc.stderr
    assert "README" in proc.stderr
