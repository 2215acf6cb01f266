"""`python -m sipua` runs the command line."""

from __future__ import annotations

import sys

from sipua.cli import main

sys.exit(main())
