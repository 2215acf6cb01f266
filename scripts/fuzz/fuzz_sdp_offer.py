"""atheris harness: `sdp_offer` (the property is `oracles.check_sdp_offer`).

Run it with `scripts/fuzz/run sdp_offer SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("sdp_offer")
