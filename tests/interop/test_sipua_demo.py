"""The README's first command, `scripts/demo`, works: registers, shows the lock, answers a call
(against Kamailio, and with `scripts/demo asterisk` against Asterisk).

It runs the whole script (set-up included: on a prepared machine that is a quick no-op check)
and reads what a person would see.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.interop.peers import REPO
from tests.support.readme import in_the_same_order, readme_block

pytestmark = pytest.mark.interop

DEMO_TIMEOUT_S = 120


def test_demo_registers_shows_the_lock_and_answers_a_call() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIPUA_TLS_PORT"}
    proc = subprocess.run(
        [str(REPO / "scripts" / "demo")],
        cwd=REPO,
        env={**env, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # It says what it is doing before the (on a first run, long) preparation steps.
    assert "== Preparing the Python environment in .venv (scripts/setup-venv)" in out, out
    assert "== Checking the peers: Kamailio with TLS, SIPp, baresip, openssl" in out, out
    # Stopped by SIGINT, sipua prints its outcome as --once does.
    assert "unregistered: sips:alice@example.test; lock: 🔓 unlocked (closed: shutdown)" in out
    # The README's sample is this output, in this order.
    sample = readme_block("What the demo prints")
    assert in_the_same_order(sample, proc.stdout.splitlines()), out
    assert "the lock says: 🔒 locked" in out, out
    assert "☎ call answered" in out, out
    assert "The call was answered by sipua and hung up by the caller" in out, out
    assert "unregistered (OK)" in out, out
    assert "kamailio: stopped" in out, out
    # Nothing left running: Kamailio's pid file is gone.
    assert not (REPO / "run" / "demo" / "kamailio" / "kamailio.pid").exists()


def test_demo_against_asterisk_registers_answers_asterisks_call_and_unregisters() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIPUA_TLS_PORT"}
    proc = subprocess.run(
        [str(REPO / "scripts" / "demo"), "asterisk"],
        cwd=REPO,
        env={**env, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "the lock says: 🔒 locked" in out, out
    assert "☎ call answered" in out, out
    assert "☎ call ended (remote-bye)" in out, out
    assert "The call was answered by sipua and hung up by Asterisk" in out, out
    assert "unregistered (OK)" in out, out
    assert "No objects found." in out, out  # pjsip show contacts after SIGINT
    assert "asterisk: stopped" in out, out
    assert not (REPO / "run" / "demo" / "asterisk" / "asterisk.pid").exists()
