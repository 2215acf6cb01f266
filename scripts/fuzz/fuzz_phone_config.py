"""atheris harness: `phone_config` (the property is `oracles.check_phone_config`).

Run it with `scripts/fuzz/run phone_config SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("phone_config")
