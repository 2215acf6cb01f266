"""sipua's settings: the model (`model`), secrets (`secret`), loading (`load`) and flags (`flags`).

Only the model and `Secret` are re-exported here, and both import nothing but the standard
library, so `import sipua.settings` stays cheap for the command line's `--help` path. Load
settings with `sipua.settings.load.load_settings` or, from a command,
`sipua.settings.flags.settings_from_args`.
"""

from __future__ import annotations

from sipua.settings.model import AccountSettings, ListenSettings, Settings, TlsSettings
from sipua.settings.secret import Secret

__all__ = ["AccountSettings", "ListenSettings", "Secret", "Settings", "TlsSettings"]
