"""The user agent: settings in, a registered account, an inbound listener and call handling.

Theory of operation: `UserAgent` is an async context manager that owns the one nursery in
which every task of sipua runs (connection readers, the listener, per-call tasks, the account's
maintenance). Entering it prepares what the account needs and starts the listener (with
`nursery.start`, so the Contact can carry the bound address); leaving it hangs up calls, closes
the flow and cancels the rest. The protocol state machines are sans-IO (`sipua.sip`): one
pump (`calls.CallHandler`) feeds the endpoint `trio.current_time()` and carries out what it
decides, for the account's registration as for calls; the account performs the endpoint's
"locate" and "connect" outputs.

It also turns settings into TLS configurations (the trust policy, the custom trusted
certificates of the store and `--trusted-cert`, the device identity), keeps the device's stable
instance id (a UUID in the data directory, created on first use, RFC 5626 §4.1), and publishes
the user agent's events through structlog (`registered`, `registration-failed`, `unregistered`,
`lock-changed`, `call-incoming`, `call-answered`, `call-ended`, `certificate-expiring`,
`certificates-reloaded`, `provisioned`, ...), keeping the last ones in
`events` for status and tests. `--trace` logs every SIP message (credentials redacted).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import trio

from sipua.errors import ConfigError, SipuaError
from sipua.media.session import PortRange
from sipua.settings.model import AccountSettings, Settings
from sipua.sip import Request, Response
from sipua.sip.digest import redact_credentials
from sipua.sip.keepalive import PONG_TIMEOUT_SECONDS
from sipua.sip.uri import host_port
from sipua.transport.client import open_tls
from sipua.transport.connection import SipConnection
from sipua.transport.listener import ServerAddresses, serve_tls
from sipua.ua.account import Account, FlowTarget, Locator
from sipua.ua.calls import AnswerPolicy, CallHandler, CallMedia
from sipua.ua.lock import ConnectionDown, LockInput, LockTracker, TlsEstablished, TlsRefused

if TYPE_CHECKING:
    from sipua.tls.connection.context import TlsServerConfig
    from sipua.tls.setup import TlsSetup
    from sipua.tls.trust.pins import KeyPolicy

INSTANCE_ID_FILE: Final = "instance-id"
MAX_KEPT_EVENTS: Final = 1000
#: Events logged at warning level (the rest are info).
WARNING_EVENTS: Final = frozenset(
    {
        "registration-failed",
        "unregister-failed",
        "certificate-expiring",
        "certificates-reload-failed",
        "provisioning-failed",
    }
)

Publish = Callable[..., None]


def instance_id(data_dir: Path, configured: str | None = None) -> str:
    """The device's stable ``+sip.instance`` UUID (RFC 5626 §4.1), created on first use.

    Args:
        data_dir: the state directory holding ``instance-id``.
        configured: an id from the settings (``urn:uuid:...`` or a bare UUID) that wins.

    Raises:
        ConfigError: the configured id or the stored file is not a UUID.
    """
    from sipua.storage import atomic_write, ensure_private_dir, read_bounded

    if configured:
        text = configured.removeprefix("urn:uuid:")
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ConfigError(
                f"instance_id {configured!r} is not a urn:uuid: URN; remove it to use the "
                "device's own"
            ) from None
    path = data_dir / INSTANCE_ID_FILE
    if path.exists():
        text = read_bounded(path, limit=100).decode("ascii", "replace").strip()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ConfigError(
                f"{path} does not hold a UUID; delete it and sipua makes a new one"
            ) from None
    ensure_private_dir(data_dir)
    value = str(uuid.uuid4())
    atomic_write(path, (value + "\n").encode())
    return value


def _served_users(account: AccountSettings) -> frozenset[str]:
    """The Request-URI users we answer for: the AOR's (our Contact carries the same user)."""
    from sipua.sip.uri import SipUri, parse_uri

    aor = parse_uri(account.aor)
    return frozenset({aor.user}) if isinstance(aor, SipUri) and aor.user else frozenset()


async def locate_targets(account: AccountSettings) -> list[FlowTarget]:
    """RFC 3263 targets for the account (an outbound proxy skips the lookups)."""
    from sipua.locate import locate

    targets = await locate(account.aor, account.proxy, account.tls_name)
    return [FlowTarget(t.host, t.port, t.tls_name) for t in targets]


class UserAgent:
    """sipua's user agent for one account.

    Args:
        settings: the settings; the first account is used.
        listen: whether to start the inbound listener (default: as the settings say).
        locator: finds the registrar targets (default: RFC 3263 via DNS).
        rng: the random source (default: `random.SystemRandom`).
        backoff_base: RFC 5626 §4.5 back-off base in seconds.
        pong_timeout: seconds a pong may take (RFC 5626 §4.4.1: 10; tests shorten it).
        publish: an extra event sink, `publish(event, **fields)` (tests, status).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        listen: bool | None = None,
        locator: Locator | None = None,
        rng: random.Random | None = None,
        backoff_base: float = 30.0,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
        publish: Publish | None = None,
    ) -> None:
        if not settings.accounts:
            raise ConfigError("no account configured; pass --aor or a config with [[accounts]]")
        if len(settings.accounts) > 1:
            # One account per user agent: refused rather than running the first one silently.
            names = ", ".join(account.name for account in settings.accounts)
            raise ConfigError(
                f"the configuration has {len(settings.accounts)} accounts ({names}); sipua "
                "runs one account per process: choose it with --account NAME (run one process "
                "per account to register them all)"
            )
        self.settings = settings
        self.account_settings = settings.accounts[0]
        self.events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_KEPT_EVENTS)
        self.listen_address: tuple[str, int] | None = None
        self._listen = settings.listen.enabled if listen is None else listen
        self._locator = locator or locate_targets
        self._rng = rng or random.SystemRandom()
        self._backoff_base = backoff_base
        self._pong_timeout = pong_timeout
        self._extra_publish = publish
        self._stack = contextlib.AsyncExitStack()
        self._nursery: trio.Nursery | None = None
        self._account: Account | None = None
        self._calls: CallHandler | None = None
        # The locks of open inbound connections, by peer (as many as the listener admits).
        self._inbound_locks: dict[str, LockTracker] = {}
        self._tls: TlsSetup | None = None
        self._server_config: TlsServerConfig | None = None
        # Fingerprints already warned about as expiring (warned once per run, and again after
        # a reload that still finds them).
        self._warned: set[str] = set()
        # The registrar/proxy's addresses: room at the listener, and the only sources allowed
        # with listen.servers_only. IP literals in the settings count from the start.
        self.servers = ServerAddresses()
        proxy = self.account_settings.proxy_address()
        with contextlib.suppress(ValueError):
            self.servers.add(proxy[0] if proxy is not None else self.account_settings.domain)
        from sipua.logs import get_logger

        self._log = get_logger(account=self.account_settings.name)

    # -- public ---------------------------------------------------------------------------------

    @property
    def account(self) -> Account:
        """The account (available inside ``async with``)."""
        if self._account is None:
            raise RuntimeError("use the UserAgent inside 'async with'")
        return self._account

    @property
    def rng(self) -> random.Random:
        """The user agent's random source (tags, branches, digest cnonces)."""
        return self._rng

    @property
    def nursery(self) -> trio.Nursery:
        """The user agent's nursery (available inside ``async with``)."""
        if self._nursery is None:
            raise RuntimeError("use the UserAgent inside 'async with'")
        return self._nursery

    @property
    def calls(self) -> CallHandler:
        """The inbound call handler."""
        if self._calls is None:
            raise RuntimeError("use the UserAgent inside 'async with'")
        return self._calls

    def publish(self, event: str, **fields: Any) -> None:
        """Publishes one user-agent event: structured log, kept list, extra sink."""
        clean = {key: value for key, value in fields.items() if value is not None}
        self.events.append((event, clean))
        if event in WARNING_EVENTS:
            self._log.warning(event, **clean)
        else:
            self._log.info(event, **clean)
        if self._extra_publish is not None:
            self._extra_publish(event, **clean)

    async def __aenter__(self) -> Self:
        if self.settings.certificates.provisioning:
            # Before the TLS setup is built, so it starts with what the URLs serve.
            await self.provision()
        self._prepare_tls()
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._nursery = nursery
        try:  # whatever fails from here on, the nursery opened above is closed
            nursery.start_soon(self._watch_certificates)
            if (
                self.settings.certificates.provisioning
                and self.settings.certificates.provision_interval
            ):
                nursery.start_soon(self._provision_periodically)
            account_settings = self.account_settings
            self._calls = CallHandler(
                policy=AnswerPolicy(
                    action=account_settings.answer, delay=account_settings.auto_answer_delay
                ),
                media=CallMedia(
                    srtp=account_settings.srtp,
                    ports=PortRange(*self.settings.media.port_range),
                    symmetric=account_settings.symmetric_rtp,
                ),
                publish=self.publish,
                contact_for=self._contact_for,
                nursery=nursery,
                rng=random.Random(self._rng.getrandbits(64)),
                users=_served_users(account_settings),
                is_server=self.servers,
            )
            if self._listen:
                self.listen_address = await nursery.start(self._serve)
                # The port is often one the system picked: say where calls can arrive.
                self.publish("listening", address=host_port(*self.listen_address))
            self._account = Account(
                account_settings,
                instance_id=instance_id(self.settings.data_dir, account_settings.instance_id),
                locator=self._locate,
                connector=self._connect,
                publish=self.publish,
                nursery=nursery,
                pump=self._calls,
                rng=random.Random(self._rng.getrandbits(64)),
                listen=self.listen_address,
                backoff_base=self._backoff_base,
                pong_timeout=self._pong_timeout,
            )
        except BaseException:
            nursery.cancel_scope.cancel()
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        with trio.CancelScope(shield=True), trio.move_on_after(5.0):
            if self._calls is not None:
                with contextlib.suppress(SipuaError):
                    await self._calls.hangup_all()
            if self._account is not None:
                await self._account.close()
        self.nursery.cancel_scope.cancel()
        return await self._stack.__aexit__(exc_type, exc, tb)

    # -- TLS ------------------------------------------------------------------------------------

    def _prepare_tls(self) -> None:
        from sipua.tls.setup import TlsSetup

        setup = TlsSetup(self.settings)
        if self._listen:
            self._server_config = setup.server()
        self._tls = setup
        self._warn_expiring(setup, again=True)
        # At start what cannot be read is skipped (a reload refuses it instead), but said.
        self._report_store_problems(setup)

    def _report_store_problems(self, setup: TlsSetup) -> None:
        for problem in setup.store.problems:
            self._log.warning("certificate-store-problem", problem=problem)

    def _warn_expiring(self, setup: TlsSetup, *, again: bool) -> None:
        """Publishes `certificate-expiring` for each certificate in use that expires soon.

        Args:
            again: warn about certificates already warned about too (start, reload).
        """
        within = self.settings.certificates.expiry_warning_days
        for item in setup.expiring(within):
            if again or item.fingerprint not in self._warned:
                self.publish("certificate-expiring", **item.fields())
            self._warned.add(item.fingerprint)

    def reload_certificates(self, trigger: str) -> bool:
        """Re-reads the certificate store: new connections use the new trust, the listener
        presents the new device certificate on new handshakes; established flows stay up.

        A unique or generic device certificate due for renewal is re-issued from the device CA
        on the way (`TlsSetup.identity`). Publishes `certificates-reloaded` saying what
        changed (always for a user's request, else only on a change), or
        `certificates-reload-failed` keeping the old setup when the new one is unusable: a
        custom device certificate that no longer loads, or a `trusted.pem` that does not load
        whole (an unreadable entry, a file others can write), which would otherwise take away
        the trust in use without a word.

        Args:
            trigger: why: "sighup", "check" (the periodic check), "provisioning".

        Returns:
            Whether anything changed.
        """
        from sipua.tls.connection.context import server_context
        from sipua.tls.setup import TlsSetup
        from sipua.tls.trust.verify import clear_verdict_cache

        old = self._tls_setup
        try:
            # Strict: a trusted.pem that does not load whole fails the reload, so a damaged
            # file cannot silently take away the trust in use.
            new = TlsSetup(self.settings, strict=True)
            server = new.server() if self._listen else None
            if server is not None:
                server_context(server)  # a certificate that does not fit its key fails here
            changes = new.changes_since(old)
        except SipuaError as exc:
            self.publish(
                "certificates-reload-failed",
                trigger=trigger,
                reason=str(exc),
                kept="the certificates in use before",
            )
            return False
        self._report_store_problems(new)
        if changes.changed:
            self._tls = new
            self._server_config = server
            # Remembered verdicts were made with the old trusted set.
            clear_verdict_cache()
        if changes.changed or trigger == "sighup":
            self.publish(
                "certificates-reloaded",
                trigger=trigger,
                changed=changes.changed,
                **changes.fields(),
            )
        self._warn_expiring(self._tls_setup, again=trigger == "sighup")
        return changes.changed

    async def _watch_certificates(self) -> None:
        """Re-checks the store every `certificates.check_interval` seconds: renews a device
        certificate due for renewal, picks up changes, warns about expiring certificates."""
        interval = self.settings.certificates.check_interval
        while True:
            await trio.sleep(interval)
            self.reload_certificates("check")

    async def provision(self) -> bool:
        """Runs the provisioning URLs once, publishing one `provisioned` or
        `provisioning-failed` event per URL (a failure keeps the old store).

        Returns:
            Whether a store changed.
        """
        from sipua.provision.run import provision

        outcomes = await provision(self.settings)
        for outcome in outcomes:
            self.publish("provisioned" if outcome.ok else "provisioning-failed", **outcome.fields())
        return any(outcome.changed for outcome in outcomes)

    async def _provision_periodically(self) -> None:
        """Every `certificates.provision_interval` seconds: provision, then reload what changed
        (new connections and handshakes use it; established ones keep theirs)."""
        interval = self.settings.certificates.provision_interval
        assert interval is not None
        while True:
            await trio.sleep(interval)
            if await self.provision():
                self.reload_certificates("provisioning")

    def _current_server_config(self) -> TlsServerConfig:
        if self._server_config is None:
            raise RuntimeError("the listener has no configuration")
        return self._server_config

    def _key_policy(self) -> KeyPolicy:
        from sipua.tls.trust.pins import KeyPolicy

        account = self.account_settings
        return KeyPolicy(
            pins=account.pins,
            first_use=account.trust_on_first_use,
            records=self._tls_setup.store.known if account.trust_on_first_use else None,
        )

    @property
    def _tls_setup(self) -> TlsSetup:
        if self._tls is None:
            raise RuntimeError("use the UserAgent inside 'async with'")
        return self._tls

    async def _locate(self, account: AccountSettings) -> list[FlowTarget]:
        targets = await self._locator(account)
        for target in targets:
            self.servers.add(target.host)
        return targets

    async def _connect(
        self, target: FlowTarget, account: Account
    ) -> tuple[SipConnection, TlsEstablished]:
        from sipua.tls.trust.pins import judge
        from sipua.tls.trust.policy import VerifyResult

        tls = self.settings.tls
        keys = self._key_policy()
        config = self._tls_setup.client(target.tls_name, first_use=keys.first_use)
        opened = await open_tls(
            target.host, target.port, config, handshake_timeout=tls.handshake_timeout
        )
        tcp = opened.stream.transport_stream
        if isinstance(tcp, trio.SocketStream):
            with contextlib.suppress(OSError):
                self.servers.add(str(tcp.socket.getpeername()[0]))
        verification = opened.handshake.verification
        verified = opened.handshake.verified
        code = verification.code if verification is not None else "no-certificate"
        reason = "" if verified or verification is None else verification.reason
        # The verifier is `verify_chain`: its result has the validated path and every problem.
        result = verification if isinstance(verification, VerifyResult) else None
        try:
            # After the chain and the name, before any SIP byte: the account's key continuity.
            basis = judge(
                opened.handshake.peer_chain,
                result.path_certificates if result is not None else (),
                name=target.tls_name or target.host,
                verified=verified,
                code=code,
                reason=reason,
                policy=keys,
                trust=self._tls_setup.policy,
                problems=[(p.code, p.reason) for p in result.problems] if result else [],
            )
        except BaseException:
            await trio.aclose_forcefully(opened.stream)
            raise
        established = TlsEstablished(verified=verified, code=code, reason=reason, basis=basis)
        self.publish(
            "tls-established",
            peer=opened.peer,
            tls_name=target.tls_name,
            version=opened.handshake.version,
            cipher=opened.handshake.cipher,
            verified=verified,
            basis=basis,
            # The server may still refuse our certificate: the lock waits for its first answer.
            client_certificate_requested=opened.handshake.certificate_requested,
        )
        connection = SipConnection(
            opened.stream,
            peer=opened.peer,
            local=opened.local,
            tls_name=target.tls_name,
            handler=account.on_message,
            on_pong=account.on_pong,
            on_unreadable_response=account.on_unreadable_response,
            trace=self._trace if self.settings.trace else None,
            certificate_requested=opened.handshake.certificate_requested,
        )
        return connection, established

    async def _serve(self, *, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        listen = self.settings.listen
        await serve_tls(
            listen.host,
            listen.port,
            self._current_server_config,
            self._on_inbound,
            handshake_timeout=listen.handshake_timeout,
            idle_timeout=listen.idle_timeout,
            max_connections=listen.max_connections,
            max_per_address=listen.max_connections_per_address,
            is_server=self.servers,
            servers_only=listen.servers_only,
            trace=self._trace if self.settings.trace else None,
            on_handshake=self._on_inbound_handshake,
            on_closed=self._on_inbound_closed,
            task_status=task_status,
        )

    def _on_inbound_handshake(self, peer: str, outcome: object) -> None:
        # Inbound connections have a lock of their own (scope "connection"): locked when the
        # caller presented a verified client certificate, locked-unverified when it presented
        # none or an unverified one (the listener's policy allowed it), unlocked on failure.
        from sipua.errors import PeerNotTrusted
        from sipua.tls.connection.events import HandshakeCompleted

        tracker = LockTracker()
        event: LockInput
        if isinstance(outcome, HandshakeCompleted):
            verification = outcome.verification
            event = TlsEstablished(
                verified=outcome.verified,
                code=verification.code if verification is not None else "no-client-certificate",
                reason="" if verification is None or outcome.verified else verification.reason,
            )
        elif isinstance(outcome, PeerNotTrusted):
            event = TlsRefused(kind="verification-failed", code=outcome.code, reason=str(outcome))
        else:
            event = TlsRefused(kind="handshake-failed", code="handshake", reason=str(outcome))
        if isinstance(outcome, HandshakeCompleted):
            self._inbound_locks[peer] = tracker  # until the connection ends
        self._publish_inbound_lock(peer, tracker, event)

    def _on_inbound_closed(self, peer: str, reason: str) -> None:
        """An inbound connection ended: its lock is lost, with the reason."""
        tracker = self._inbound_locks.pop(peer, None)
        if tracker is not None:
            self._publish_inbound_lock(peer, tracker, ConnectionDown(reason=reason, clean=True))

    def _publish_inbound_lock(self, peer: str, tracker: LockTracker, event: LockInput) -> None:
        change = tracker.on_event(event)
        if change is not None:
            self.publish(
                "lock-changed",
                scope="connection",
                peer=peer,
                state=change.state.value,
                reason=change.reason,
                previous=change.previous.value,
            )

    async def _on_inbound(self, connection: SipConnection, message: Request | Response) -> None:
        # Requests, and the answers to what we sent on inbound connections (our BYEs): the
        # endpoint matches both to their transactions and drops what matches none (§18.1.2).
        if self._calls is not None:
            await self._calls.handle_message(connection, message)

    def _contact_for(self, connection: SipConnection) -> str:
        if self._account is not None:
            return self._account.contact_uri(connection)
        return f"sips:{connection.local}"

    def _trace(self, direction: str, connection: SipConnection, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        lines = [
            redact_credentials(line) if "authorization:" in line.lower() else line
            for line in text.split("\r\n")
        ]
        self._log.info(
            "sip-trace", direction=direction, peer=connection.peer, message="\n".join(lines)
        )
