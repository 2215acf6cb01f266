"""TLS handshakes per second: sipua's client beside `openssl s_time -new`, same server, same run.

One local `openssl s_server -www` (an ECDSA P-256 leaf for "localhost" under a P-256 CA, both
made at run time; TLS 1.2 and 1.3 enabled). Then, alternating, for each protocol version:

- sipua: `sipua.transport.client.open_tls` in a loop, one handshake after the other, the way
  `sipua register` connects (TCP to 127.0.0.1, a new `TlsStream` with the cached client
  context, the real verifier `sipua.tls.trust.policy.verify_chain` on every handshake, close_notify
  and close). Every handshake is full: sipua never resumes sessions.
- `openssl s_time -new -verify 4` against the same server for the same time (full handshakes,
  OpenSSL's own chain check, no request; the system's `openssl`).

Measured per run: handshakes per second (wall time) and client CPU per handshake (sipua: this
process's rusage during its loop; s_time: the child's rusage). The server is a single process
and takes its own core, so rates include its share; client CPU is the figure that compares
the two clients alone. Medians of the runs, with min-max, and the ratios sipua / s_time.

With `--concurrency N` sipua keeps N handshakes in flight in its one process (s_time cannot):
its CPU then overlaps the server's, so the rate is no longer like for like; client CPU per
handshake still is.

Usage: python scripts/bench/handshake.py [--seconds 3] [--runs 3] [--versions 1.3 1.2]
                                         [--groups X25519] [--profile FILE] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402
from _peers import spread, workdir  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from sipua.tls.connection.context import TlsClientConfig, TlsProtocol  # noqa: E402
from sipua.tls.trust.policy import TrustPolicy  # noqa: E402
from sipua.transport.client import open_tls  # noqa: E402

SERVER_NAME = "localhost"


def make_certs(work: Path) -> tuple[Path, Path, Path, x509.Certificate]:
    """A P-256 CA and a P-256 leaf for localhost: (ca.pem, leaf.pem, leaf.key, CA)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipua bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, leaf_pem, key_pem = work / "ca.pem", work / "leaf.pem", work / "leaf.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, leaf_pem, key_pem, ca


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(leaf: Path, key: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(leaf),
        "-key", str(key), "-www", "-quiet",
    ]  # fmt: skip
    server = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("openssl s_server did not start listening within 10 s")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_sipua(
    config: TlsClientConfig, port: int, seconds: float, concurrency: int = 1
) -> dict[str, float]:
    """Full handshakes for `seconds`, `concurrency` loops at once (1: sequential, as s_time):
    rate and CPU ms per handshake."""

    async def loop(counts: list[int]) -> None:
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            opened = await open_tls("127.0.0.1", port, config, handshake_timeout=10)
            await opened.stream.aclose()
            counts[0] += 1

    async def loops() -> int:
        counts = [0]
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(loop, counts)
        return counts[0]

    cpu = _cpu_self()
    started = time.perf_counter()
    done = trio.run(loops)
    wall = time.perf_counter() - started
    cpu = _cpu_self() - cpu
    return {"rate": done / wall, "cpu_ms": cpu * 1000 / done}


_S_TIME_COUNT = re.compile(rb"(\d+) connections in [\d.]+s")


def run_s_time(version: str, ca: Path, port: int, seconds: int) -> dict[str, float]:
    argv = [
        "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
        "-CAfile", str(ca), "-verify", "4", "-tls1_3" if version == "1.3" else "-tls1_2",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, timeout=seconds + 30, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = _S_TIME_COUNT.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"s_time failed ({result.returncode}): {result.stdout[-500:]!r}")
    done = int(match.group(1))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rate": done / wall, "cpu_ms": cpu * 1000 / done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each client")
    parser.add_argument("--versions", nargs="+", default=["1.3", "1.2"], choices=["1.3", "1.2"])
    parser.add_argument("--groups", help="sipua's key-exchange groups, e.g. X25519")
    parser.add_argument("--profile", type=Path, help="write a cProfile of sipua's runs here")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="sipua's handshakes in flight (default 1: sequential, like s_time, which cannot "
        "overlap them); above 1 the figure is no longer like for like",
    )
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        raise SystemExit("the openssl command line tool is needed")
    work = workdir()
    ca_pem, leaf_pem, key_pem, ca = make_certs(work)
    port = free_port()
    server = start_server(leaf_pem, key_pem, port)
    profiler = cProfile.Profile() if args.profile else None
    lines = [
        f"TLS handshakes, full, sipua {args.concurrency} in flight (s_time: sequential), "
        f"{args.seconds} s per run, {args.runs} alternating runs against one openssl s_server "
        "(ECDSA P-256), median (min-max):"
    ]
    try:
        for version in args.versions:
            config = TlsClientConfig(
                server_name=SERVER_NAME,
                policy=TrustPolicy(accepted_ca="custom"),
                trusted=(ca,),
                protocol=TlsProtocol(
                    min_version=version,  # type: ignore[arg-type]
                    max_version=version,  # type: ignore[arg-type]
                    groups=args.groups or None,
                ),
            )
            run_sipua(config, port, 0.5)  # warm-up: context, imports, caches
            sipua_runs: list[dict[str, float]] = []
            s_time_runs: list[dict[str, float]] = []
            for _ in range(args.runs):
                if profiler is not None:
                    profiler.enable()
                sipua_runs.append(run_sipua(config, port, args.seconds, args.concurrency))
                if profiler is not None:
                    profiler.disable()
                s_time_runs.append(run_s_time(version, ca_pem, port, args.seconds))
            rate_sipua = [r["rate"] for r in sipua_runs]
            rate_s_time = [r["rate"] for r in s_time_runs]
            cpu_sipua = statistics.median(r["cpu_ms"] for r in sipua_runs)
            cpu_s_time = statistics.median(r["cpu_ms"] for r in s_time_runs)
            lines += [
                f"  TLS {version}: sipua {spread(rate_sipua)}/s, client CPU {cpu_sipua:.3f} ms"
                f"; s_time {spread(rate_s_time)}/s, client CPU {cpu_s_time:.3f} ms",
                f"    ratio sipua/s_time: throughput "
                f"{statistics.median(rate_sipua) / statistics.median(rate_s_time):.2f}x, "
                f"client CPU {cpu_sipua / cpu_s_time:.2f}x (target: >= 1.0x throughput)",
            ]
    finally:
        server.terminate()
        server.wait(timeout=10)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
