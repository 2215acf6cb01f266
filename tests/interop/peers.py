"""Real SIP peers for interop tests and the demo: Kamailio, SIPp and baresip on 127.0.0.1.

Theory of operation
- Every peer runs as a child process of the test, as the current user, never as a service. Each
  gets a working directory (a pytest tmp_path) holding its generated configuration, its log and
  any runtime files, so tests can run beside each other and beside a demo registrar.
- Ports are picked free at start (bind to port 0, read the number back). A picked port can be
  taken by someone else before the peer binds it; start-up then fails loudly with the peer's
  log rather than hanging.
- Everything is bounded in time: start-up waits for a readiness probe with a deadline, SIPp runs
  under a wall-clock timeout, and stopping is SIGTERM, a bounded wait, then SIGKILL to the
  peer's own process group (each peer is started in a new session, so the group is exactly the
  peer and its children).
- On failure the peer's log tail is part of the exception message (PeerError), and the
  `tests/interop/conftest.py` fixtures print it when a test fails.

Kamailio's configuration lives in `config/kamailio/` (kamailio.cfg and the tls.cfg.in
template); this module renders the per-run parts (`sipua-local.cfg`: ports, domain, limits;
`sipua-users.cfg`: users; `tls.cfg`: certificate paths) into the run directory beside a copy of
kamailio.cfg, the same layout `scripts/kamailio` uses for the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

REPO: Final = Path(__file__).resolve().parents[2]
KAMAILIO_CONFIG_DIR: Final = REPO / "config" / "kamailio"
SIPP_SCENARIOS: Final = REPO / "scripts" / "sipp"
MAKE_TEST_PKI: Final = REPO / "scripts" / "make-test-pki"
BUILD_PEERS: Final = REPO / "scripts" / "build-peers"

LOCALHOST: Final = "127.0.0.1"
DEFAULT_DOMAIN: Final = "example.test"
# Users the registrar knows unless a test passes its own. Test-only secrets.
DEFAULT_USERS: Final[Mapping[str, str]] = {
    "alice": "alice-secret",
    "bob": "bob-secret",
    "carol": "carol-secret",
}

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
PROBE_INTERVAL_S: Final = 0.05
LOG_TAIL_LINES: Final = 60
PORT_PICK_ATTEMPTS: Final = 50
# A baresip control message is a small JSON object; anything larger is a broken stream.
MAX_CTRL_MESSAGE_BYTES: Final = 1 << 20
# Characters allowed in user names and passwords written into Kamailio's config.
_SAFE_CFG_VALUE: Final = re.compile(r"[A-Za-z0-9._~!*+=-]{1,64}")
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


class PeerError(RuntimeError):
    """A real peer failed to start, stop or do what a test asked; the message has its log."""


def tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ── ports ───────────────────────────────────────────────────────────────────────────────────


def free_tcp_port(host: str = LOCALHOST) -> int:
    """Returns a TCP port on `host` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_free(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = LOCALHOST, span: int = 1) -> int:
    """Returns a port P such that P .. P+span-1 are all free for both TCP and UDP on `host`.

    baresip, for one, listens for UDP and TCP on its SIP port and for TLS on the next one.

    Raises:
        PeerError: no such run of ports was found in a bounded number of attempts.
    """
    for _ in range(PORT_PICK_ATTEMPTS):
        base = free_tcp_port(host)
        if base + span > 65535:
            continue
        ports = range(base, base + span)
        if all(
            _is_free(host, p, socket.SOCK_STREAM) and _is_free(host, p, socket.SOCK_DGRAM)
            for p in ports
        ):
            return base
    raise PeerError(
        f"no run of {span} free TCP+UDP ports on {host} after {PORT_PICK_ATTEMPTS} tries"
    )


def wait_for_tcp(host: str, port: int, timeout_s: float) -> None:
    """Waits until `host:port` accepts a TCP connection.

    Raises:
        TimeoutError: nothing accepted within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{host}:{port} did not accept within {timeout_s} s") from None
            time.sleep(PROBE_INTERVAL_S)


# ── process helpers ─────────────────────────────────────────────────────────────────────────


def start_peer(argv: Sequence[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A new session makes the child the leader of its own process group, so stopping it can
        # reach its children by that group id and nothing else.
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_peer(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, a bounded wait, then SIGKILL to the process group the child leads."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)


# ── peers built from source (Asterisk, pjsua) ──────────────────────────────────────────────


@cache
def built_peer(name: str) -> Path:
    """The install directory of a peer `scripts/build-peers` built ("asterisk" or "pjsua").

    Raises:
        PeerError: it is not built (the message says how to build it).
    """
    proc = subprocess.run(
        [str(BUILD_PEERS), "--path", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise PeerError(f"{name} is not available: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


# ── PKI ─────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TestPki:
    """The PEM files `scripts/make-test-pki` wrote into `directory` (see its docstring)."""

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    domain: str

    def cert(self, name: str) -> Path:
        """Returns the certificate path for `name` (e.g. "server", "wrong-name", "device")."""
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        """Returns the private-key path for `name`."""
        return self.directory / f"{name}.key"

    @property
    def registrar_ca(self) -> Path:
        """The CA a UA must trust to verify the registrar."""
        return self.cert("registrar-ca")

    @property
    def device_ca(self) -> Path:
        """The CA the mutual-TLS port and Kamailio's client profile verify UAs against."""
        return self.cert("device-ca")


def make_test_pki(directory: Path, domain: str = DEFAULT_DOMAIN) -> TestPki:
    """Runs `scripts/make-test-pki` into `directory` and returns the result.

    Raises:
        PeerError: the generator failed (its output is in the message).
    """
    proc = subprocess.run(
        [sys.executable, str(MAKE_TEST_PKI), str(directory), "--domain", domain],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise PeerError(f"make-test-pki failed ({proc.returncode}): {proc.stderr.strip()}")
    return TestPki(directory, domain)


# ── Kamailio ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class KamailioPorts:
    """Where a Kamailio instance listens, all on one IP."""

    udp: int
    tcp: int
    tls: int
    mtls: int

    @classmethod
    def pick(cls, host: str = LOCALHOST) -> KamailioPorts:
        """Free ports for every listener (UDP and TCP share one number, as SIP usually does)."""
        sip = free_port(host)
        return cls(udp=sip, tcp=sip, tls=free_tcp_port(host), mtls=free_tcp_port(host))


def render_kamailio_config(
    run_dir: Path,
    *,
    ports: KamailioPorts,
    pki: TestPki,
    users: Mapping[str, str],
    device_ca: Path | None = None,
    ip: str = LOCALHOST,
    route_to_contact: bool = False,
    max_connections: int = 2048,
    debug: int = 2,
) -> Path:
    """Writes kamailio.cfg and its per-run files into `run_dir`; returns the kamailio.cfg path.

    Args:
        run_dir: the instance's directory (created if missing).
        ports: the listeners.
        pki: the registrar's certificates (server.pem/.key).
        users: user name to password, for digest authentication of REGISTER.
        device_ca: the CA for the mutual-TLS port and the client profile (default: pki's).
        ip: the address every listener binds.
        route_to_contact: open a new TLS connection to a UA's Contact instead of reusing the
            connection its REGISTER came in on.
        max_connections: tcp_max_connections and tls_max_connections.
        debug: Kamailio's log level (2 info, 3 debug).

    Raises:
        ValueError: a user name or password has characters the config cannot carry.
    """
    for name, password in users.items():
        if not (_SAFE_CFG_VALUE.fullmatch(name) and _SAFE_CFG_VALUE.fullmatch(password)):
            raise ValueError(
                f"user {name!r}: names and passwords must match {_SAFE_CFG_VALUE.pattern}"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run_dir / "kamailio.cfg"
    shutil.copyfile(KAMAILIO_CONFIG_DIR / "kamailio.cfg", cfg)
    tls_cfg = run_dir / "tls.cfg"
    template = (KAMAILIO_CONFIG_DIR / "tls.cfg.in").read_text()
    replacements = {
        "@PKI_DIR@": str(pki.directory),
        "@DEVICE_CA@": str(device_ca or pki.device_ca),
        "@IP@": ip,
        "@MTLS_PORT@": str(ports.mtls),
    }
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    tls_cfg.write_text(template)
    defines = {
        "SIPUA_DOMAIN": pki.domain,
        "SIPUA_IP": ip,
        "SIPUA_UDP_PORT": str(ports.udp),
        "SIPUA_TCP_PORT": str(ports.tcp),
        "SIPUA_TLS_PORT": str(ports.tls),
        "SIPUA_MTLS_PORT": str(ports.mtls),
        "SIPUA_TLS_CFG": str(tls_cfg),
        "SIPUA_MAX_CONNECTIONS": str(max_connections),
        "SIPUA_DEBUG": str(debug),
    }
    local = [f'#!substdef "!{name}!{value}!g"' for name, value in defines.items()]
    if route_to_contact:
        local.append("#!define SIPUA_ROUTE_TO_CONTACT")
    (run_dir / "sipua-local.cfg").write_text("\n".join(local) + "\n")
    lines = ["event_route[htable:mod-init] {"]
    lines += [f'\t$sht(users=>{name}) = "{password}";' for name, password in users.items()]
    lines.append("}")
    users_cfg = run_dir / "sipua-users.cfg"
    users_cfg.write_text("\n".join(lines) + "\n")
    users_cfg.chmod(0o600)
    return cfg


def _sip_options_ping(host: str, port: int, domain: str, timeout_s: float) -> bytes | None:
    """Sends one OPTIONS over UDP and returns the first datagram back, or None on timeout."""
    branch = f"z9hG4bK-probe-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local_port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{domain}>;tag=probe\r\n"
            f"To: <sip:{domain}>\r\n"
            f"Call-ID: {branch}@{host}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout_s)
        sock.sendto(request, (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        return data


class RegistrarProcess:
    """What a registrar run by the tests (Kamailio, Asterisk) has in common: one foreground
    process in `run_dir`, started and made ready, stopped by its process group, and a context
    manager that prints its log tail when a test fails inside it.

    A subclass sets `name`, `run_dir`, `log_path`, `domain`, `pki` and `_proc` (None) in its
    constructor, and says how to run it (`argv`), how to tell it is ready (`_wait_ready`), and
    what its log tail is (`log_tail`).
    """

    name: str = "registrar"
    run_dir: Path
    log_path: Path
    domain: str
    pki: TestPki
    _proc: subprocess.Popen[bytes] | None

    def argv(self) -> list[str]:
        """The command line that runs it in the foreground."""
        raise NotImplementedError

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of its log."""
        return tail_file(self.log_path, lines)

    def _wait_ready(self, timeout_s: float) -> None:
        raise NotImplementedError

    @property
    def ca_pem(self) -> Path:
        """The registrar CA certificate (PEM) a UA must trust."""
        return self.pki.registrar_ca

    @property
    def pid(self) -> int | None:
        """The main process id while running."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts it and waits until it is ready.

        Raises:
            PeerError: it exited or did not become ready within `timeout_s`.
        """
        if self.pid is not None:
            raise PeerError(f"{self.name} in {self.run_dir} is already running (pid {self.pid})")
        self._proc = start_peer(self.argv(), self.run_dir, self.log_path)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops it: SIGTERM, bounded wait, SIGKILL to its process group."""
        if self._proc is not None:
            stop_peer(self._proc)
            self._proc = None

    def aor(self, user: str, scheme: str = "sips") -> str:
        """The address of record of `user` in its domain, e.g. sips:alice@example.test."""
        return f"{scheme}:{user}@{self.domain}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None and not isinstance(exc, PeerError):
            with contextlib.suppress(OSError):
                print(
                    f"--- {self.name} log tail ({self.run_dir}) ---\n{self.log_tail()}",
                    file=sys.stderr,
                )


class Kamailio(RegistrarProcess):
    """A Kamailio registrar on 127.0.0.1, started from the project's config.

    Use as a context manager::

        with Kamailio(tmp_path / "kamailio") as kam:
            kam.tls_port, kam.mtls_port, kam.udp_port, kam.tcp_port, kam.domain, kam.ca_pem

    Attributes:
        run_dir: its configuration, log (kamailio.log) and runtime directory.
        domain: the SIP domain it serves (its only alias).
        ip: the address it listens on.
        ports: all listeners; also as tls_port, mtls_port, udp_port, tcp_port.
        pki: the certificates it uses; ca_pem is the registrar CA a UA must trust.
        users: user name to password.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        pki: TestPki | None = None,
        users: Mapping[str, str] | None = None,
        device_ca: Path | None = None,
        ports: KamailioPorts | None = None,
        route_to_contact: bool = False,
        max_connections: int = 2048,
        shm_mb: int = 64,
        debug: int = 2,
    ) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki or make_test_pki(run_dir / "pki")
        self.domain = self.pki.domain
        self.ip = LOCALHOST
        self.users: dict[str, str] = dict(users if users is not None else DEFAULT_USERS)
        self.ports = ports or KamailioPorts.pick(self.ip)
        self.route_to_contact = route_to_contact
        self.max_connections = max_connections
        self.shm_mb = shm_mb
        self.name = "Kamailio"
        self.log_path = run_dir / "kamailio.log"
        self.config_path = render_kamailio_config(
            run_dir,
            ports=self.ports,
            pki=self.pki,
            users=self.users,
            device_ca=device_ca,
            ip=self.ip,
            route_to_contact=route_to_contact,
            max_connections=max_connections,
            debug=debug,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tls_port(self) -> int:
        """The TLS port (server certificate only)."""
        return self.ports.tls

    @property
    def mtls_port(self) -> int:
        """The mutual-TLS port (a client certificate from the device CA is required)."""
        return self.ports.mtls

    @property
    def udp_port(self) -> int:
        """The UDP port (for SIPp)."""
        return self.ports.udp

    @property
    def tcp_port(self) -> int:
        """The TCP port (for SIPp)."""
        return self.ports.tcp

    def argv(self) -> list[str]:
        """The command line that runs this instance in the foreground."""
        return [
            "kamailio",
            "-f",
            str(self.config_path),
            "-Y",
            str(self.run_dir),
            "-DD",  # foreground, so the test owns the process and its pid
            "-E",  # log to stderr (our log file)
            "-x",
            "tlsf",  # fast shared-memory allocator
            "-m",
            str(self.shm_mb),
            "-M",
            "8",
        ]

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise PeerError(
                    f"Kamailio exited with {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            reply = _sip_options_ping(self.ip, self.udp_port, self.domain, 0.2)
            if reply is not None and reply.startswith(b"SIP/2.0 200"):
                break
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"Kamailio did not answer OPTIONS on UDP {self.ip}:{self.udp_port} within "
                    f"{timeout_s} s; log {self.log_path}:\n{self.log_tail()}"
                )
        for port in (self.tcp_port, self.tls_port, self.mtls_port):
            try:
                wait_for_tcp(self.ip, port, max(0.1, deadline - time.monotonic()))
            except TimeoutError as exc:
                raise PeerError(f"Kamailio: {exc}; log:\n{self.log_tail()}") from exc

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stops and starts again on the same ports (registrations, held in memory, are lost)."""
        self.stop()
        self.start(timeout_s)


# ── SIPp ────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class SippResult:
    """How a SIPp run ended.

    Attributes:
        returncode: SIPp's exit code (0 all calls succeeded, 1 some failed, 97 exit by
            command, 99 no call processed, 255 fatal error, 254 cannot bind), or -9 if we
            killed it at the timeout.
        successful: calls that ran the scenario to its end (SuccessfulCall(C)).
        failed: calls that failed (FailedCall(C)).
        timed_out: we killed SIPp because it outlived its timeout.
        messages: SIPp's message trace (every message sent and received).
        errors: SIPp's error trace.
        output: SIPp's screen output.
    """

    returncode: int
    successful: int
    failed: int
    timed_out: bool
    messages: str
    errors: str
    output: str

    @property
    def ok(self) -> bool:
        """Every call succeeded and SIPp exited cleanly."""
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    def describe(self) -> str:
        """A summary with the traces, for assertion messages."""
        return (
            f"sipp exit {self.returncode}, {self.successful} ok, {self.failed} failed, "
            f"timed out: {self.timed_out}\n--- errors ---\n{self.errors[-4000:]}\n"
            f"--- messages ---\n{self.messages[-8000:]}\n--- screen ---\n{self.output[-3000:]}"
        )


def _read_stats(path: Path) -> tuple[int, int]:
    """(SuccessfulCall(C), FailedCall(C)) from the last row of a SIPp -stf CSV file."""
    try:
        rows = [line for line in path.read_text(errors="replace").splitlines() if line]
    except OSError:
        return 0, 0
    if len(rows) < 2:
        return 0, 0
    header = rows[0].split(";")
    last = rows[-1].split(";")
    try:
        return int(last[header.index("SuccessfulCall(C)")]), int(
            last[header.index("FailedCall(C)")]
        )
    except (ValueError, IndexError):
        return 0, 0


@dataclass
class Sipp:
    """A SIPp process running one scenario; see `run_sipp` for the arguments.

    Start it with `start()` (or as a context manager) to keep it running in the background, for
    example a UAS waiting for a call, and collect the result with `wait()`.
    """

    scenario: str | Path
    work_dir: Path
    remote: tuple[str, int] | None = None
    transport: str = "u1"
    service: str | None = None
    auth: tuple[str, str] | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    calls: int = 1
    local_port: int | None = None
    hold_ms: int = 0
    timeout_s: float = 20.0
    extra_args: Sequence[str] = ()
    _proc: subprocess.Popen[bytes] | None = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        path = Path(self.scenario)
        if not path.is_absolute():
            path = SIPP_SCENARIOS / path
        if not path.is_file():
            raise PeerError(f"SIPp scenario {path} does not exist")
        self.scenario = path
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.local_port is None:
            self.local_port = free_port()

    def _file(self, suffix: str) -> Path:
        return self.work_dir / f"sipp-{Path(self.scenario).stem}-{self.local_port}.{suffix}"

    def argv(self) -> list[str]:
        """SIPp's command line."""
        keys = {
            "domain": DEFAULT_DOMAIN,
            "expires": "3600",
            "contact_host": LOCALHOST,
            "contact_port": str(self.local_port),
            "contact_transport": "tcp" if self.transport.startswith("t") else "udp",
        }
        keys.update(self.keys)
        argv = [
            "sipp",
            "-sf",
            str(self.scenario),
            "-t",
            self.transport,
            "-i",
            LOCALHOST,
            "-p",
            str(self.local_port),
            "-m",
            str(self.calls),
            "-nostdin",
            "-d",
            str(self.hold_ms),
            # SIPp's own global timeout, a little inside ours so it can write its statistics.
            "-timeout",
            f"{max(1, int(self.timeout_s) - 2)}s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(self._file("messages")),
            "-trace_err",
            "-error_file",
            str(self._file("errors")),
            "-trace_stat",
            "-stf",
            str(self._file("csv")),
        ]
        if self.service is not None:
            argv += ["-s", self.service]
        if self.auth is not None:
            argv += ["-au", self.auth[0], "-ap", self.auth[1]]
        for name, value in keys.items():
            argv += ["-key", name, value]
        argv += list(self.extra_args)
        if self.remote is not None:
            argv.append(f"{self.remote[0]}:{self.remote[1]}")
        return argv

    def start(self) -> Self:
        """Starts SIPp in the background."""
        for suffix in ("messages", "errors", "csv", "out"):
            self._file(suffix).unlink(missing_ok=True)
        self._proc = start_peer(self.argv(), self.work_dir, self._file("out"))
        self._deadline = time.monotonic() + self.timeout_s
        return self

    def wait(self) -> SippResult:
        """Waits (bounded by timeout_s from start) for SIPp to finish and returns its result."""
        if self._proc is None:
            raise PeerError("Sipp.wait() before start()")
        timed_out = False
        try:
            returncode = self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_peer(self._proc, timeout_s=1.0)
            returncode = -9
        self._proc = None
        successful, failed = _read_stats(self._file("csv"))

        def read(suffix: str) -> str:
            path = self._file(suffix)
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(
            returncode=returncode,
            successful=successful,
            failed=failed,
            timed_out=timed_out,
            messages=read("messages"),
            errors=read("errors"),
            output=read("out"),
        )

    def kill(self) -> None:
        """Stops SIPp if it still runs."""
        if self._proc is not None:
            stop_peer(self._proc, timeout_s=1.0)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def run_sipp(
    scenario: str | Path,
    work_dir: Path,
    remote: tuple[str, int] | None = None,
    *,
    transport: str = "u1",
    service: str | None = None,
    auth: tuple[str, str] | None = None,
    keys: Mapping[str, str] | None = None,
    calls: int = 1,
    local_port: int | None = None,
    hold_ms: int = 0,
    timeout_s: float = 20.0,
    extra_args: Sequence[str] = (),
) -> SippResult:
    """Runs a SIPp scenario to its end, bounded by `timeout_s`, and returns the result.

    Args:
        scenario: a file in scripts/sipp/ (e.g. "register.xml") or a path.
        work_dir: where the traces and statistics go.
        remote: the peer (a UAC's target); None for a UAS.
        transport: SIPp's -t: "u1" (UDP) or "t1" (TCP, one connection). SIPp here has no TLS.
        service: -s, the user part of the Request-URI / the user to register.
        auth: (user, password) for digest challenges.
        keys: values for the scenario's [keywords] (domain, expires, contact_host,
            contact_port, contact_transport have defaults).
        calls: -m, calls to run before exiting.
        local_port: SIPp's own port (default: a free one).
        hold_ms: -d, the pause in scenarios that have one.
        timeout_s: wall-clock bound; SIPp is killed after it.
        extra_args: more SIPp options.
    """
    sipp = Sipp(
        scenario,
        work_dir,
        remote,
        transport=transport,
        service=service,
        auth=auth,
        keys=dict(keys or {}),
        calls=calls,
        local_port=local_port,
        hold_ms=hold_ms,
        timeout_s=timeout_s,
        extra_args=extra_args,
    )
    sipp.start()
    try:
        return sipp.wait()
    finally:
        sipp.kill()


# ── baresip ─────────────────────────────────────────────────────────────────────────────────


class Baresip:
    """A baresip UA with one account, driven through its ctrl_tcp module.

    baresip 1.0 notes: it ignores /etc/hosts, so the registrar is reached through an outbound
    proxy given as an IP; it listens for UDP/TCP on its SIP port and TLS on the next port; it
    does not verify the registrar's certificate; it has no sips: support, so its account is
    sip:...;transport=tls. Audio comes from the ausine module (48 kHz stereo only, hence the
    rates below); nothing is played.

    Args:
        work_dir: its config directory and log (baresip.log).
        user: account user; password: its digest password.
        domain: the account's domain.
        proxy: (ip, port) of the registrar's TLS (or TCP/UDP) port.
        transport: "tls", "tcp" or "udp" toward the proxy.
        answer: "auto" (answer incoming calls at once) or "manual" (ring until `accept()`).
        certificate: cert+key PEM it shows as TLS server and client (e.g. the device bundle).
        register_interval_s: registration interval (Expires) it asks for.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        user: str,
        password: str,
        domain: str = DEFAULT_DOMAIN,
        proxy: tuple[str, int],
        transport: str = "tls",
        answer: str = "auto",
        certificate: Path | None = None,
        register_interval_s: int = 600,
        mediaenc: str | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.domain = domain
        self.sip_port = free_port(span=2)
        self.ctrl_port = free_tcp_port()
        self.log_path = work_dir / "baresip.log"
        self.aor = f"sip:{user}@{domain}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._buffer = b""
        self._token = 0
        self.events: list[dict[str, Any]] = []
        config = [
            ("poll_method", "epoll"),
            # Media on loopback too: without it baresip announces the host's first address.
            ("net_interface", LOCALHOST),
            ("sip_listen", f"{LOCALHOST}:{self.sip_port}"),
            ("call_local_timeout", "120"),
            ("call_max_calls", "4"),
            ("audio_source", "ausine,440"),
            ("ausrc_srate", "48000"),
            ("ausrc_channels", "2"),
            ("auplay_srate", "48000"),
            ("auplay_channels", "2"),
            ("module_path", "/usr/lib/baresip/modules"),
            ("module", "g711.so"),
            ("module", "ausine.so"),
            ("module_app", "account.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"{LOCALHOST}:{self.ctrl_port}"),
        ]
        if certificate is not None:
            config.insert(2, ("sip_certificate", str(certificate)))
        if mediaenc is not None:
            # SRTP with SDES keys (`srtp-mand`: RTP/SAVP only); rtcpsummary logs each call's
            # RTP counters when it ends.
            config += [("module", "srtp.so"), ("module", "rtcpsummary.so")]
        (work_dir / "config").write_text("".join(f"{k}\t\t{v}\n" for k, v in config))
        account = (
            f"<sip:{user}@{domain};transport={transport}>;auth_pass={password}"
            f';outbound="sip:{proxy[0]}:{proxy[1]};transport={transport}"'
            f";answermode={answer};regint={register_interval_s}"
            + (f";mediaenc={mediaenc}" if mediaenc else "")
            + "\n"
        )
        accounts = work_dir / "accounts"
        accounts.write_text(account)
        accounts.chmod(0o600)

    @property
    def tls_port(self) -> int:
        """baresip's TLS listening port (its SIP port + 1)."""
        return self.sip_port + 1

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of baresip's output (ANSI colours removed)."""
        return _ANSI.sub("", tail_file(self.log_path, lines))

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts baresip and connects to its control port.

        Raises:
            PeerError: it exited or its control port did not open within `timeout_s`.
        """
        self._proc = start_peer(["baresip", "-f", str(self.work_dir)], self.work_dir, self.log_path)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise PeerError(
                    f"baresip exited with {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                self._ctrl = socket.create_connection((LOCALHOST, self.ctrl_port), timeout=1.0)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise PeerError(
                        f"baresip's ctrl_tcp port {self.ctrl_port} did not open within "
                        f"{timeout_s} s; log:\n{self.log_tail()}"
                    ) from None
                time.sleep(PROBE_INTERVAL_S)

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        """One netstring-framed JSON message from ctrl_tcp, or None at the deadline."""
        assert self._ctrl is not None
        while True:
            head, colon, rest = self._buffer.partition(b":")
            if colon:
                if not head.isdigit() or int(head) > MAX_CTRL_MESSAGE_BYTES:
                    raise PeerError(f"baresip ctrl_tcp sent a bad netstring: {self._buffer[:80]!r}")
                size = int(head)
                if len(rest) >= size + 1:
                    payload, self._buffer = rest[:size], rest[size + 1 :]
                    message: dict[str, Any] = json.loads(payload)
                    return message
            elif len(self._buffer) > 20:
                raise PeerError(f"baresip ctrl_tcp sent a bad netstring: {self._buffer[:80]!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._ctrl.settimeout(remaining)
            try:
                data = self._ctrl.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise PeerError(f"baresip closed its control connection; log:\n{self.log_tail()}")
            self._buffer += data

    def command(self, name: str, params: str = "", timeout_s: float = 5.0) -> str:
        """Runs a baresip command (as typed after "/" in its console) and returns its output.

        Events that arrive meanwhile are kept in `events`.

        Raises:
            PeerError: no response in time, or baresip reported the command failed.
        """
        if self._ctrl is None:
            raise PeerError("baresip is not running")
        self._token += 1
        token = str(self._token)
        payload = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._ctrl.sendall(str(len(payload)).encode() + b":" + payload + b",")
        deadline = time.monotonic() + timeout_s
        while (message := self._read_message(deadline)) is not None:
            if message.get("event"):
                self.events.append(message)
            elif message.get("token") == token:
                data = _ANSI.sub("", str(message.get("data", "")))
                if not message.get("ok"):
                    raise PeerError(f"baresip command {name} {params!r} failed: {data.strip()}")
                return data
        raise PeerError(f"baresip command {name} got no response within {timeout_s} s")

    def wait_for_event(self, event_type: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Returns the first event of `event_type` (e.g. "CALL_ESTABLISHED") seen so far or
        arriving within `timeout_s`; earlier events of that type are consumed.

        Raises:
            PeerError: none arrived in time.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            for i, event in enumerate(self.events):
                if event.get("type") == event_type:
                    del self.events[: i + 1]
                    return event
            message = self._read_message(deadline)
            if message is None:
                seen = [e.get("type") for e in self.events]
                raise PeerError(
                    f"baresip: no {event_type} event within {timeout_s} s (seen {seen}); "
                    f"log:\n{self.log_tail()}"
                )
            if message.get("event"):
                self.events.append(message)

    def is_registered(self) -> bool:
        """Whether its account is registered (from the reginfo command)."""
        info = self.command("reginfo")
        return any(self.aor in line and " OK " in line for line in info.splitlines())

    def wait_registered(self, timeout_s: float = 10.0) -> None:
        """Waits until its account is registered.

        Registration can complete before the control connection is up, so this polls
        `reginfo` rather than waiting for a REGISTER_OK event.

        Raises:
            PeerError: not registered within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while not self.is_registered():
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"baresip {self.aor} did not register within {timeout_s} s; "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def dial(self, uri: str) -> None:
        """Calls `uri`."""
        self.command("dial", uri)

    def accept(self) -> None:
        """Answers the ringing incoming call."""
        self.command("accept")

    def hangup(self) -> None:
        """Ends the current call."""
        self.command("hangup")

    def stop(self) -> None:
        """Asks baresip to quit, then SIGTERM/SIGKILL if it lingers."""
        if self._ctrl is not None:
            with contextlib.suppress(OSError, PeerError):
                self.command("quit", timeout_s=0.5)
            self._ctrl.close()
            self._ctrl = None
        if self._proc is not None:
            stop_peer(self._proc, timeout_s=2.0)
            self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None and not isinstance(exc, PeerError):
            print(f"--- baresip log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)


@contextlib.contextmanager
def running(*peers: Kamailio | Baresip) -> Iterator[None]:
    """Starts peers in order and stops them in reverse order, whatever happens."""
    with contextlib.ExitStack() as stack:
        for peer in peers:
            stack.enter_context(peer)
        yield


# ── sipua itself ────────────────────────────────────────────────────────────────────────────

SIPUA: Final = (sys.executable, "-m", "sipua")
# A sipua run writes a few hundred lines at most; more means a loop, and the tail is what counts.
MAX_SIPUA_LINES: Final = 20_000


def write_password_file(path: Path, password: str) -> Path:
    """Writes `password` to `path`, readable by the owner only (sipua warns otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


class Registrar(Protocol):
    """What `sipua_register_argv` needs of a registrar (Kamailio, Asterisk)."""

    @property
    def ip(self) -> str: ...
    @property
    def tls_port(self) -> int: ...
    @property
    def ca_pem(self) -> Path: ...
    @property
    def users(self) -> Mapping[str, str]: ...
    def aor(self, user: str, scheme: str = "sips") -> str: ...


def sipua_register_argv(
    kam: Registrar,
    data_dir: Path,
    *,
    user: str = "alice",
    port: int | None = None,
    trusted: Sequence[Path] | None = None,
    listen: tuple[str, int] | None = None,
    log_format: str = "json",
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of `sipua register` for `user` at `kam`.

    Args:
        kam: the registrar.
        data_dir: sipua's --data-dir (its password file goes there too).
        user: one of kam.users.
        port: the registrar port (default: the plain TLS port).
        trusted: --trusted-cert files (default: the registrar CA; empty: none).
        listen: --listen address, or None for --no-listen.
        log_format: "json" or "console".
        extra: more flags.
    """
    password = write_password_file(data_dir / f"{user}.password", kam.users[user])
    argv = [
        *SIPUA,
        "register",
        "--aor",
        kam.aor(user),
        "--password-file",
        str(password),
        "--proxy",
        f"{kam.ip}:{port or kam.tls_port}",
        "--data-dir",
        str(data_dir),
        "--log-format",
        log_format,
    ]
    for cert in [kam.ca_pem] if trusted is None else trusted:
        argv += ["--trusted-cert", str(cert)]
    argv += ["--listen", f"{listen[0]}:{listen[1]}"] if listen else ["--no-listen"]
    return argv + list(extra)


def sipua_call_argv(
    kam: Registrar,
    data_dir: Path,
    target: str,
    *,
    user: str = "alice",
    port: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of `sipua call target` as `user` through `kam` (JSON log)."""
    argv = sipua_register_argv(kam, data_dir, user=user, port=port, extra=extra)
    return [*SIPUA, "call", target, *argv[len(SIPUA) + 1 :]]


class SipuaProcess:
    """`sipua` as a child process whose JSON log events a test can wait for.

    Output (stdout and stderr, interleaved) is read by a thread into `lines`; each line that is a
    JSON object with an "event" key is also kept in `events`, in order.

    Args:
        argv: the whole command line (see `sipua_register_argv`).
        env: extra environment variables (e.g. SIPUA_AUTO_ANSWER_DELAY).
        cwd: its working directory.
    """

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = REPO
    ) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        self.cwd = cwd
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._changed = threading.Condition()

    def start(self) -> Self:
        """Starts sipua."""
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                if len(self.lines) >= MAX_SIPUA_LINES:
                    del self.lines[: MAX_SIPUA_LINES // 2]
                self.lines.append(line.rstrip("\n"))
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        if isinstance(record, dict) and "event" in record:
                            self.events.append(record)
                self._changed.notify_all()
        proc.stdout.close()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything sipua printed so far."""
        with self._changed:
            return "\n".join(self.lines)

    @property
    def returncode(self) -> int | None:
        """Its exit code, or None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def find(self, event: str, since: int = 0, **fields: object) -> dict[str, Any] | None:
        """The first event named `event` at index >= `since` whose fields match, else None."""
        with self._changed:
            for record in self.events[since:]:
                if record.get("event") == event and all(
                    record.get(k) == v for k, v in fields.items()
                ):
                    return record
        return None

    def mark(self) -> int:
        """The number of events so far, to wait only for later ones (`since=`)."""
        with self._changed:
            return len(self.events)

    def wait_for(
        self, event: str, timeout_s: float = 10.0, since: int = 0, **fields: object
    ) -> dict[str, Any]:
        """Waits for an event (see `find`) and returns it.

        Raises:
            PeerError: sipua exited or the event did not come within `timeout_s`; the message
                carries sipua's output.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = self.find(event, since, **fields)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                exited = self._proc is None or self._proc.poll() is not None
                if remaining <= 0 or (exited and not self._reader_alive()):
                    state = "exited" if exited else "still running"
                    raise PeerError(
                        f"sipua: no {event} {fields or ''} within {timeout_s} s ({state}, exit "
                        f"{self.returncode}); output:\n{self.tail()}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of its output."""
        with self._changed:
            return "\n".join(self.lines[-lines:])

    def interrupt(self, timeout_s: float = 10.0) -> int:
        """Sends SIGINT (as Ctrl-C does) and waits for sipua to exit; returns its exit code.

        Raises:
            PeerError: it did not exit within `timeout_s` (it is then killed).
        """
        return self._signal_and_wait(signal.SIGINT, timeout_s)

    def wait(self, timeout_s: float = 30.0) -> int:
        """Waits for sipua to exit on its own (e.g. `--once`); returns its exit code.

        Raises:
            PeerError: it did not exit within `timeout_s` (it is then killed).
        """
        return self._signal_and_wait(None, timeout_s)

    def _signal_and_wait(self, sig: signal.Signals | None, timeout_s: float) -> int:
        if self._proc is None:
            raise PeerError("sipua was not started")
        if sig is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_text(self._proc)
            raise PeerError(
                f"sipua did not exit within {timeout_s} s; output:\n{self.tail()}"
            ) from None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        return code

    def kill(self) -> None:
        """Stops sipua if it still runs (SIGTERM, bounded wait, SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            _stop_text(self._proc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        if exc is not None and not isinstance(exc, PeerError):
            print(f"--- sipua output tail ---\n{self.tail()}", file=sys.stderr)


def _stop_text(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)


def run_sipua(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Runs a short sipua command (e.g. `register --once`, `cert export-ca`) to its end.

    The environment gets NO_COLOR=1; stdout and stderr are kept apart.
    """
    return subprocess.run(
        list(argv),
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def sipua_outcome(stdout: str) -> dict[str, Any]:
    """The `outcome` record of a `register --once --log-format json` run (result, lock, reason).

    Raises:
        AssertionError: there is none (the output is in the message).
    """
    for line in stdout.splitlines():
        if line.startswith("{"):
            record: dict[str, Any] = json.loads(line)
            if record.get("event") == "outcome":
                return record
    raise AssertionError(f"no outcome line in sipua's output:\n{stdout}")


def import_device_certificate(data_dir: Path, cert: Path, key: Path) -> None:
    """Runs `sipua cert import-device` (a custom device certificate) into `data_dir`.

    Raises:
        PeerError: the command failed.
    """
    argv = [*SIPUA, "cert", "import-device", "--data-dir", str(data_dir), "--key", str(key)]
    proc = run_sipua([*argv, str(cert)])
    if proc.returncode != 0:
        raise PeerError(f"sipua cert import-device failed ({proc.returncode}): {proc.stderr}")


def export_device_ca(data_dir: Path, dest: Path) -> Path:
    """Runs `sipua cert export-ca --data-dir data_dir` and writes the PEM to `dest`.

    Raises:
        PeerError: the command failed.
    """
    proc = run_sipua([*SIPUA, "cert", "export-ca", "--data-dir", str(data_dir)])
    if proc.returncode != 0 or "BEGIN CERTIFICATE" not in proc.stdout:
        raise PeerError(f"sipua cert export-ca failed ({proc.returncode}): {proc.stderr}")
    dest.write_text(proc.stdout)
    return dest
