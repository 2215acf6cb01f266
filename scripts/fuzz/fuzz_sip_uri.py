"""atheris harness: `sip_uri` (the property is `oracles.check_sip_uri`).

Run it with `scripts/fuzz/run sip_uri SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("sip_uri")
