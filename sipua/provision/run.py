"""One provisioning run: fetch each configured URL, check it, store it, one outcome per URL.

For the trusted certificates URL the custom trusted list gains what the URL serves (with
`trusted_certificates_delete`: becomes exactly that); without a URL, the delete setting empties
it. For the device certificate URL the custom device certificate is replaced; without a URL,
`server_certificates_delete` removes it. Each store is replaced in one atomic write under the
store's lock (kill -9 at any point leaves the old store or the new one); any failure keeps the
old store and is reported in that URL's outcome, and the other URL is still tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sipua.errors import EXIT_OK, SipuaError
from sipua.provision.content import trusted_certificates
from sipua.provision.fetch import fetch, parse_url
from sipua.settings.model import Settings
from sipua.tls.setup import TlsSetup
from sipua.tls.stores.store import CertStore

Item = Literal["trusted certificates", "device certificate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one provisioning URL (or delete setting) did.

    Attributes:
        item: "trusted certificates" or "device certificate".
        url: The URL, or None for a delete without a URL.
        ok: It was applied.
        changed: The store changed.
        detail: What was stored or removed, or what went wrong.
        exit_code: 0, or the failure's exit code (2 content, 3 TLS, 5 network).
    """

    item: Item
    url: str | None
    ok: bool
    changed: bool
    detail: str
    exit_code: int = EXIT_OK

    def line(self) -> str:
        """The one outcome line shown for this URL."""
        where = self.url or "(delete)"
        word = "provisioned" if self.ok else "provisioning failed"
        # The line names the URL once (an error's message starts with it too).
        detail = self.detail.removeprefix(f"{self.url}: ") if self.url else self.detail
        return f"{word}: {self.item} from {where}: {detail}"

    def fields(self) -> dict[str, object]:
        """The fields of a `provisioned` / `provisioning-failed` event."""
        return {
            "item": self.item,
            "url": self.url,
            "ok": self.ok,
            "changed": self.changed,
            "detail": self.detail,
        }


async def provision(settings: Settings) -> list[Outcome]:
    """Runs every configured provisioning URL once (trusted first: it may be needed to fetch
    the device certificate over HTTPS)."""
    certificates = settings.certificates
    outcomes: list[Outcome] = []
    if certificates.trusted_certificates_url or certificates.trusted_certificates_delete:
        outcomes.append(await _trusted(settings))
    if certificates.server_certificates_url or certificates.server_certificates_delete:
        outcomes.append(await _device(settings))
    return outcomes


async def _download(settings: Settings, url: str) -> bytes:
    target = parse_url(url)
    client = None
    if target.scheme == "https":
        # The trust as it stands now (a trusted list provisioned a moment ago counts).
        client = TlsSetup(settings).provisioning_client(target.host)
    return await fetch(url, client=client, allow_http=settings.certificates.allow_http)


async def _trusted(settings: Settings) -> Outcome:
    certificates = settings.certificates
    url = certificates.trusted_certificates_url
    item: Item = "trusted certificates"
    try:
        certs = []
        if url is not None:
            certs = trusted_certificates(await _download(settings, url), source=url)
        store = CertStore(settings.data_dir).trusted
        added, removed = store.provision(
            certs, replace=certificates.trusted_certificates_delete, source=url or "delete"
        )
    except SipuaError as exc:
        return Outcome(
            item=item, url=url, ok=False, changed=False, detail=str(exc), exit_code=exc.exit_code
        )
    parts = []
    if added:
        parts.append("added " + ", ".join(s.name for s in added))
    if removed:
        parts.append("removed " + ", ".join(s.name for s in removed))
    detail = "; ".join(parts) if parts else f"unchanged ({len(certs)} already trusted)"
    return Outcome(item=item, url=url, ok=True, changed=bool(added or removed), detail=detail)


async def _device(settings: Settings) -> Outcome:
    certificates = settings.certificates
    url = certificates.server_certificates_url
    item: Item = "device certificate"
    devices = CertStore(settings.data_dir).devices
    try:
        if url is None:
            if not devices.has_custom():
                return Outcome(item=item, url=None, ok=True, changed=False, detail="none to remove")
            removed = devices.remove()
            name = removed.name if removed is not None else "an unreadable one"
            return Outcome(item=item, url=None, ok=True, changed=True, detail=f"removed {name}")
        data = await _download(settings, url)
        before = devices.custom_fingerprint()
        stored = devices.import_data(data, source=url)
    except SipuaError as exc:
        return Outcome(
            item=item, url=url, ok=False, changed=False, detail=str(exc), exit_code=exc.exit_code
        )
    changed = stored.fingerprint != before
    what = "stored" if changed else "unchanged"
    detail = f"{what} {stored.name} (sha256 {stored.fingerprint[:16]})"
    if settings.tls.device_cert != "custom":
        detail += "; it is presented once the device certificate setting is 'custom'"
    return Outcome(item=item, url=url, ok=True, changed=changed, detail=detail)
