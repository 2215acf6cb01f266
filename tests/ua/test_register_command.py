"""`sipua register --once` as CI runs it: a real process against the test registrar."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.readme import in_the_same_order, line_key, readme_block
from tests.support.registrar import Pki, TestRegistrar


async def run_once(
    tmp_path: Path,
    registrar: TestRegistrar | None,
    port: int,
    *extra: str,
    password: str = "s3cret",
    log_format: str = "json",
    merged: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Runs `sipua register --once`; `merged`: standard error into standard output, in order."""
    (tmp_path / "pw").write_text(password + "\n")
    ca = tmp_path / "ca.pem"
    if registrar is not None:
        ca.write_bytes(registrar.pki.ca.pem)
    else:
        ca.write_bytes(Pki.make().ca.pem)
    argv = [
        sys.executable, "-m", "sipua", "register", "--once",
        "--aor", "sips:alice@example.test", "--username", "alice",
        "--password-file", str(tmp_path / "pw"), "--proxy", f"127.0.0.1:{port}",
        "--trusted-cert", str(ca), "--ca-type", "custom", "--data-dir", str(tmp_path / "data"),
        "--log-format", log_format, *extra,
    ]  # fmt: skip
    with trio.fail_after(30):
        if merged:
            return await trio.run_process(
                argv, capture_stdout=True, stderr=subprocess.STDOUT, check=False
            )
        return await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)


async def register_once(
    tmp_path: Path,
    registrar: TestRegistrar | None,
    port: int,
    *extra: str,
    password: str = "s3cret",
) -> tuple[int, list[dict[str, object]], str]:
    result = await run_once(tmp_path, registrar, port, *extra, password=password)
    lines = result.stdout.decode().splitlines() + result.stderr.decode().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return result.returncode, records, result.stderr.decode()


def named(records: list[dict[str, object]], event: str) -> list[dict[str, object]]:
    return [r for r in records if r.get("event") == event]


async def test_once_registers_reports_lock_and_unregisters(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        code, records, stderr = await register_once(tmp_path, registrar, registrar.port)
        assert code == 0, stderr
        assert named(records, "registered")
        assert named(records, "unregistered")
        assert [r["state"] for r in named(records, "lock-changed")][:2] == ["negotiating", "locked"]
        [outcome] = named(records, "outcome")
        assert outcome["result"] == "registered"
        assert outcome["lock"] == "locked"
        assert "alice" not in registrar.bindings
        assert "s3cret" not in stderr


async def test_once_wrong_password_exits_4(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        code, records, stderr = await register_once(
            tmp_path, registrar, registrar.port, password="wrong"
        )
        assert code == 4
        assert named(records, "registration-failed")
        assert "wrong" not in stderr


async def test_once_untrusted_registrar_exits_3_with_reason(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        code, records, _ = await register_once(tmp_path, None, registrar.port)
        assert code == 3
        last = named(records, "lock-changed")[-1]
        assert last["state"] == "unlocked"
        assert "untrusted-issuer" in str(last["reason"])
        assert registrar.registers == []


async def test_once_no_registrar_exits_5(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        port = registrar.port
    code, _, stderr = await register_once(tmp_path, None, port)
    assert code == 5, stderr


async def test_once_console_no_registrar_says_why_once_and_whole(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        port = registrar.port
    result = await run_once(tmp_path, None, port, log_format="console")
    assert result.returncode == 5
    out, err = result.stdout.decode(), result.stderr.decode()
    # The outcome names the lock and its check, never a reason cut at its first " (".
    assert out == (
        "registration failed: sips:alice@example.test; lock: 🔓 unlocked (connect-failed)\n"
    )
    # The explanation is the error line, with the address once and the system's words.
    assert err.splitlines()[-1] == (
        f"sipua: error: cannot connect to 127.0.0.1:{port}: Connection refused; check the "
        "address and that the server runs"
    )
    assert (out + err).count("Connection refused") == 1


async def test_once_console_untrusted_registrar_is_explained_once(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        result = await run_once(tmp_path, None, registrar.port, log_format="console")
    assert result.returncode == 3
    out, err = result.stdout.decode(), result.stderr.decode()
    assert out.endswith("lock: 🔓 unlocked (verification-failed: untrusted-issuer)\n"), out
    assert "🔓 unlocked (verification-failed: untrusted-issuer) peer=" in err
    assert "✘ registration failed error=PeerNotTrusted" in err
    assert err.splitlines()[-1].startswith("sipua: error: the server example.test is not trusted")
    assert (out + err).count("is not trusted") == 1


async def test_readme_once_samples_are_in_the_order_sipua_prints_them(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        result = await run_once(
            tmp_path, registrar, registrar.port, log_format="console", merged=True
        )
        assert result.returncode == 0
        printed = result.stdout.decode().splitlines()
        sample = readme_block("### Register once, for CI")
        # The outcome line comes between the registered and the unregistered lines.
        keys = [line_key(line) for line in sample]
        assert keys[keys.index("[alice] ✔ registered") + 1] == "registered", sample
        assert keys[keys.index("registered") + 1] == "[alice] ○ unregistered", sample
        assert in_the_same_order(sample, printed), printed
        untrusted = await run_once(
            tmp_path, None, registrar.port, log_format="console", merged=True
        )
        assert untrusted.returncode == 3
        printed = untrusted.stdout.decode().splitlines()
        sample = readme_block("Without the registrar's CA in the trusted list")
        assert in_the_same_order(sample, printed), printed


@pytest.mark.parametrize("aor", ["sip:alice@example.test"])
def test_sip_aor_is_a_usage_error(tmp_path: Path, aor: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipua", "register", "--once", "--aor", aor,
         "--username", "alice", "--data-dir", str(tmp_path), "--proxy", "127.0.0.1:9"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert b"sips" in result.stderr


async def test_stays_registered_until_sigterm_then_unregisters(tmp_path: Path) -> None:
    import signal

    async with TestRegistrar() as registrar:
        (tmp_path / "pw").write_text("s3cret\n")
        ca = tmp_path / "ca.pem"
        ca.write_bytes(registrar.pki.ca.pem)
        argv = [
            sys.executable, "-m", "sipua", "register",
            "--aor", "sips:alice@example.test", "--username", "alice",
            "--password-file", str(tmp_path / "pw"), "--proxy", f"127.0.0.1:{registrar.port}",
            "--trusted-cert", str(ca), "--ca-type", "custom", "--data-dir", str(tmp_path / "d"),
            "--listen", "127.0.0.1:0", "--log-format", "json",
        ]  # fmt: skip
        stdout = tmp_path / "stdout"
        with stdout.open("wb") as stdout_file:
            async with trio.open_nursery() as nursery:
                run = functools.partial(
                    trio.run_process,
                    argv,
                    stdout=stdout_file,
                    capture_stderr=True,
                    check=False,
                )
                process = await nursery.start(run)
                await registrar.wait_registered(within=20)
                _, contact, _ = registrar.bindings["alice"]
                assert contact.startswith("<sips:alice@127.0.0.1:")
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    code = await process.wait()
        assert code == 0
        assert "alice" not in registrar.bindings  # unregistered on the way out
    # As with --once, the last line on standard output is the outcome, with the final lock.
    last = json.loads(stdout.read_text().splitlines()[-1])
    assert last == {
        "event": "outcome",
        "result": "unregistered",
        "aor": "sips:alice@example.test",
        "lock": "unlocked",
        "lock_reason": "closed: shutdown",
        "detail": "",
        "exit_code": 0,
    }


async def test_shutdown_after_a_signal_is_bounded_by_a_stuck_caller(tmp_path: Path) -> None:
    # Regression: after SIGINT/SIGTERM the BYE to a caller whose TCP took no more data
    # blocked under a shield with no time limit, and sipua never exited.
    from sipua.commands.register import shutdown
    from sipua.ua.agent import UserAgent
    from tests.ua.test_agent import events, settings, wait_until
    from tests.ua.test_calls import OFFER, request

    async with TestRegistrar() as registrar:
        async with UserAgent(settings(tmp_path, registrar)) as ua:
            await ua.account.register()
            _, contact, _ = registrar.bindings["alice"]
            uri = contact.split("<", 1)[1].split(">", 1)[0]
            flow = await registrar.send_request("alice", request("INVITE", uri, body=OFFER))
            ok = await registrar.response(flow, status=200)
            await flow.send(request("ACK", uri, to_tag=ok.to.tag))
            await wait_until(lambda: bool(events(ua, "call-confirmed")), 5)
            [call] = ua.calls.endpoint._calls.values()

            async def stuck(message: object) -> None:
                # A caller whose TCP window stays shut (not for ever, so that an unbounded
                # shutdown makes this test fail instead of hanging it).
                await trio.sleep(4)

            call.link.handle.send = stuck  # type: ignore[method-assign]
            start = trio.current_time()
            await shutdown(ua, seconds=0.5)
            assert trio.current_time() - start < 2
        # Leaving the user agent does not wait for the stuck caller a second time: the
        # shutdown that gave up on it closed its connection.
        assert trio.current_time() - start < 2


async def test_once_pin_mismatch_exits_3_naming_both_pins(tmp_path: Path) -> None:
    from sipua.tls.trust.pins import spki_pin
    from tests.support.certs import make_ca

    wanted = spki_pin(make_ca("Some Other CA").cert)
    async with TestRegistrar() as registrar:
        code, records, stderr = await register_once(
            tmp_path, registrar, registrar.port, "--pin", wanted
        )
        presented = spki_pin(registrar.pki.server.cert)
    assert code == 3, stderr
    assert wanted in stderr
    assert presented in stderr
    [outcome] = named(records, "outcome")
    assert outcome["lock"] == "unlocked"
    assert "pin-mismatch" in str(outcome["lock_reason"])
    assert not registrar.registers


async def test_once_matching_pin_reports_the_basis(tmp_path: Path) -> None:
    from sipua.tls.trust.pins import spki_pin

    async with TestRegistrar() as registrar:
        pin = spki_pin(registrar.pki.server.cert)
        code, records, stderr = await register_once(
            tmp_path, registrar, registrar.port, "--pin", pin
        )
    assert code == 0, stderr
    [outcome] = named(records, "outcome")
    assert outcome["lock"] == "locked"
    assert outcome["lock_basis"] == "pinned"


async def test_sighup_reloads_the_stores_of_a_running_register(tmp_path: Path) -> None:
    # A real `sipua register`: SIGHUP re-reads the stores; the registration flow stays up, the
    # listener presents the new device certificate on new handshakes, an event says what changed.
    import signal

    from sipua.tls.stores.store import CertStore
    from tests.support.certs import make_ca, make_leaf
    from tests.ua.test_certificate_life import _presented_fingerprint

    data = tmp_path / "d"
    async with TestRegistrar() as registrar:
        (tmp_path / "pw").write_text("s3cret\n")
        ca = tmp_path / "ca.pem"
        ca.write_bytes(registrar.pki.ca.pem)
        device_ca = make_ca("Provisioned Device CA")
        first = make_leaf(device_ca, cn="device one")
        second = make_leaf(device_ca, cn="device two")
        (tmp_path / "one.pem").write_bytes(first.key_pem + first.pem)
        (tmp_path / "two.pem").write_bytes(second.key_pem + second.pem)
        store = CertStore(data)
        store.devices.import_files(tmp_path / "one.pem")
        argv = [
            sys.executable, "-m", "sipua", "register",
            "--aor", "sips:alice@example.test", "--username", "alice",
            "--password-file", str(tmp_path / "pw"), "--proxy", f"127.0.0.1:{registrar.port}",
            "--trusted-cert", str(ca), "--ca-type", "custom", "--data-dir", str(data),
            "--device-cert", "custom", "--listen", "127.0.0.1:0", "--log-format", "json",
        ]  # fmt: skip
        stdout = tmp_path / "stdout"
        stderr = tmp_path / "stderr"

        def records() -> list[dict[str, object]]:
            lines = stderr.read_text().splitlines()
            return [json.loads(line) for line in lines if line.startswith("{")]

        async def wait_event(name: str) -> dict[str, object]:
            with trio.fail_after(20):
                while True:
                    found = named(records(), name)
                    if found:
                        return found[-1]
                    await trio.sleep(0.05)

        with stdout.open("wb") as stdout_file, stderr.open("wb") as stderr_file:
            async with trio.open_nursery() as nursery:
                run = functools.partial(
                    trio.run_process, argv, stdout=stdout_file, stderr=stderr_file, check=False
                )
                process = await nursery.start(run)
                await registrar.wait_registered(within=20)
                listening = await wait_event("listening")
                host, _, port = str(listening["address"]).rpartition(":")
                address = (host, int(port))
                assert await _presented_fingerprint(address) == first.fingerprint
                store.devices.import_files(tmp_path / "two.pem")
                process.send_signal(signal.SIGHUP)
                reloaded = await wait_event("certificates-reloaded")
                assert reloaded["trigger"] == "sighup"
                assert "device two" in str(reloaded["device_certificate"])
                assert "device one" in str(reloaded["device_certificate_before"])
                assert await _presented_fingerprint(address) == second.fingerprint
                assert registrar.connections == 1  # the registration flow stayed up
                assert process.returncode is None
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    code = await process.wait()
        assert code == 0
        assert "alice" not in registrar.bindings
