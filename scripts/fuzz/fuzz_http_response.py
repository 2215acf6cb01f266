"""atheris harness: `http_response` (the property is `oracles.check_http_response`).

Run it with `scripts/fuzz/run http_response SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("http_response")
