"""sipua's settings: the model with each setting's one declaration (`model`, `schema`), the
value parsers (`values`), secrets (`secret`), loading (`load`) and flags (`flags`).

Only the model and `Secret` are re-exported here, and they import nothing but the standard
library (and the declarations and parsers, which do the same), so `import sipua.settings` stays
cheap for the command line's `--help` path. Load settings with
`sipua.settings.load.load_settings` or, from a command, `sipua.settings.flags.settings_from_args`.
"""

from __future__ import annotations

from sipua.settings.model import AccountSettings, ListenSettings, Settings, TlsSettings
from sipua.settings.secret import Secret

__all__ = ["AccountSettings", "ListenSettings", "Secret", "Settings", "TlsSettings"]
