"""The load engine behind `sipua load`: many accounts registering from one process.

Theory of operation
-------------------
A run registers `count` accounts (cycling through the list when `count` is larger) with at most
`concurrency` registrations in flight, started no faster than `rate` per second when a rate is
given. Every registration is the real thing: TCP, a full TLS handshake with sipua's trust
verdict (the same `TlsClientConfig` `sipua register` builds), the sans-IO `Registration` FSM of
`sipua.sip.registration` with its digest responder, run by a `RegisterClient` (each REGISTER in
a client transaction of the core's transaction layer, which matches the responses and times
them out with Timer F), the `StreamFramer`, and the parser.

The hot path is lean on purpose, because this is what the benchmarks measure:

- One shared client `SSL.Context` (the cached one from `sipua.tls.connection.context`, with
  `MODE_RELEASE_BUFFERS`); each connection is a `sipua.load.raw_tls.RawTlsFlow`, the engine's
  one named way past the transport layer: a TLS engine on a non-blocking stdlib socket with
  trio's readiness waits, so a send or receive the kernel can do at once costs one system call
  and no trip through the scheduler. No stream wrapper, no per-connection task besides the
  account's own, no locks on a connection only one task uses.
- The client's TLS 1.3 Finished is sent in the same segment as the first REGISTER (one write,
  after the trust verdict: no SIP byte is produced before the peer is verified).
- The trust verdict comes from `sipua.tls.trust.verify.client_verifier`, which computes it once per
  distinct peer chain and reuses it for a bounded time (see that module), as `sipua register`
  does.
- No logging per message or per registration; the run keeps counters (`LoadStats`) and the
  command prints a progress line from them.
- Garbage is collected less often while a run lasts (`RUN_GC_THRESHOLD`, and the objects alive
  at its start frozen out of full collections); the collector's settings are restored after.

With `--reuse-connection` all registrations share one TLS connection and have no task of their
own: the reader hands each response to its registration's client (routed by Call-ID; its
transaction layer matches it by branch) and acts on what
the registration outputs, a sweeper gives the registrations in flight their timers (every
0.25 s), and a writer coalesces whatever requests are queued into one TLS write and one send.

The dispatcher takes a free concurrency slot without a trip through the scheduler (waiting one
round per start kept fewer registrations in flight than asked).

With `hold` > 0, each connection stays open after its registration: the account's task keeps
reading (answering the registrar's CRLF pings, taking TLS 1.3 tickets) and refreshes the
binding at the FSM's deadline, until the hold ends for everyone at once (`hold` seconds after
the last registration finished). That measures how many registered UAs one process holds and
their memory. Holding thousands of connections needs as many file descriptors:
`raise_nofile_limit` lifts the soft limit to the hard one.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio

from sipua.errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    PeerNotTrusted,
    SipuaError,
    TlsAlertReceived,
)
from sipua.load.accounts import LoadAccount
from sipua.load.raw_tls import RawTlsFlow
from sipua.load.stats import LoadReport, LoadStats
from sipua.sip import (
    NEED_DATA,
    KeepalivePing,
    MessageFramed,
    Response,
    SipUri,
    StreamFramer,
    parse_message,
    serialize,
)
from sipua.sip.errors import ProtocolError
from sipua.sip.registration import (
    ContactAddress,
    DigestResponder,
    RegisterClient,
    Registered,
    Registration,
    RegistrationFailed,
    RegistrationOutput,
    SendRequest,
)
from sipua.sip.timers import DEFAULT_T2, TimerConfig
from sipua.tls.connection.context import TlsClientConfig, client_context

if TYPE_CHECKING:
    from OpenSSL import SSL

    from sipua.settings.model import Settings
    from sipua.tls.connection.events import Verifier

#: Upper bound on concurrency (each in-flight registration is a task and maybe a socket).
MAX_CONCURRENCY: Final = 100_000
#: Bytes of plaintext one coalesced write of the shared connection takes at most.
MAX_COALESCED_BYTES: Final = 15 * 1024

#: Allocations between young-generation garbage collections during a run (CPython's default
#: is 700). A registration allocates a few hundred objects and leaves few cycles: with the
#: default, a one-connection run spent ~12 µs per registration in ~700 collections per 20,000
#: registrations; with this, ~1.5 µs in ~11. Bounded, so memory stays bounded.
RUN_GC_THRESHOLD: Final = 10_000

ProgressSink = Callable[[LoadStats, float], None]


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect less often during a run: the objects alive at its start (modules, contexts,
    accounts) are frozen out of later full collections and the young generation is larger;
    both are restored afterwards."""
    before = gc.get_threshold()
    gc.collect()  # garbage frozen now would stay until the end
    gc.freeze()
    gc.set_threshold(RUN_GC_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """What a load run does.

    Attributes:
        accounts: The accounts; registration i uses ``accounts[i % len(accounts)]``.
        host: The registrar's (or outbound proxy's) address, an IP literal or a name.
        port: Its TLS port.
        tls: The client TLS settings; `server_name` is the name the registrar must prove.
        count: Registrations to run.
        concurrency: Registrations in flight at once at most.
        rate: Registrations started per second at most (None: as fast as concurrency allows).
        hold: Seconds to keep every registration (connection open, refreshing) after the last
            one finished; 0 closes each connection as soon as it registered.
        reuse_connection: Send every registration over one TLS connection.
        expires: The registration lifetime asked for, in seconds.
        handshake_timeout: Seconds connect plus handshake may take.
        response_timeout: Seconds a REGISTER may wait for its final response.
    """

    accounts: Sequence[LoadAccount]
    host: str
    port: int
    tls: TlsClientConfig
    count: int
    concurrency: int = 50
    rate: float | None = None
    hold: float = 0.0
    reuse_connection: bool = False
    expires: int = 600
    handshake_timeout: float = 10.0
    response_timeout: float = 32.0

    def __post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("a load plan needs at least one account")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be a positive number of registrations per second")
        if self.hold < 0 or not math.isfinite(self.hold):
            raise ValueError("hold must be zero or a positive number of seconds")


def raise_nofile_limit() -> int:
    """Lifts the soft open-file limit to the hard limit; returns the limit now in force.

    Each held registration is a socket; the usual soft limit (1024) is far below what a load
    run holds.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return int(soft)


def _cpu_times() -> tuple[float, float]:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def rss_kib() -> int:
    """This process's resident memory in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


class _Failure(Exception):
    """One registration failed; `reason` is the short code counted in the report."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Flow:
    """One connection to the registrar as the engine reads it: the raw TLS flow and a framer."""

    __slots__ = ("framer", "local", "raw")

    def __init__(self, raw: RawTlsFlow) -> None:
        self.raw = raw
        self.framer = StreamFramer()
        self.local = raw.local

    @classmethod
    async def open(cls, plan: LoadPlan, context: SSL.Context, verifier: Verifier) -> _Flow:
        """Connects, runs the handshake and the trust verdict (see `RawTlsFlow.open`)."""
        raw = await RawTlsFlow.open(
            plan.host,
            plan.port,
            server_name=plan.tls.server_name,
            context=context,
            verifier=verifier,
            learn_key_share=plan.tls.protocol.groups is None,
        )
        return cls(raw)

    async def send(self, plaintext: bytes) -> None:
        """Encrypts and sends."""
        await self.raw.send(plaintext)

    async def next_response(self) -> Response:
        """The next response on the connection (pings are answered, requests ignored)."""
        framer = self.framer
        while True:
            event = framer.next_event()
            if isinstance(event, MessageFramed):
                message = parse_message(event.data)
                if isinstance(message, Response):
                    return message
                continue  # a request to a load UA: nobody calls it, so it is not answered
            if isinstance(event, KeepalivePing):
                await self.raw.send(b"\r\n")
                continue
            if event is not NEED_DATA:
                continue  # a pong
            data = await self.raw.receive()
            if data:
                framer.receive_data(data)

    def close(self) -> None:
        """Sends close_notify without waiting and closes the socket."""
        self.raw.close()


class _Pending:
    """One registration in flight on the shared connection."""

    __slots__ = ("limiter", "registration", "started")

    def __init__(self, registration: RegisterClient, started: float, limiter: trio.Semaphore):
        self.registration = registration
        self.started = started
        self.limiter = limiter


class _SharedFlow:
    """The one connection of `--reuse-connection`, driven without a task per registration.

    The reader hands each response straight to its registration (routed by Call-ID) and acts
    on what the registration outputs; a sweeper gives the registrations their timers; a writer
    coalesces queued requests into one TLS write. A registration costs no task, cancel scope or
    event of its own.
    """

    def __init__(self, flow: _Flow, run: LoadRun) -> None:
        self.flow = flow
        self.run = run
        self.pending: dict[str, _Pending] = {}
        self._outbox: deque[bytes] = deque()
        self._ready = trio.Event()
        self.broken: str | None = None

    def start(self, registration: RegisterClient, limiter: trio.Semaphore) -> None:
        """Sends the first REGISTER of `registration` (the dispatcher holds a `limiter` slot)."""
        now = trio.current_time()
        outputs = registration.register(now)
        # The Call-ID is the binding's routing key on the shared connection (one per
        # registration for its whole life, RFC 3261 §10.2.4).
        call_id = registration.call_id
        entry = _Pending(registration, now, limiter)
        self.pending[call_id] = entry
        self._act(call_id, entry, outputs)

    def _act(self, call_id: str, entry: _Pending, outputs: list[RegistrationOutput]) -> None:
        run = self.run
        for output in outputs:
            if isinstance(output, SendRequest):
                if self.broken is not None:
                    self._end(call_id, entry, "connection-lost", self.broken)
                    return
                self._outbox.append(serialize(output.request))
                self._ready.set()
            elif isinstance(output, Registered):
                run.stats.success(trio.current_time() - entry.started)
                self._end(call_id, entry)
                return
            elif isinstance(output, RegistrationFailed):
                self._end(call_id, entry, _failure_reason(output), output.reason)
                return

    def _end(self, call_id: str, entry: _Pending, reason: str = "", detail: str = "") -> None:
        if self.pending.pop(call_id, None) is None:
            return
        if reason:
            self.run._fail(reason, detail)
        self.run._finished(entry.limiter)

    async def writer(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready = trio.Event()
                while self._outbox:
                    # Below one TLS record (16 KiB): Kamailio 5.6.3 garbled pipelined requests
                    # that straddled records when the writes were larger (seen as "bad
                    # header field" in its log), so each flush is one record.
                    batch: list[bytes] = []
                    size = 0
                    while self._outbox and size + len(self._outbox[0]) <= MAX_COALESCED_BYTES:
                        item = self._outbox.popleft()
                        batch.append(item)
                        size += len(item)
                    if not batch:  # one request larger than a record: send it alone
                        batch.append(self._outbox.popleft())
                    await self.flow.send(b"".join(batch))
        except (ConnectionLost, OSError) as exc:
            self._break(f"the shared connection broke while sending: {exc}")

    def _break(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
        self._outbox.clear()
        for call_id, entry in list(self.pending.items()):
            self._end(call_id, entry, "connection-lost", reason)

    async def reader(self) -> None:
        try:
            while True:
                response = await self.flow.next_response()
                call_id = response.call_id
                entry = self.pending.get(call_id)
                if entry is not None:
                    outputs = entry.registration.receive_response(response, trio.current_time())
                    if outputs:
                        self._act(call_id, entry, outputs)
        except (ConnectionLost, ProtocolError, OSError, TlsAlertReceived) as exc:
            self._break(f"the shared connection broke: {exc}")

    async def sweeper(self, period: float = 0.25) -> None:
        """Gives every registration in flight its timer (Timer F), `period` late at most."""
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for call_id, entry in list(self.pending.items()):
                deadline = entry.registration.next_deadline()
                if deadline is not None and deadline <= now:
                    self._act(call_id, entry, entry.registration.handle_timer(now))


class LoadRun:
    """Runs one `LoadPlan`.

    Args:
        plan: What to do.
        rng: Ids, tags and cnonces (default: a `random.Random` seeded from the OS).
        progress: Called every `progress_interval` seconds with the totals and the rate over
            the interval (the command prints the progress line from it).
        progress_interval: Seconds between progress calls.
    """

    def __init__(
        self,
        plan: LoadPlan,
        *,
        rng: random.Random | None = None,
        progress: ProgressSink | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        from sipua.tls.trust.verify import client_verifier

        self.plan = plan
        self.stats = LoadStats()
        self.examples: dict[str, str] = {}  # one error message per failure reason
        self.held = 0
        self._rng = rng or random.Random(int.from_bytes(os.urandom(16), "big"))
        self._progress = progress
        self._progress_interval = progress_interval
        self._verifier = client_verifier(plan.tls)
        # Built (or taken from the cache) once: computing the cache key per connection costs
        # a certificate fingerprint per trusted certificate.
        # No CertificateRequest watch: a load run never reports it, and the info callback is
        # ~23 calls into Python per handshake.
        self._context = client_context(
            plan.tls, watch_certificate_request=False, record_verdicts=False
        )
        self._hold_over = trio.Event()
        self._attempts_done = trio.Event()
        self._outstanding = 0
        self._dispatched = False  # every registration has been started
        self._aors = {a.aor: SipUri.parse(a.aor) for a in plan.accounts[: plan.count]}
        t1 = plan.response_timeout / 64  # Timer F = 64*T1 (RFC 3261 §17.1.2.2)
        timers = TimerConfig(t1=t1, t2=max(DEFAULT_T2, t1))
        self._timer_f = timers.for_transport(reliable=True).f

    async def run(self) -> LoadReport:
        """Runs the plan and returns the report.

        Raises:
            ConfigError: An AOR of the plan is not a usable `sips:` URI.
        """
        with _fewer_collections():
            return await self._run()

    async def _run(self) -> LoadReport:
        plan = self.plan
        nofile = raise_nofile_limit()
        gc.collect()
        rss_before = rss_kib()
        shared: _SharedFlow | None = None
        if plan.reuse_connection:
            # Opened outside the nursery, so that a refused connection is a plain SipuaError.
            shared = _SharedFlow(await self._open_shared(), self)
        async with trio.open_nursery() as nursery:
            if shared is not None:
                nursery.start_soon(shared.reader)
                nursery.start_soon(shared.writer)
                nursery.start_soon(shared.sweeper)
            started = trio.current_time()
            cpu_started = _cpu_times()
            progress_scope = trio.CancelScope()
            if self._progress is not None:
                nursery.start_soon(self._report_progress, started, progress_scope)
            attempts_scope = trio.CancelScope()
            async with trio.open_nursery() as accounts:
                with attempts_scope:
                    await self._dispatch(accounts, shared)
                    self._dispatched = True
                    if self._outstanding:
                        await self._attempts_done.wait()
                elapsed = trio.current_time() - started
                cpu_user, cpu_sys = (b - a for a, b in zip(cpu_started, _cpu_times(), strict=True))
                progress_scope.cancel()
                if self._progress is not None:
                    self._progress(self.stats, 0.0)
                if plan.hold > 0:
                    await trio.sleep(plan.hold)
                    gc.collect()
                rss_end = rss_kib()
                held = self.held if plan.hold > 0 else None
                self._hold_over.set()
                # Held connections wait in a read until their refresh; end them now (each
                # sends its close_notify without waiting, so cancellation cannot skip it).
                accounts.cancel_scope.cancel()
            nursery.cancel_scope.cancel()  # the shared connection's reader, writer and sweeper
        if shared is not None:
            shared.flow.close()
        stats = self.stats
        return LoadReport(
            mode="reuse-connection" if plan.reuse_connection else "connection-per-account",
            attempted=plan.count,
            succeeded=stats.succeeded,
            failures=dict(stats.failures),
            elapsed_s=elapsed,
            cpu_s=cpu_user + cpu_sys,
            cpu_user_s=cpu_user,
            cpu_sys_s=cpu_sys,
            latency_ms=stats.latency_ms(),
            concurrency=plan.concurrency,
            rate=plan.rate,
            held=held,
            hold_s=plan.hold,
            refreshes=stats.refreshes,
            rss_kib=rss_end,
            rss_before_kib=rss_before,
            nofile_limit=nofile,
        )

    # -- scheduling ---------------------------------------------------------------------------

    async def _dispatch(self, nursery: trio.Nursery, shared: _SharedFlow | None) -> None:
        plan = self.plan
        limiter = trio.Semaphore(plan.concurrency)
        interval = 1.0 / plan.rate if plan.rate is not None else 0.0
        next_start = trio.current_time()
        accounts = plan.accounts
        for index in range(plan.count):
            # A free slot is taken without a trip through the scheduler: waiting one round per
            # start capped the starts at one per round, so fewer registrations were in flight
            # than the concurrency asked for (measured: ~11 of 50), and each round cost an
            # epoll_wait.
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                await limiter.acquire()
            if interval:
                next_start += interval
                now = trio.current_time()
                if next_start > now:
                    await trio.sleep_until(next_start)
                else:
                    next_start = now  # behind schedule: do not burst to catch up
            self._outstanding += 1
            account = accounts[index % len(accounts)]
            if shared is None:
                nursery.start_soon(self._own_connection, account, limiter)
            else:
                try:
                    shared.start(self._registration(account, shared.flow.local), limiter)
                except (ConnectionLost, ProtocolError) as exc:
                    self._fail("connection-lost", str(exc))
                    self._finished(limiter)

    def _finished(self, limiter: trio.Semaphore) -> None:
        limiter.release()
        self._outstanding -= 1
        if self._outstanding == 0 and self._dispatched:
            self._attempts_done.set()

    async def _report_progress(self, started: float, scope: trio.CancelScope) -> None:
        assert self._progress is not None
        with scope:
            last_done, last_time = 0, started
            while True:
                await trio.sleep(self._progress_interval)
                now = trio.current_time()
                done = self.stats.succeeded + self.stats.failed
                rate = (done - last_done) / (now - last_time) if now > last_time else 0.0
                last_done, last_time = done, now
                self._progress(self.stats, rate)

    # -- one registration ---------------------------------------------------------------------

    def _registration(self, account: LoadAccount, local: str) -> RegisterClient:
        rng = self._rng
        aor = self._aors.get(account.aor) or SipUri.parse(account.aor)
        user = aor.user
        registration = Registration(
            aor=aor,
            contact=ContactAddress(
                uri=SipUri.parse(f"sips:{user}@{local}" if user else f"sips:{local}"),
                sent_by=local,
            ),
            instance_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            rng=rng,
            responder=DigestResponder(
                username=account.username, password=account.password, rng=rng
            ),
            expires=self.plan.expires,
        )
        # Every REGISTER in a client transaction (Timer F = 64*T1 is the response timeout).
        return RegisterClient(registration, timer_f=self._timer_f)

    def _fail(self, reason: str, detail: str) -> None:
        self.stats.failure(reason)
        if reason not in self.examples and len(self.examples) < 32:
            self.examples[reason] = detail

    async def _own_connection(self, account: LoadAccount, limiter: trio.Semaphore) -> None:
        flow: _Flow | None = None
        try:
            flow, registration = await self._register_own(account, limiter)
            if flow is not None and registration is not None and self.plan.hold > 0:
                self.held += 1
                try:
                    await self._hold(flow, registration)
                finally:
                    self.held -= 1
        finally:
            if flow is not None:
                flow.close()

    async def _register_own(
        self, account: LoadAccount, limiter: trio.Semaphore
    ) -> tuple[_Flow | None, RegisterClient | None]:
        """One registration on its own connection: (the flow, the registration if it worked)."""
        plan = self.plan
        flow: _Flow | None = None
        started = trio.current_time()
        try:
            with trio.fail_after(plan.handshake_timeout):
                flow = await _Flow.open(plan, self._context, self._verifier)
            registration = self._registration(account, flow.local)
            outputs = registration.register(trio.current_time())
            if await self._exchange(flow, registration, outputs, started):
                return flow, registration
        except _Failure as exc:
            self._fail(exc.reason, str(exc))
        except trio.TooSlowError:
            self._fail(
                "timeout", f"connect and TLS handshake took over {plan.handshake_timeout:g} s"
            )
        except PeerNotTrusted as exc:
            self._fail("untrusted", str(exc))
        except ConnectFailed as exc:
            self._fail("connect", str(exc))
        except HandshakeFailed as exc:
            self._fail("tls-handshake", str(exc))
        except ConnectionLost as exc:
            self._fail("connection-lost", str(exc))
        except TlsAlertReceived as exc:
            # TLS 1.3: the server judges a client certificate after our handshake ended.
            self._fail("tls-alert", str(exc))
        except ProtocolError as exc:
            self._fail("bad-response", str(exc))
        except OSError as exc:
            self._fail("connection-lost", str(exc))
        except SipuaError as exc:
            self._fail("error", str(exc))
        finally:
            self._finished(limiter)
        return flow, None

    async def _exchange(
        self,
        flow: _Flow,
        registration: RegisterClient,
        outputs: list[RegistrationOutput],
        started: float,
    ) -> bool:
        """Runs the registration to its outcome on `flow`; True when it registered."""
        while True:
            for output in outputs:
                if isinstance(output, SendRequest):
                    await flow.send(serialize(output.request))
                elif isinstance(output, Registered):
                    self.stats.success(trio.current_time() - started)
                    return True
                elif isinstance(output, RegistrationFailed):
                    raise _Failure(_failure_reason(output), output.reason)
            deadline = registration.next_deadline()
            response: Response | None = None
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                response = await flow.next_response()
            now = trio.current_time()
            if response is None:
                outputs = registration.handle_timer(now)
            else:
                outputs = registration.receive_response(response, now)

    async def _hold(self, flow: _Flow, registration: RegisterClient) -> None:
        """Keeps the binding until the hold ends: read, answer pings, refresh on time."""
        try:
            while not self._hold_over.is_set():
                deadline = registration.next_deadline()
                response: Response | None = None
                with trio.move_on_at(deadline if deadline is not None else math.inf):
                    response = await flow.next_response()
                now = trio.current_time()
                outputs = (
                    registration.handle_timer(now)
                    if response is None
                    else registration.receive_response(response, now)
                )
                for output in outputs:
                    if isinstance(output, SendRequest):
                        await flow.send(serialize(output.request))
                    elif isinstance(output, Registered):
                        self.stats.refreshes += 1
                    elif isinstance(output, RegistrationFailed):
                        self._fail("refresh-" + _failure_reason(output), output.reason)
                        return
        except (ConnectionLost, ProtocolError, OSError, TlsAlertReceived) as exc:
            self._fail("hold-connection-lost", str(exc))

    # -- the shared connection ----------------------------------------------------------------

    async def _open_shared(self) -> _Flow:
        plan = self.plan
        try:
            with trio.fail_after(plan.handshake_timeout):
                return await _Flow.open(plan, self._context, self._verifier)
        except trio.TooSlowError as exc:
            raise ConnectFailed(
                f"connect and TLS handshake to {plan.host}:{plan.port} took over "
                f"{plan.handshake_timeout:g} s"
            ) from exc


def _failure_reason(failed: RegistrationFailed) -> str:
    if failed.auth:
        return "auth"
    if failed.status == 408:
        return "timeout"
    return f"status-{failed.status}"


def client_tls_config(settings: Settings, tls_name: str | None) -> TlsClientConfig:
    """The client TLS configuration `sipua register` would use, for a load run (`TlsSetup`).

    Raises:
        ConfigError, CertificateError: A trusted certificate or the device identity is unusable.
    """
    from sipua.tls.setup import TlsSetup

    return TlsSetup(settings).client(tls_name)
