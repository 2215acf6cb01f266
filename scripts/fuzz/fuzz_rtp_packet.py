"""atheris harness: `rtp_packet` (the property is `oracles.check_rtp_packet`).

Run it with `scripts/fuzz/run rtp_packet SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("rtp_packet")
