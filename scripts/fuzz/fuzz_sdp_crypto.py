"""atheris harness: `sdp_crypto` (the property is `oracles.check_sdp_crypto`).

Run it with `scripts/fuzz/run sdp_crypto SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("sdp_crypto")
