"""How long certificates have left: days to expiry, and which ones need a warning.

Pure functions over certificates and a time given by the caller. `sipua cert list` shows
`days_left` for every certificate; `sipua register` warns at start (and on every later check)
about the certificates it relies on that expire within `certificates.expiry_warning_days`: the
custom trusted ones and the device certificate in use with its chain. The operating system's
bundle (the *default* trusted certificates) is the system's to maintain and is not warned about.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sipua.tls.stores.device import new_device_ca_advice
from sipua.tls.stores.files import StoredCertificate

SECONDS_PER_DAY: Final = 86_400


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until `not_after`, rounded toward zero: 0 on the last day and on the day
    after it ends, -1 once a whole day has passed since, and so on (see `describe_expiry`)."""
    return math.trunc((not_after - now).total_seconds() / SECONDS_PER_DAY)


def describe_expiry(not_after: dt.datetime, now: dt.datetime) -> str:
    """The time left in words: "12 days left", "expires within a day", "expired less than a
    day ago", "expired 3 days ago" (whole days, rounded toward zero)."""
    days = abs(days_left(not_after, now))
    plural = "s" if days != 1 else ""
    if now < not_after:
        return f"{days} day{plural} left" if days else "expires within a day"
    return f"expired {days} day{plural} ago" if days else "expired less than a day ago"


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiring:
    """A certificate sipua relies on that expires soon (or has expired).

    Attributes:
        role: "trusted" or "device".
        kind: The store's kind ("custom", "unique", "generic", "device-ca", ...).
        name: The certificate's short name.
        fingerprint: Its SHA-256 fingerprint.
        not_after: When it expires.
        days_left: Whole days left, rounded toward zero (`days_left`; `not_after` says
            whether it has passed).
        renewable: sipua issued it and renews it itself (a unique or generic device
            certificate that ends before its device CA); anything else must be replaced by
            whoever issued it (for the device CA: the user).
        path: The file it is stored in, when the action names it (the device CA).
    """

    role: str
    kind: str
    name: str
    fingerprint: str
    not_after: dt.datetime
    days_left: int
    renewable: bool
    path: Path | None = None

    def fields(self) -> dict[str, object]:
        """The event fields of a `certificate-expiring` event."""
        return {
            "role": self.role,
            "kind": self.kind,
            "name": self.name,
            "sha256": self.fingerprint,
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "action": self.action,
        }

    @property
    def action(self) -> str:
        """What happens or what to do about it."""
        if self.renewable:
            return "sipua renews it from its device CA before it expires"
        if self.role == "trusted":
            return "import the issuer's new certificate (sipua cert import-trusted FILE)"
        if self.kind == "device-ca":
            path = self.path if self.path is not None else Path("device-ca.pem")
            return f"sipua does not renew its device CA: {new_device_ca_advice(path)}"
        if self.kind in ("unique", "generic"):
            return (
                "it ends with the device CA that issued it, so sipua cannot renew it: make a "
                "new device CA (see the device CA's certificate-expiring warning)"
            )
        return "import a renewed device certificate (sipua cert import-device CERT)"


def expiring(
    certificates: Iterable[StoredCertificate], *, within_days: int, now: dt.datetime
) -> list[Expiring]:
    """The certificates that expire within `within_days` days of `now`, soonest first.

    A unique or generic device certificate counts as renewable unless it ends with (or after)
    a device CA among `certificates` (its issuer, as `TlsSetup.in_use` lists it).
    """
    listed = list(certificates)
    ca_ends = [s.summary.not_after for s in listed if s.kind == "device-ca"]
    found: dict[str, Expiring] = {}
    for stored in listed:
        not_after = stored.summary.not_after
        if not_after - now >= dt.timedelta(days=within_days) or stored.fingerprint in found:
            continue
        issued = stored.role == "device" and stored.kind in ("unique", "generic")
        found[stored.fingerprint] = Expiring(
            role=stored.role,
            kind=stored.kind,
            name=stored.name,
            fingerprint=stored.fingerprint,
            not_after=not_after,
            days_left=days_left(not_after, now),
            renewable=issued and not any(not_after >= end for end in ca_ends),
            path=stored.path,
        )
    return sorted(found.values(), key=lambda e: e.not_after)
