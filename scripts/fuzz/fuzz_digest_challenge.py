"""atheris harness: `digest_challenge` (the property is `oracles.check_digest_challenge`).

Run it with `scripts/fuzz/run digest_challenge SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("digest_challenge")
