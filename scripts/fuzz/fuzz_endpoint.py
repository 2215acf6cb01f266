"""atheris harness: `endpoint` (the property is `oracles.check_endpoint`).

Run it with `scripts/fuzz/run endpoint SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("endpoint")
