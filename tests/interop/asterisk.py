"""Asterisk (PJSIP over TLS) and pjsua, built from source, as real peers for tests and the demo.

Theory of operation
- Neither is packaged by Debian, so `scripts/build-peers` builds them from release tarballs into a
  cache outside the repository; `built_peer` asks that script where the cached build is and fails
  with the command to run when it is missing (never a skip).
- Asterisk runs like the other peers (see `tests.interop.peers`): a child process in its own
  session, as the current user, with every file it writes in one run directory. Its
  configuration lives in `config/asterisk/`; `render_asterisk_config` fills in the per-run parts
  (ports, certificates, users), for the tests and for `scripts/asterisk` alike.
- Asterisk is ready when `core waitfullybooted` returns over its control socket and the TLS ports
  accept; the CLI (`asterisk -rx`) is how tests look inside (`pjsip show contacts`) and make it
  act (`channel originate`, `channel request hangup`).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.interop.peers import (
    DEFAULT_USERS,
    LOCALHOST,
    LOG_TAIL_LINES,
    REPO,
    PeerError,
    RegistrarProcess,
    TestPki,
    built_peer,
    free_tcp_port,
    make_test_pki,
    tail_file,
    wait_for_tcp,
)

ASTERISK_CONFIG_DIR: Final = REPO / "config" / "asterisk"
#: Asterisk is slower to boot than Kamailio (it loads PJSIP and reads every module's config).
ASTERISK_START_TIMEOUT_S: Final = 30.0
CLI_TIMEOUT_S: Final = 15.0
#: Users whose calls come back over a new TLS connection to their Contact (rewrite_contact=no);
#: every other user gets them over the registration connection (rewrite_contact=yes).
NEW_CONNECTION_USERS: Final = frozenset({"bob"})
#: Users whose media is SRTP with SDES keys only (media_encryption = sdes): the encrypted calls.
SDES_USERS: Final = frozenset({"carol"})
RTP_PORTS: Final = 20
_SAFE_VALUE: Final = re.compile(r"[A-Za-z0-9._~!*+=-]{1,64}")


@dataclass(frozen=True, slots=True)
class AsteriskPorts:
    """Asterisk's TLS listeners on one IP, and its RTP range."""

    tls: int
    tls_default: int
    mtls: int
    rtp_start: int

    @classmethod
    def pick(cls, host: str = LOCALHOST) -> AsteriskPorts:
        """Free ports for the listeners; RTP above 30000 where no listener port lands."""
        return cls(
            tls=free_tcp_port(host),
            tls_default=free_tcp_port(host),
            mtls=free_tcp_port(host),
            rtp_start=(free_tcp_port(host) % 20000 + 30000) & ~1,  # Asterisk wants it even
        )


def render_asterisk_config(
    run_dir: Path,
    *,
    prefix: Path,
    ports: AsteriskPorts,
    pki: TestPki,
    users: Mapping[str, str],
    device_ca: Path | None = None,
    ip: str = LOCALHOST,
) -> Path:
    """Writes Asterisk's configuration into `run_dir`/etc; returns the asterisk.conf path.

    Args:
        run_dir: the instance's directory (created if missing); everything it writes is inside.
        prefix: the Asterisk build (`built_peer("asterisk")`).
        ports: the listeners and the RTP range.
        pki: the registrar's certificates (server.pem/.key).
        users: user name to password; `NEW_CONNECTION_USERS` get rewrite_contact=no.
        device_ca: the CA the mutual-TLS port trusts (default: pki's device CA).
        ip: the address every listener binds.

    Raises:
        ValueError: a user name or password has characters the config cannot carry.
    """
    for name, password in users.items():
        if not (_SAFE_VALUE.fullmatch(name) and _SAFE_VALUE.fullmatch(password)):
            raise ValueError(f"user {name!r}: names and passwords must match {_SAFE_VALUE.pattern}")
    etc = run_dir / "etc"
    for sub in ("etc", "lib", "spool", "run", "log"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "@RUN_DIR@": str(run_dir),
        "@PREFIX@": str(prefix),
        "@IP@": ip,
        "@TLS_PORT@": str(ports.tls),
        "@TLS_DEFAULT_PORT@": str(ports.tls_default),
        "@MTLS_PORT@": str(ports.mtls),
        "@RTP_START@": str(ports.rtp_start),
        "@RTP_END@": str(ports.rtp_start + RTP_PORTS - 1),
        "@PKI_DIR@": str(pki.directory),
        "@DEVICE_CA@": str(device_ca or pki.device_ca),
        "@DOMAIN@": pki.domain,
    }

    def fill(template: str, extra: Mapping[str, str] = {}) -> str:
        text = (ASTERISK_CONFIG_DIR / template).read_text()
        for placeholder, value in {**values, **extra}.items():
            text = text.replace(placeholder, value)
        return text

    for plain in ("modules.conf", "logger.conf", "extensions.conf"):
        (etc / plain).write_text((ASTERISK_CONFIG_DIR / plain).read_text())
    (etc / "rtp.conf").write_text(fill("rtp.conf.in"))
    pjsip = [fill("pjsip.conf.in")]
    for user, password in users.items():
        pjsip.append(
            fill(
                "pjsip-endpoint.conf.in",
                {
                    "@USER@": user,
                    "@PASSWORD@": password,
                    "@REWRITE_CONTACT@": "no" if user in NEW_CONNECTION_USERS else "yes",
                    "@MEDIA_ENCRYPTION@": "sdes" if user in SDES_USERS else "no",
                },
            )
        )
    pjsip_conf = etc / "pjsip.conf"
    pjsip_conf.write_text("".join(pjsip))
    pjsip_conf.chmod(0o600)
    conf = etc / "asterisk.conf"
    conf.write_text(fill("asterisk.conf.in"))
    return conf


class Asterisk(RegistrarProcess):
    """An Asterisk registrar on 127.0.0.1, from the cached build and the project's config.

    Use as a context manager::

        with Asterisk(tmp_path / "asterisk") as ast:
            ast.tls_port, ast.mtls_port, ast.tls_default_port, ast.cli("pjsip show contacts")

    It offers the attributes `sipua_register_argv` needs of a registrar (ip, users, tls_port,
    ca_pem, aor).

    Attributes:
        run_dir: configuration (etc/), state and logs (log/messages.log, asterisk.out).
        domain: the SIP domain of its accounts (the certificate's name).
        ports: the TLS listeners and the RTP range.
        pki: its certificates; ca_pem is the CA a UA must trust.
        users: user name to password.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        pki: TestPki | None = None,
        users: Mapping[str, str] | None = None,
        device_ca: Path | None = None,
        ports: AsteriskPorts | None = None,
    ) -> None:
        self.prefix = built_peer("asterisk")
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki or make_test_pki(run_dir / "pki")
        self.domain = self.pki.domain
        self.ip = LOCALHOST
        self.users: dict[str, str] = dict(users if users is not None else DEFAULT_USERS)
        self.ports = ports or AsteriskPorts.pick(self.ip)
        self.config_path = render_asterisk_config(
            run_dir,
            prefix=self.prefix,
            ports=self.ports,
            pki=self.pki,
            users=self.users,
            device_ca=device_ca,
            ip=self.ip,
        )
        self.name = "Asterisk"
        self.log_path = run_dir / "asterisk.out"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> Path:
        """The asterisk executable of the build."""
        return self.prefix / "sbin" / "asterisk"

    @property
    def tls_port(self) -> int:
        """The TLS port (OpenSSL's choice of version, TLS 1.3 here)."""
        return self.ports.tls

    @property
    def tls_default_port(self) -> int:
        """A TLS port with pjproject's default method: TLS 1.0 only."""
        return self.ports.tls_default

    @property
    def mtls_port(self) -> int:
        """The mutual-TLS port (a client certificate from the device CA is required)."""
        return self.ports.mtls

    def argv(self, *extra: str) -> list[str]:
        """The asterisk command line for this instance (foreground, no colors), plus `extra`."""
        return [str(self.binary), "-C", str(self.config_path), "-f", "-n", "-q", *extra]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of its console output and of log/messages.log."""
        messages = tail_file(self.run_dir / "log" / "messages.log", lines)
        return f"{tail_file(self.log_path, lines)}\n--- messages.log ---\n{messages}"

    def cli(self, command: str, timeout_s: float = CLI_TIMEOUT_S) -> str:
        """Runs one CLI command over the control socket (`asterisk -rx`); returns its output.

        Raises:
            PeerError: the command failed or timed out.
        """
        try:
            proc = subprocess.run(
                [str(self.binary), "-C", str(self.config_path), "-rx", command],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"asterisk -rx {command!r}: no answer in {timeout_s} s") from exc
        if proc.returncode != 0:
            raise PeerError(
                f"asterisk -rx {command!r} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def contacts(self) -> list[str]:
        """The registered contacts (`pjsip show contacts`), as `aor/uri` strings."""
        found = []
        for line in self.cli("pjsip show contacts").splitlines():
            words = line.split()
            # The table's header is "Contact:  <Aor/ContactUri....>"; skip it.
            if len(words) >= 2 and words[0] == "Contact:" and not words[1].startswith("<"):
                found.append(words[1])
        return found

    def wait_contacts(self, count: int, timeout_s: float = 10.0) -> list[str]:
        """Waits until exactly `count` contacts are registered; returns them.

        Raises:
            PeerError: the count was not reached within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            contacts = self.contacts()
            if len(contacts) == count:
                return contacts
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"Asterisk has contacts {contacts}, not {count}, after {timeout_s} s"
                )
            time.sleep(0.2)

    def channels(self) -> list[str]:
        """The names of the active channels (`core show channels concise`)."""
        lines = self.cli("core show channels concise").splitlines()
        return [line.split("!", 1)[0] for line in lines if "!" in line]

    def start(self, timeout_s: float = ASTERISK_START_TIMEOUT_S) -> None:
        """Starts Asterisk and waits until it is fully booted and its TLS ports accept."""
        super().start(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self._proc is not None
        control = self.run_dir / "run" / "asterisk.ctl"
        while not control.exists():
            if self._proc.poll() is not None:
                raise PeerError(
                    f"Asterisk exited with {self._proc.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise PeerError(f"Asterisk made no control socket within {timeout_s} s")
            time.sleep(0.05)
        self.cli("core waitfullybooted", timeout_s=max(1.0, deadline - time.monotonic()))
        for port in (self.tls_port, self.tls_default_port, self.mtls_port):
            try:
                wait_for_tcp(self.ip, port, max(0.1, deadline - time.monotonic()))
            except TimeoutError as exc:
                raise PeerError(f"Asterisk: {exc}; log:\n{self.log_tail()}") from exc
