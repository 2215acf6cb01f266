"""The trusted certificates: the operating system's CA bundle and up to 10 custom ones.

As on a desk phone, the *default* trusted certificates are built in (here: the operating
system's CA bundle, read-only, see `sipua.tls.trust.anchors`) and up to `MAX_CUSTOM_TRUSTED`
*custom* ones are imported by the user into `<data_dir>/certs/trusted.pem`, one PEM block each
(with a comment line naming it). `anchors(accepted_ca)` gives the trust anchors for the "CA
certificates" setting. A custom entry need not be a CA: a server's own (self-signed)
certificate imported here is trusted as itself. Whoever can write `trusted.pem` decides whom
sipua trusts, so the file and its directory are refused if anyone but this user can write them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509

from sipua import storage
from sipua.errors import CertificateError, StoreError
from sipua.tls.certs import (
    CertSummary,
    certificate_pem,
    fingerprint,
    load_certificate_file,
    load_certificates,
    pem_blocks,
)
from sipua.tls.stores.files import (
    StoredCertificate,
    StoreDirectory,
    check_not_writable_by_others,
    select,
)
from sipua.tls.trust.anchors import SystemBundle, system_bundle
from sipua.tls.trust.policy import ACCEPTED_CA_VALUES, AcceptedCa

#: Custom trusted certificates the store holds at most (the phone's limit).
MAX_CUSTOM_TRUSTED: Final = 10

_TRUSTED_FILE: Final = "trusted.pem"


@dataclass(frozen=True, slots=True)
class _TrustedEntry:
    block: bytes  # the PEM block exactly as stored
    stored: StoredCertificate | None  # None: the entry is unreadable
    why: str = ""  # why it is unreadable


class TrustedStore:
    """The default and custom trusted certificates.

    Args:
        directory: The store directory (shared with the device store).
        system: The default trusted certificates; None means the OS bundle (tests inject one).
    """

    def __init__(self, directory: StoreDirectory, *, system: SystemBundle | None = None) -> None:
        self._dir = directory
        self._system = system

    @property
    def system(self) -> SystemBundle:
        """The default trusted certificates (the OS CA bundle, loaded lazily and cached)."""
        if self._system is None:
            self._system = system_bundle()
        return self._system

    def default(self) -> list[StoredCertificate]:
        """The default (built-in) trusted certificates."""
        return [
            StoredCertificate.of(c, role="trusted", kind="default")
            for c in self.system.certificates
        ]

    def custom(self, *, strict: bool = False) -> list[StoredCertificate]:
        """The imported trusted certificates, in import order; corrupt entries go to `problems`.

        Only the first `MAX_CUSTOM_TRUSTED` readable ones count; more (a file edited by hand)
        is reported in `problems`.

        Args:
            strict: refuse a file that does not load whole (it cannot be read, someone else
                could have written it, or an entry is unreadable) instead of skipping what
                cannot be used. A running user agent reloads this way: it keeps the trust it
                has rather than lose some or all of it to a damaged file.

        Raises:
            StoreError: only when `strict`: the file does not load whole; the message names
                the file and what to do.
        """
        try:
            entries = self._trusted_entries()
        except StoreError as exc:
            if strict:
                raise
            self._dir.problem(str(exc))
            return []
        unreadable = [e.why for e in entries if e.stored is None]
        if strict and unreadable:
            raise StoreError(
                f"{self.path} has unreadable content ({'; '.join(unreadable)}); repair the file or "
                "delete the unreadable entries from it (or remove it and import the "
                "certificates again with `sipua cert import-trusted FILE`)"
            )
        readable = [e.stored for e in entries if e.stored is not None]
        if len(readable) > MAX_CUSTOM_TRUSTED:
            self._dir.problem(
                f"{self.path} holds {len(readable)} trusted certificates; only the first "
                f"{MAX_CUSTOM_TRUSTED} are used: remove some with `sipua cert remove-trusted ID`"
            )
        return readable[:MAX_CUSTOM_TRUSTED]

    def _trusted_entries(self) -> list[_TrustedEntry]:
        """Every PEM block of trusted.pem, readable or not, with its exact bytes.

        Raises:
            StoreError: the file exists but cannot be read, or someone else could have written
                it or its directory (then it is not trusted at all).
        """
        path = self.path
        if not path.exists():
            return []
        check_not_writable_by_others(self._dir.path)
        check_not_writable_by_others(path)
        data = storage.read_bounded(path)
        blocks = pem_blocks(data)
        if not blocks and data.strip():
            # Not PEM at all: one unreadable entry, kept as it is by a removal.
            self._dir.problem(f"{path} holds no PEM certificate; its content is ignored")
            return [_TrustedEntry(block=data, stored=None, why="it holds no PEM certificate")]
        entries: list[_TrustedEntry] = []
        for index, block in enumerate(blocks, start=1):
            try:
                (cert,) = load_certificates(block.data, source=f"{path} entry #{index}")
            except (CertificateError, ValueError) as exc:
                self._dir.problem(f"{exc}; the entry is skipped (re-import the certificate)")
                entries.append(_TrustedEntry(block=block.data, stored=None, why=str(exc)))
                continue
            stored = StoredCertificate.of(cert, role="trusted", kind="custom", path=path)
            entries.append(_TrustedEntry(block=block.data, stored=stored))
        return entries

    def anchors(self, accepted_ca: AcceptedCa = "all") -> list[x509.Certificate]:
        """The trust anchors for a "CA certificates" setting: default, custom or all.

        Raises:
            ValueError: `accepted_ca` is not one of "default", "custom", "all".
        """
        if accepted_ca not in ACCEPTED_CA_VALUES:
            raise ValueError(f"accepted_ca must be one of {', '.join(ACCEPTED_CA_VALUES)}")
        anchors: list[x509.Certificate] = []
        if accepted_ca in ("default", "all"):
            anchors.extend(self.system.certificates)
        if accepted_ca in ("custom", "all"):
            anchors.extend(s.certificate for s in self.custom())
        return anchors

    def import_file(self, path: Path) -> list[StoredCertificate]:
        """Imports the certificate(s) of a .pem/.cer/.crt/.der file as custom trusted ones.

        All or nothing: if any certificate of the file is refused, none is imported. A
        certificate the file holds more than once is imported once (and noted in `problems`).

        Returns:
            The imported certificates, each once.

        Raises:
            CertificateError: the file is unreadable, empty, of the wrong type, a private key, or
                not a certificate.
            StoreError: a certificate is already trusted, or the import would exceed
                `MAX_CUSTOM_TRUSTED`.
        """
        new = load_certificate_file(path)
        with self._dir.locked():
            return self._import_trusted(path, new)

    def _import_trusted(self, path: Path, new: list[x509.Certificate]) -> list[StoredCertificate]:
        entries = self._trusted_entries()
        unreadable = [str(i) for i, e in enumerate(entries, start=1) if e.stored is None]
        if unreadable:
            # Rewriting would have to drop or keep entries sipua cannot vouch for; the user
            # decides.
            raise StoreError(
                f"{path}: nothing was imported because {self.path} has unreadable "
                f"entries (#{', #'.join(unreadable)}); delete them from the file (or remove the "
                "file and import the certificates again), then retry"
            )
        existing = [e.stored for e in entries if e.stored is not None]
        known = {s.fingerprint: s for s in existing}
        distinct: dict[str, x509.Certificate] = {}
        for cert in new:
            fp = fingerprint(cert)
            if fp in distinct:
                # A bundle that repeats a certificate (two files concatenated) means it once.
                self._dir.problem(
                    f"{path} holds certificate {CertSummary.of(cert).name!r} (SHA-256 "
                    f"{fp[:16]}...) more than once; it is imported once"
                )
                continue
            if fp in known:
                raise StoreError(
                    f"{path}: certificate {known[fp].name!r} (SHA-256 {fp[:16]}...) is already "
                    "trusted; nothing was imported"
                )
            distinct[fp] = cert
        new = list(distinct.values())
        if len(existing) + len(new) > MAX_CUSTOM_TRUSTED:
            raise StoreError(
                f"{path}: importing {len(new)} certificate(s) would make "
                f"{len(existing) + len(new)} custom trusted certificates; at most "
                f"{MAX_CUSTOM_TRUSTED} are allowed. Remove some with "
                "`sipua cert remove-trusted ID` first"
            )
        self._write_trusted(
            [*(e.block for e in entries), *(certificate_pem(c) for c in new)],
            [*(e.stored.certificate for e in entries if e.stored is not None), *new],
        )
        return [StoredCertificate.of(c, role="trusted", kind="custom", path=self.path) for c in new]

    def provision(
        self, certs: list[x509.Certificate], *, replace: bool, source: str
    ) -> tuple[list[StoredCertificate], list[StoredCertificate]]:
        """Makes the custom list what a provisioning URL says, in one atomic write.

        Args:
            certs: The certificates fetched (checked already).
            replace: The list becomes exactly `certs` (the phone's `.delete` counterpart);
                otherwise those not yet trusted are added and the rest kept.
            source: The URL, for messages.

        Returns:
            The certificates added and those removed.

        Raises:
            StoreError: the result would exceed `MAX_CUSTOM_TRUSTED`, or (when adding) the file
                has unreadable entries; nothing is written then.
        """
        with self._dir.locked():
            entries = self._trusted_entries()
            existing = [e.stored for e in entries if e.stored is not None]
            known = {s.fingerprint for s in existing}
            fresh: dict[str, x509.Certificate] = {}
            for cert in certs:
                fresh.setdefault(fingerprint(cert), cert)
            if replace:
                wanted = list(fresh.values())
                added = [c for fp, c in fresh.items() if fp not in known]
                removed = [s for s in existing if s.fingerprint not in fresh]
                blocks = [certificate_pem(c) for c in wanted]
            else:
                unreadable = [e for e in entries if e.stored is None]
                if unreadable:
                    raise StoreError(
                        f"{source}: nothing was stored because {self.path} has unreadable "
                        "entries; delete them from the file, then provision again"
                    )
                added = [c for fp, c in fresh.items() if fp not in known]
                removed = []
                wanted = [*(s.certificate for s in existing), *added]
                blocks = [*(e.block for e in entries), *(certificate_pem(c) for c in added)]
            if len(wanted) > MAX_CUSTOM_TRUSTED:
                raise StoreError(
                    f"{source}: storing these certificates would make {len(wanted)} custom "
                    f"trusted certificates; at most {MAX_CUSTOM_TRUSTED} are allowed (the old "
                    "list is kept); serve fewer, or set certificates.trusted_certificates_delete "
                    "to replace the list"
                )
            if added or removed or (replace and len(entries) != len(wanted)):
                self._write_trusted(blocks, wanted)
        stored = [
            StoredCertificate.of(c, role="trusted", kind="custom", path=self.path) for c in added
        ]
        return stored, removed

    def remove(self, ident: str) -> StoredCertificate:
        """Removes one custom trusted certificate by fingerprint (or unique prefix) or name.

        Raises:
            StoreError: no custom trusted certificate matches, or several do.
        """
        with self._dir.locked():
            entries = self._trusted_entries()
            existing = [e.stored for e in entries if e.stored is not None]
            victim = select(existing, ident, what="custom trusted certificate")
            # Every other entry is kept byte for byte, unreadable ones and any beyond the limit
            # included: removing one certificate must not lose others.
            kept = [e for e in entries if e.stored is None or e.stored is not victim]
            self._write_trusted(
                [e.block for e in kept],
                [e.stored.certificate for e in kept if e.stored is not None],
            )
            return victim

    @property
    def path(self) -> Path:
        """The file of the custom trusted certificates."""
        return self._dir.path / _TRUSTED_FILE

    def _write_trusted(self, blocks: list[bytes], certs: list[x509.Certificate]) -> None:
        # `blocks` are written as they are; the readable ones (`certs`) get a comment line.
        storage.ensure_private_dir(self._dir.path)
        comments = {certificate_pem(c): b"# " + _comment(c) + b"\n" for c in certs}
        text = b"".join(comments.get(block, b"") + block for block in blocks)
        storage.atomic_write(self.path, text, mode=storage.PUBLIC_FILE_MODE)


def _comment(cert: x509.Certificate) -> bytes:
    summary = CertSummary.of(cert)
    # Only for people reading the file; PEM parsers skip text between blocks.
    text = f"{summary.name} sha256={summary.fingerprint}"
    return text.encode("ascii", "replace").replace(b"\n", b" ")
