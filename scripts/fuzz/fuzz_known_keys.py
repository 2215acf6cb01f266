"""atheris harness: `known_keys` (the property is `oracles.check_known_keys`).

Run it with `scripts/fuzz/run known_keys SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("known_keys")
