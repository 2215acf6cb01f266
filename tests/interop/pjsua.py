"""pjsua, PJSIP's reference UA (pjproject 2.17, built by `scripts/build-peers`), as a TLS peer.

pjsua 2.17 has no control socket and no auto-quit: it reads commands from standard input, so the
test keeps a pipe to it and writes `q` to quit. What it did is read back from its log (call
state changes, registration status), which goes to its standard output, line-buffered through
`stdbuf` (pjsua's own log file is written through a stdio buffer and flushed only now and
then). It runs TLS only (`--no-udp --no-tcp`), on 127.0.0.1, with no audio device.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from tests.interop.peers import (
    LOCALHOST,
    LOG_TAIL_LINES,
    PeerError,
    built_peer,
    free_port,
    stop_peer,
    tail_file,
)

#: pjsua's log lines a test waits for.
CALL_CONFIRMED: Final = re.compile(r"Call \d+ state changed to CONFIRMED")
CALL_DISCONNECTED: Final = re.compile(r"Call \d+ is DISCONNECTED \[reason=(\d+) ")
REGISTERED: Final = re.compile(r"registration success, status=200")


class Pjsua:
    """One pjsua process.

    Args:
        work_dir: its log (pjsua.log).
        user: its user name (From: sip:USER@domain).
        domain: the SIP domain of its identity.
        call: a URI to call at start, or None.
        registrar: (host, TLS port) to register at and send every request through (an
            outbound proxy), or None to call directly.
        password: the digest password when registering.
        ca_file: a CA file to trust (pjsua does not verify servers by default).
        duration_s: pjsua hangs up a call after this many seconds (None: never).
        auto_answer: answer incoming calls with 200.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        user: str = "bob",
        domain: str = "example.test",
        call: str | None = None,
        registrar: tuple[str, int] | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        duration_s: int | None = None,
        auto_answer: bool = False,
    ) -> None:
        self.binary = built_peer("pjsua") / "bin" / "pjsua"
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / "pjsua.log"
        # pjsua's TLS transport listens on --local-port + 1.
        self.local_port = free_port(LOCALHOST, span=2)
        self.tls_port = self.local_port + 1
        self.user = user
        self.domain = domain
        self.call = call
        self.registrar = registrar
        self.password = password
        self.ca_file = ca_file
        self.duration_s = duration_s
        self.auto_answer = auto_answer
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """pjsua's command line."""
        argv = [
            "stdbuf",
            "-oL",
            str(self.binary),
            "--null-audio",
            "--use-tls",
            "--no-udp",
            "--no-tcp",
            f"--local-port={self.local_port}",
            f"--bound-addr={LOCALHOST}",
            f"--ip-addr={LOCALHOST}",
            f"--id=sip:{self.user}@{self.domain}",
            "--max-calls=1",
            "--log-level=5",
            "--app-log-level=5",
            "--no-color",
        ]
        if self.ca_file is not None:
            argv.append(f"--tls-ca-file={self.ca_file}")
        if self.registrar is not None:
            host, port = self.registrar
            argv += [
                f"--registrar=sip:{host}:{port};transport=tls",
                f"--proxy=sip:{host}:{port};transport=tls;lr",
                "--realm=*",
                f"--username={self.user}",
                f"--password={self.password or ''}",
            ]
        if self.duration_s is not None:
            argv.append(f"--duration={self.duration_s}")
        if self.auto_answer:
            argv.append("--auto-answer=200")
        if self.call is not None:
            argv.append(self.call)
        return argv

    def start(self) -> Self:
        """Starts pjsua with a pipe on its standard input (its command line).

        Raises:
            PeerError: it exited at once (its output is in the message).
        """
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv(),
                cwd=self.work_dir,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        time.sleep(0.2)
        if self._proc.poll() is not None:
            raise PeerError(f"pjsua exited with {self._proc.returncode}:\n{self.log_tail()}")
        return self

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of its log."""
        return tail_file(self.log_path, lines)

    def wait_log(self, pattern: re.Pattern[str], timeout_s: float = 10.0) -> re.Match[str]:
        """Waits until its log has a line matching `pattern`; returns the match.

        Raises:
            PeerError: no such line within `timeout_s`, or pjsua exited first.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError):
                found = pattern.search(self.log_path.read_text(errors="replace"))
                if found is not None:
                    return found
            if self._proc is not None and self._proc.poll() is not None:
                raise PeerError(f"pjsua exited before {pattern.pattern!r}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"pjsua: no {pattern.pattern!r} within {timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def command(self, *lines: str) -> None:
        """Types lines into its console (e.g. "h" hangs up, "q" quits)."""
        if self._proc is None or self._proc.stdin is None:
            raise PeerError("pjsua is not running")
        self._proc.stdin.write("".join(f"{line}\n" for line in lines).encode())
        self._proc.stdin.flush()

    def stop(self) -> None:
        """Quits (`q`), then SIGTERM/SIGKILL if it does not within a few seconds."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write(b"q\n")
                proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        stop_peer(proc, timeout_s=2.0)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
