"""kill -9 during certificate store writes: the store is always a state some import left.

A worker process imports into a store in a loop: a bundle of three trusted CAs (one write),
their removal one by one (three writes), then two custom device identities in turn (one
key + certificate file each). The test kills it with SIGKILL at random moments, many times,
and after each kill opens the store as sipua does: the trusted list must be exactly one of the
states the loop passes through (never a partial bundle), the device file must hold a whole
identity whose key matches, and nothing may be reported as corrupt.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from sipua.tls.stores.store import CertStore
from tests.support.certs import Issued, make_ca, make_leaf, pem_bundle
from tests.support.forkserver import ForkServer

KILLS = 25
WORKER = """
import sys
from pathlib import Path

from sipua.tls.stores.store import CertStore

data, bundle, device1, device2 = (Path(arg) for arg in sys.argv[1:5])
store = CertStore(data)


def cycle() -> None:
    # Finish what a killed predecessor left (in import order: each step a valid state).
    for stored in store.trusted.custom():
        store.trusted.remove(stored.fingerprint)
    imported = store.trusted.import_file(bundle)
    for stored in imported:
        store.trusted.remove(stored.fingerprint)
    store.devices.import_files(device1)
    store.devices.import_files(device2)


def victim() -> None:
    say("ready")
    while True:
        cycle()


cycle()  # warm up once (the first import indexes the OS bundle), so kills land in the writes
serve(victim)
"""


def fingerprint(issued: Issued) -> str:
    from cryptography.hazmat.primitives import hashes

    return issued.cert.fingerprint(hashes.SHA256()).hex()


async def test_kill_9_never_leaves_a_mixture(tmp_path: Path) -> None:
    cas = [make_ca(f"Crash CA {i}") for i in range(3)]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem_bundle(*cas))
    devices = [make_leaf(None, cn=f"device-{i}") for i in range(2)]
    device_files = []
    for i, device in enumerate(devices):
        path = tmp_path / f"device{i}.pem"
        path.write_bytes(device.pem + device.key_pem)
        device_files.append(path)
    data = tmp_path / "data"
    a, b, c = (fingerprint(ca) for ca in cas)
    valid_trusted = [set(), {a, b, c}, {b, c}, {c}]
    valid_devices = {fingerprint(d) for d in devices}
    rng = random.Random(7)
    seen_trusted: set[frozenset[str]] = set()
    async with await ForkServer.start(
        WORKER, str(data), str(bundle), *map(str, device_files)
    ) as server:
        for _ in range(KILLS):
            await server.kill_one(after=rng.uniform(0.0, 0.05))
            store = CertStore(data)
            trusted = {s.fingerprint for s in store.trusted.custom()}
            assert trusted in valid_trusted, f"a mixture: {len(trusted)} of the bundle"
            seen_trusted.add(frozenset(trusted))
            if (store.directory / "device-custom.pem").exists():
                identity = store.devices.identity("custom", None)
                assert fingerprint(Issued(identity.certificate, identity.private_key)) in (
                    valid_devices
                )
            assert store.problems == []
    # The kills landed at different points of the loop, not always at the same one.
    assert len(seen_trusted) >= 2


def test_leftovers_of_killed_writers_are_swept_by_the_next_write(tmp_path: Path) -> None:
    import os

    from sipua import storage

    target = tmp_path / "device-custom.pem"
    stale = tmp_path / ".tmp-device-custom.pem-0badcafe"
    fresh = tmp_path / ".tmp-device-custom.pem-00c0ffee"  # a concurrent writer's, in flight
    other = tmp_path / ".tmp-trusted.pem-0badcafe"  # another target's: not this write's business
    for path in (stale, fresh, other):
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nold key\n")
    old = time.time() - storage.STALE_TEMPORARY_SECONDS - 10
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    storage.atomic_write(target, b"new", mode=storage.PRIVATE_FILE_MODE)
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert fresh.exists()
    assert other.exists()


PROVISION_WORKER = """
import sys
from pathlib import Path

import trio

from sipua.provision.run import provision
from sipua.settings.model import CertificateSettings, Settings

data, bundle_a, bundle_b, device_a, device_b = sys.argv[1:6]


def settings(bundle: str, device: str) -> Settings:
    return Settings(
        data_dir=Path(data),
        certificates=CertificateSettings(
            trusted_certificates_url=Path(bundle).as_uri(),
            trusted_certificates_delete=True,
            server_certificates_url=Path(device).as_uri(),
        ),
    )


async def main() -> None:
    first = True
    while True:
        for outcome in await provision(settings(bundle_a, device_a)):
            assert outcome.ok, outcome.detail
        for outcome in await provision(settings(bundle_b, device_b)):
            assert outcome.ok, outcome.detail
        if first:
            say("ready")
            first = False


serve(lambda: trio.run(main))
"""


async def test_kill_9_during_provisioning_leaves_the_old_store_or_the_new(
    tmp_path: Path,
) -> None:
    # A provisioning run replaces each store in one write: killed at any moment, the trusted
    # list is what URL A or URL B served, never a mixture, and the device file is whole.
    bundle_a = [make_ca(f"Provisioned A{i}") for i in range(3)]
    bundle_b = [make_ca(f"Provisioned B{i}") for i in range(2)]
    files = []
    for name, items in (("a.pem", bundle_a), ("b.pem", bundle_b)):
        (tmp_path / name).write_bytes(pem_bundle(*items))
        files.append(tmp_path / name)
    devices = [make_leaf(None, cn=f"provisioned device {i}") for i in range(2)]
    for i, device in enumerate(devices):
        (tmp_path / f"dev{i}.pem").write_bytes(device.key_pem + device.pem)
        files.append(tmp_path / f"dev{i}.pem")
    data = tmp_path / "data"
    valid_trusted = [{fingerprint(c) for c in bundle_a}, {fingerprint(c) for c in bundle_b}]
    valid_devices = {fingerprint(d) for d in devices}
    rng = random.Random(11)
    seen: set[frozenset[str]] = set()
    async with await ForkServer.start(PROVISION_WORKER, str(data), *map(str, files)) as server:
        for _ in range(12):
            await server.kill_one(after=rng.uniform(0.0, 0.05), within=30)
            store = CertStore(data)
            trusted = {s.fingerprint for s in store.trusted.custom()}
            assert trusted in valid_trusted, f"a mixture of {len(trusted)} certificates"
            seen.add(frozenset(trusted))
            identity = store.devices.identity("custom", None)
            assert fingerprint(Issued(identity.certificate, identity.private_key)) in valid_devices
            assert store.problems == []
    assert len(seen) == 2
