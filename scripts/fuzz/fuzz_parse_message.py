"""atheris harness: `parse_message` (the property is `oracles.check_parse_message`).

Run it with `scripts/fuzz/run parse_message SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("parse_message")
