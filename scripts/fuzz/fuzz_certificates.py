"""atheris harness: `certificates` (the property is `oracles.check_certificates`).

Run it with `scripts/fuzz/run certificates SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("certificates")
