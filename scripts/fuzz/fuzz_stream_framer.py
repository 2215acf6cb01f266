"""atheris harness: `stream_framer` (the property is `oracles.check_stream_framer`).

Run it with `scripts/fuzz/run stream_framer SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("stream_framer")
