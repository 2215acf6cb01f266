"""The trust verdict's own cost: `verify_chain` per chain, in µs, uncached.

The chain is the one `handshake.py` serves (a P-256 leaf for localhost under a P-256 CA, made
at run time), verified the way a handshake does when the verdict cache misses: leaf and CA
presented, the CA imported as a custom trusted certificate, the OS CA bundle as the default
set, RFC 5922 identity on. A second figure is the same chain through the production client
verifier (`sipua.tls.trust.verify.client_verifier`), whose verdict cache answers all but the first
call: the difference is what the cache saves per handshake.

Usage: python scripts/bench/verify.py [--count 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from handshake import SERVER_NAME, make_certs  # noqa: E402

from sipua.tls.certs import load_certificate_file  # noqa: E402
from sipua.tls.connection.context import TlsClientConfig  # noqa: E402
from sipua.tls.trust.policy import TrustPolicy, verify_chain  # noqa: E402
from sipua.tls.trust.verify import clear_verdict_cache, client_verifier  # noqa: E402


def per_call_us(call: object, count: int) -> float:
    """Microseconds per call of `call()` over `count` calls."""
    assert callable(call)
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000, help="verifications per run")
    parser.add_argument("--runs", type=int, default=5, help="runs (the median is printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca_pem, leaf_pem, _, ca = make_certs(Path(tmp))
        leaf = load_certificate_file(leaf_pem)[0]
        del ca_pem
    chain = [leaf, ca]
    policy = TrustPolicy()
    result = verify_chain(chain, name=SERVER_NAME, trusted=[ca], policy=policy)
    if not result.verified:
        sys.exit(f"the bench chain does not verify: {result}")
    config = TlsClientConfig(server_name=SERVER_NAME, trusted=(ca,), policy=policy)
    uncached, cached = [], []
    for _ in range(args.runs):
        uncached.append(
            per_call_us(
                lambda: verify_chain(chain, name=SERVER_NAME, trusted=[ca], policy=policy),
                args.count,
            )
        )
        clear_verdict_cache()
        verifier = client_verifier(config)
        cached.append(per_call_us(lambda verifier=verifier: verifier(chain), args.count))
    print(
        f"verify_chain, uncached: {statistics.median(uncached):.0f} µs/chain "
        f"({min(uncached):.0f}-{max(uncached):.0f}, {args.runs} runs of {args.count})"
    )
    print(
        f"client verifier with its verdict cache: {statistics.median(cached):.1f} µs/chain "
        f"({min(cached):.1f}-{max(cached):.1f})"
    )


if __name__ == "__main__":
    main()
