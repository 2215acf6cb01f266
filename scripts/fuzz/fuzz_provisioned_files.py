"""atheris harness: `provisioned_files` (the property is `oracles.check_provisioned_files`).

Run it with `scripts/fuzz/run provisioned_files SECONDS`; see README.md in this directory.
"""

from __future__ import annotations

from harness import main

if __name__ == "__main__":
    main("provisioned_files")
