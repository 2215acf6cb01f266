"""The certificate store: trusted certificates and sipua's own device certificates, on disk.

It mirrors a desk phone's two certificate lists, each its own class on one directory
(`<data_dir>/certs/`, mode 0700, see `files.py` for what they share):

- `trusted` (`trusted.py`): the operating system's CA bundle (*default*) and up to 10 *custom*
  trusted certificates, the anchors of the trust decision;
- `devices` (`device.py`): the device CA, the unique and generic device certificates it
  issues, and one custom device certificate with its key;
- `known` (`known.py`): the registrar keys trust on first use recorded (sipua's known_hosts).

`find` looks a certificate up in both, for `sipua cert show`.
"""

from __future__ import annotations

from pathlib import Path

from sipua.tls.stores.device import DeviceStore
from sipua.tls.stores.files import StoredCertificate, StoreDirectory, select
from sipua.tls.stores.known import KnownKeys
from sipua.tls.stores.trusted import TrustedStore
from sipua.tls.trust.anchors import SystemBundle


class CertStore:
    """Trusted and device certificates persisted under `data_dir`.

    Args:
        data_dir: sipua's data directory (the `data_dir` setting in production).
        system: The default trusted certificates; None means the OS bundle (tests inject one).

    Attributes:
        trusted: The trusted certificates (default and custom).
        devices: The device certificates.
        known: The registrar keys recorded on first use.
    """

    def __init__(self, data_dir: Path, *, system: SystemBundle | None = None) -> None:
        self.data_dir = data_dir
        self._dir = StoreDirectory(data_dir / "certs")
        self.trusted = TrustedStore(self._dir, system=system)
        self.devices = DeviceStore(self._dir)
        self.known = KnownKeys(self._dir)

    @property
    def directory(self) -> Path:
        """The directory both stores live in."""
        return self._dir.path

    @property
    def problems(self) -> list[str]:
        """Problems met while reading the stores (corrupt files, skipped entries)."""
        return self._dir.problems

    def find(self, ident: str) -> StoredCertificate:
        """Finds a certificate by fingerprint (or unique prefix) or name, in all lists.

        Raises:
            StoreError: nothing matches, or several certificates do.
        """
        everything = [*self.trusted.custom(), *self.devices.certificates(), *self.trusted.default()]
        return select(everything, ident, what="certificate")
