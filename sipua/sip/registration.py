"""The client side of SIP registration (RFC 3261 §10.2), with RFC 5626 outbound, sans-IO.

Theory of operation: a `Registration` builds REGISTER requests and digests the responses; it
never sends or sleeps. The UA hands it each response to one of its requests and the current
time, executes the `SendRequest` outputs and sleeps until `next_deadline()`, then calls
`handle_timer(now)`.

- One Call-ID for the whole life of the binding and a CSeq that goes up by one for every
  REGISTER (RFC 3261 §10.2.4), a new Via branch per request (§8.1.1.7).
- A `sips:` Request-URI (the AOR's domain, §10.2) and a `sips:` Contact; Via says
  ``SIP/2.0/TLS``; the deprecated ``transport=tls`` parameter is never used (RFC 5630 §3.1.3).
- RFC 5626 §4.2.1: the Contact carries ``+sip.instance`` (a stable per-device URN) and
  ``reg-id``; ``Supported: outbound, path`` says we do outbound.
- 401/407: the `ChallengeResponder` answers the challenge; it alone knows whether a second
  challenge means "stale nonce, retry" or "the credentials were rejected", which ends the
  attempt with `RegistrationFailed`. Challenges per attempt are capped.
- 423 Interval Too Brief: retry once per distinct Min-Expires with that value (§10.2.8).
- 2xx: the granted expiry is the ``expires`` parameter of *our* Contact in the response (matched
  by ``+sip.instance``, else by URI), else the Expires header, else what we asked (§10.2.4).
  The refresh deadline is the midpoint of the granted time, or the expiry minus a margin when
  that is earlier, never earlier than a quarter of the granted time.
- Every REGISTER goes in a client non-INVITE transaction of the owner's `TransactionTable`
  (the endpoint's, or `RegisterClient`'s own): the transaction layer alone matches responses to
  requests (§17.1.3) and times them out (Timer F, §17.1.2.2), which fails the attempt with 408.
- `unregister()` sends the same Contact with ``Expires: 0`` (§10.2.2) and ends in `Unregistered`.

The machine is one table, `TABLE` ((state, input) -> state, each transition with its RFC
section), like the transaction machines of `sipua.sip.transaction`; a response is classified
into an input first (a 401 that can be answered is `CHALLENGED`, one that cannot
`CREDENTIALS_REFUSED`...), the effects of each input live in `_effects`.

Failures are reported, not retried: back-off, reconnection and failover are decided by the
endpoint (`sipua.sip.registrations`; `backoff_delay` computes the RFC 5626 §4.5 wait).
`RegisterClient` runs one registration in a transaction table of its own, for owners without an
endpoint (the load engine).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from sipua.sip import Contact, Headers, Request, Response, SipUri
from sipua.sip.dialog import MAX_FORWARDS
from sipua.sip.digest import (
    AUTHORIZATION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
    ChallengeVerdict,
    DigestSession,
)
from sipua.sip.errors import LocalProtocolError, ProtocolError
from sipua.sip.events import ClientTxKey
from sipua.sip.fields import parse_contact, parse_contacts
from sipua.sip.headers import checked_value, split_list
from sipua.sip.ids import RandomSource, new_branch, new_call_id, new_tag
from sipua.sip.message import new_request
from sipua.sip.methods import ALLOW
from sipua.sip.transactions import DEFAULT_TIMER_F, ReliableClientTable
from sipua.sip.uri import host_port

REFRESH_MARGIN_SECONDS: Final = 32.0
MAX_CHALLENGES_PER_ATTEMPT: Final = 3  # a stale nonce may be retried; loops end here
MAX_INTERVAL_RETRIES: Final = 3  # 423 answers per attempt
_MAX_FORWARDS: Final = str(MAX_FORWARDS)
USER_AGENT: Final = "sipua"


class ChallengeResponder(Protocol):
    """Answers a 401/407 challenge for one account (digest lives behind this).

    The implementation holds the credentials (never in a repr) and remembers which nonces it
    answered, so that it can tell a stale-nonce retry from rejected credentials.
    """

    def authorize(self, challenge: Response, request: Request) -> list[tuple[str, str]]:
        """Returns the headers (name, value) to add to a retry of `request`.

        Raises:
            CredentialsRejected: the registrar challenged again a nonce we already answered
                (without ``stale=true``): the username or password is wrong.
            ProtocolError: the challenge cannot be answered (no supported algorithm...).
        """
        ...

    def accepted(self) -> None:
        """The request sent with credentials succeeded (a 2xx)."""
        ...

    def forget(self) -> None:
        """Drops the remembered challenges: the next request goes without credentials."""
        ...

    def preemptive(self, request: Request) -> list[tuple[str, str]]:
        """Credentials for `request` from the last challenge (empty before any challenge)."""
        ...


class CredentialsRejected(Exception):
    """The registrar rejected our credentials (raised by a `ChallengeResponder`)."""


class PasswordSource(Protocol):
    """Something that hands out the password only when asked (`sipua.settings.Secret`)."""

    def reveal(self) -> str: ...


class DigestResponder:
    """The digest `ChallengeResponder` for one account (RFC 2617, RFC 7616, RFC 8760).

    The password stays inside `password` (a Secret-like object) and is revealed only for the
    computation of one response; it is never stored here, nor shown in a repr.

    Args:
        username: the digest user name.
        password: the password source, or None when no password is configured.
        rng: the cnonce source.
    """

    __slots__ = ("_password", "_session", "username")

    def __init__(
        self, *, username: str, password: PasswordSource | None, rng: RandomSource
    ) -> None:
        self.username = username
        self._password = password
        self._session = DigestSession(username=username, rng=rng)

    def __repr__(self) -> str:
        return f"DigestResponder(username={self.username!r})"

    def authorize(self, challenge: Response, request: Request) -> list[tuple[str, str]]:
        """Answers a 401/407 (see `ChallengeResponder.authorize`)."""
        if self._password is None:
            raise CredentialsRejected(
                f"the registrar asks for a password for {self.username!r} and none is set "
                "(give --password-file or password_file in the config)"
            )
        header = WWW_AUTHENTICATE if challenge.status == 401 else PROXY_AUTHENTICATE
        verdict = self._session.handle_challenges(challenge.headers.get_all(header), header=header)
        if verdict is ChallengeVerdict.REJECTED:
            self._session.reset()
            raise CredentialsRejected(
                f"the registrar rejected the password of user {self.username!r}; check the "
                "username and password"
            )
        credentials = self._session.credentials(
            method=request.method,
            uri=str(request.uri),
            password=self._password.reveal(),
            body=request.body,
        )
        return [(c.header_name, c.header_value()) for c in credentials]

    def accepted(self) -> None:
        """Marks the last answered nonces as accepted (see `DigestSession.mark_accepted`)."""
        self._session.mark_accepted()

    def forget(self) -> None:
        """Forgets every challenge; the registrar will send a fresh nonce."""
        self._session.reset()

    def preemptive(self, request: Request) -> list[tuple[str, str]]:
        """Credentials for the next request from the challenge already answered (nc + 1)."""
        if self._password is None or not self._session.realms:
            return []
        credentials = self._session.credentials(
            method=request.method,
            uri=str(request.uri),
            password=self._password.reveal(),
            body=request.body,
        )
        return [(c.header_name, c.header_value()) for c in credentials]


class RegistrationState(enum.Enum):
    """Where the binding stands."""

    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREGISTERING = "unregistering"
    UNREGISTERED = "unregistered"
    FAILED = "failed"

    __hash__ = object.__hash__  # see RegistrationInput


class RegistrationInput(enum.Enum):
    """Everything that can happen to a registration.

    Responses are classified before the table is consulted (the guards): a 401 whose challenge
    can be answered is `CHALLENGED`, one that cannot is `CREDENTIALS_REFUSED`, and so on.
    """

    REGISTER = "register"
    REFRESH_DUE = "refresh due"
    UNREGISTER = "unregister"
    ACCEPTED = "2xx"
    ACCEPTED_UNUSABLE = "2xx without a usable binding"
    CHALLENGED = "401/407 answered"
    CREDENTIALS_REFUSED = "401/407 that cannot be answered"
    INTERVAL_TOO_BRIEF = "423 with a higher Min-Expires"
    INTERVAL_REFUSED = "423 not retried"
    REFUSED = "other final response"
    TIMED_OUT = "no final response (Timer F)"
    FLOW_LOST = "flow lost"

    # Members are singletons: the identity hash (C) keys `TABLE` as well as Enum's by-name
    # hash (Python), which every transition of the load engine's registrations would pay.
    __hash__ = object.__hash__


_S = RegistrationState
_I = RegistrationInput

#: The registration's one transition table: (state, input) -> next state. Anything not in it
#: is a misuse by sipua's own code and raises `LocalProtocolError`.
TABLE: Final[Mapping[tuple[RegistrationState, RegistrationInput], RegistrationState]] = {
    # RFC 3261 §10.2: a binding is asked for from scratch, after a failure, or after removal.
    (_S.IDLE, _I.REGISTER): _S.REGISTERING,
    (_S.FAILED, _I.REGISTER): _S.REGISTERING,
    (_S.UNREGISTERED, _I.REGISTER): _S.REGISTERING,
    # §10.2.1, §10.2.4: a binding is refreshed before it expires (same Call-ID, CSeq + 1).
    (_S.REGISTERED, _I.REGISTER): _S.REGISTERING,
    (_S.REGISTERED, _I.REFRESH_DUE): _S.REGISTERING,
    # §10.2.4 (§10.3 step 8): the 2xx lists the bindings; ours carries the granted expiry.
    (_S.REGISTERING, _I.ACCEPTED): _S.REGISTERED,
    (_S.REGISTERING, _I.ACCEPTED_UNUSABLE): _S.FAILED,
    # §22.2, §22.3 (RFC 7616, RFC 8760): a 401/407 is answered by a retry with credentials,
    # once per nonce unless stale=true; a second challenge of an answered nonce is a refusal.
    (_S.REGISTERING, _I.CHALLENGED): _S.REGISTERING,
    (_S.REGISTERING, _I.CREDENTIALS_REFUSED): _S.FAILED,
    # §10.2.8: 423 Interval Too Brief: retry with an expiry no lower than Min-Expires.
    (_S.REGISTERING, _I.INTERVAL_TOO_BRIEF): _S.REGISTERING,
    (_S.REGISTERING, _I.INTERVAL_REFUSED): _S.FAILED,
    # §8.1.3.5, §21: any other final response ends the attempt; a 5xx's Retry-After (§20.33)
    # is reported for the back-off (RFC 5626 §4.5).
    (_S.REGISTERING, _I.REFUSED): _S.FAILED,
    # §17.1.2.2 (Timer F) and §8.1.3.1: no final response counts as a 408.
    (_S.REGISTERING, _I.TIMED_OUT): _S.FAILED,
    # §10.2.2: Expires 0 on our Contact removes our binding, whatever stood before.
    (_S.IDLE, _I.UNREGISTER): _S.UNREGISTERING,
    (_S.REGISTERING, _I.UNREGISTER): _S.UNREGISTERING,
    (_S.REGISTERED, _I.UNREGISTER): _S.UNREGISTERING,
    (_S.FAILED, _I.UNREGISTER): _S.UNREGISTERING,
    (_S.UNREGISTERED, _I.UNREGISTER): _S.UNREGISTERING,
    (_S.UNREGISTERING, _I.ACCEPTED): _S.UNREGISTERED,
    (_S.UNREGISTERING, _I.CHALLENGED): _S.UNREGISTERING,  # §22.2, still Expires 0
    (_S.UNREGISTERING, _I.CREDENTIALS_REFUSED): _S.UNREGISTERED,
    (_S.UNREGISTERING, _I.INTERVAL_REFUSED): _S.UNREGISTERED,
    (_S.UNREGISTERING, _I.REFUSED): _S.UNREGISTERED,
    (_S.UNREGISTERING, _I.TIMED_OUT): _S.UNREGISTERED,
    # RFC 5626 §4.4.1, §4.5: a binding is worth its flow; a lost flow leaves nothing in flight
    # and nothing to refresh, and the next flow registers afresh.
    (_S.IDLE, _I.FLOW_LOST): _S.IDLE,
    (_S.REGISTERING, _I.FLOW_LOST): _S.IDLE,
    (_S.REGISTERED, _I.FLOW_LOST): _S.IDLE,
    (_S.UNREGISTERING, _I.FLOW_LOST): _S.IDLE,
    (_S.FAILED, _I.FLOW_LOST): _S.IDLE,
    (_S.UNREGISTERED, _I.FLOW_LOST): _S.UNREGISTERED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """Send this request in a new client non-INVITE transaction on the registration flow."""

    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered:
    """The registrar accepted the binding.

    Attributes:
        expires: the granted expiry in seconds.
        refresh_at: the absolute time at which the binding is refreshed.
        flow_timer: the registrar's Flow-Timer (RFC 5626 §4.4.1), if it sent one.
        refreshed: whether this renewed an existing binding.
    """

    expires: int
    refresh_at: float
    flow_timer: int | None = None
    refreshed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationFailed:
    """A registration attempt ended without a binding.

    Attributes:
        status: the SIP status (408 for a timeout, 401/407/403 for credentials...).
        reason: what happened, for a person.
        auth: whether the failure is about credentials (exit code 4, no point retrying soon).
        retry_after: the registrar's Retry-After in seconds, if any.
        credentials_sent: whether the refused REGISTER carried our digest credentials (a
            challenge was answered): a 403 to it most often means a wrong password or user.
    """

    status: int
    reason: str
    auth: bool = False
    retry_after: int | None = None
    credentials_sent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered:
    """The binding was removed (or the unregister failed; `status` says which)."""

    status: int
    reason: str = ""


RegistrationOutput = SendRequest | Registered | RegistrationFailed | Unregistered


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactAddress:
    """Where the registrar reaches us: our Contact URI and the Via sent-by of this connection.

    Attributes:
        uri: the `sips:` Contact URI (user@host:port of our listener or connection).
        sent_by: Via sent-by, ``host:port`` of the local end of the connection.
    """

    uri: SipUri
    sent_by: str


@dataclass(slots=True, kw_only=True)
class _Verdict:
    """What a final response means, worked out before the table is consulted."""

    event: RegistrationInput
    status: int
    reason: str
    auth: bool = False
    retry_after: int | None = None
    credentials_sent: bool = False
    credentials: list[tuple[str, str]] | None = None
    granted: int = 0
    flow_timer: int | None = None


# The commands' verdicts carry nothing but their input: made once (the load engine's hot path).
_REGISTER: Final = _Verdict(event=_I.REGISTER, status=0, reason="")
_UNREGISTER: Final = _Verdict(event=_I.UNREGISTER, status=0, reason="")
_FLOW_LOST: Final = _Verdict(event=_I.FLOW_LOST, status=0, reason="")
_REFRESH_DUE: Final = _Verdict(event=_I.REFRESH_DUE, status=0, reason="")


class Registration:
    """The REGISTER state machine for one account (one AOR, one Contact, one flow).

    It is a transaction user: every request it asks to send goes in a client non-INVITE
    transaction of its owner, which hands back the final response of the request in flight
    (`receive_response`) or says that none came (`timed_out`, Timer F). It matches nothing and
    times nothing itself but the refresh.

    Args:
        aor: the address of record, a `sips:` URI.
        contact: our Contact URI and Via sent-by.
        instance_id: the stable per-device UUID for ``+sip.instance`` (RFC 5626 §4.1).
        rng: the randomness source for Call-ID, tags and branches.
        responder: answers digest challenges.
        expires: the requested expiry in seconds.
        reg_id: RFC 5626 ``reg-id`` of this flow.

    Raises:
        LocalProtocolError: the AOR is not a `sips:` URI (sipua registers over TLS only).
    """

    def __init__(
        self,
        *,
        aor: SipUri,
        contact: ContactAddress,
        instance_id: str,
        rng: RandomSource,
        responder: ChallengeResponder,
        expires: int = 600,
        reg_id: int = 1,
    ) -> None:
        if aor.scheme != "sips":
            raise LocalProtocolError(
                f"the AOR {aor} is not a sips: URI; sipua registers over TLS only (RFC 5630)"
            )
        self.aor = aor
        self._contact = contact
        self.instance_id = instance_id
        self.reg_id = reg_id
        self.requested_expires = expires
        self.state = RegistrationState.IDLE
        self.granted_expires: int | None = None
        self.refresh_at: float | None = None
        self._rng = rng
        self._responder = responder
        self._call_id = new_call_id(rng)
        self._from_tag = new_tag(rng)
        self._cseq = 0
        self._pending: Request | None = None
        self._key = ClientTxKey(branch="", method="REGISTER")  # of the last REGISTER built
        self._challenges = 0
        self._interval_retries = 0
        self._expires = expires
        self._refreshing = False
        # What every REGISTER of this binding repeats is formatted once (the hot path of
        # `sipua load`); `_build` only formats CSeq, branch, Expires and credentials.
        self._registrar, self._to = _aor_parts(aor)
        self._from = f"{self._to};tag={self._from_tag}"
        self._via_prefix = ""
        self._contact_value = ""
        self._contact_templates()

    @property
    def call_id(self) -> str:
        """The Call-ID of every REGISTER of this binding (§10.2.4)."""
        return self._call_id

    @property
    def pending(self) -> Request | None:
        """The REGISTER waiting for its final response, if any."""
        return self._pending

    @property
    def pending_key(self) -> ClientTxKey | None:
        """The client transaction key of the REGISTER in flight (§17.1.3), without parsing it."""
        return self._key if self._pending is not None else None

    # -- inputs ---------------------------------------------------------------------------------

    def register(self, now: float) -> list[RegistrationOutput]:
        """Starts a registration (or a refresh) now.

        Raises:
            LocalProtocolError: a REGISTER is already in flight.
        """
        return self._fire(_REGISTER, now)

    def unregister(self, now: float) -> list[RegistrationOutput]:
        """Removes our binding (``Expires: 0``); ends in `Unregistered`."""
        return self._fire(_UNREGISTER, now)

    def set_contact(self, contact: ContactAddress) -> None:
        """Changes our Contact and sent-by (after a reconnect the local port is new)."""
        self.contact = contact

    @property
    def contact(self) -> ContactAddress:
        """Our Contact URI and Via sent-by (assigning it re-formats the templates)."""
        return self._contact

    @contact.setter
    def contact(self, contact: ContactAddress) -> None:
        self._contact = contact
        self._contact_templates()

    def _contact_templates(self) -> None:
        self._via_prefix = f"SIP/2.0/TLS {self.contact.sent_by};branch="
        self._contact_value = (
            f'<{self.contact.uri}>;+sip.instance="<urn:uuid:{self.instance_id}>"'
            f";reg-id={self.reg_id}"
        )
        # The header block every REGISTER of the binding repeats is checked here, once, as
        # `Headers` checks values (the names are constants); `_build` splices in what changes
        # per request (branch, CSeq and Expires, all made of digits and hex) and checks only
        # credentials. Max-Forwards, Supported, Allow and User-Agent are constants.
        for value in (self._via_prefix, self._from, self._to, self._call_id, self._contact_value):
            checked_value(value)  # none of them has blanks at an end to strip

    def _fields(self, via: str, cseq: str, expires: str) -> list[tuple[str, str]]:
        return [
            ("Via", via),
            ("Max-Forwards", _MAX_FORWARDS),
            ("From", self._from),
            ("To", self._to),
            ("Call-ID", self._call_id),
            ("CSeq", cseq),
            ("Contact", self._contact_value),
            ("Expires", expires),
            ("Supported", "outbound, path"),
            ("Allow", ALLOW),
            ("User-Agent", USER_AGENT),
        ]

    def connection_lost(self) -> None:
        """The flow is gone: the binding can no longer be trusted and nothing is pending."""
        self._fire(_FLOW_LOST, 0.0)

    def receive_response(self, response: Response, now: float) -> list[RegistrationOutput]:
        """Feeds a response to the REGISTER in flight, as its transaction delivered it.

        Provisional responses change nothing.

        Raises:
            LocalProtocolError: no REGISTER is in flight (the owner's transaction layer routes
                only the responses of the live transaction here).
        """
        if response.status < 200:
            return []
        request = self._pending
        if request is None:
            raise LocalProtocolError(
                f"a {response.status} response was given to a registration in state "
                f"{self.state.value} with no REGISTER in flight"
            )
        return self._fire(self._classify(response, request), now)

    def timed_out(self, now: float, reason: str) -> list[RegistrationOutput]:
        """The REGISTER in flight got no final response (Timer F fired, or its transport failed)."""
        return self._fire(_Verdict(event=_I.TIMED_OUT, status=408, reason=reason), now)

    def next_deadline(self) -> float | None:
        """When the binding must be refreshed, or None."""
        return self.refresh_at if self.state is RegistrationState.REGISTERED else None

    def handle_timer(self, now: float) -> list[RegistrationOutput]:
        """Refreshes the binding when its deadline has come."""
        if (
            self.state is RegistrationState.REGISTERED
            and self.refresh_at is not None
            and now >= self.refresh_at
        ):
            return self._fire(_REFRESH_DUE, now)
        return []

    # -- the machine ----------------------------------------------------------------------------

    def _fire(self, verdict: _Verdict, now: float) -> list[RegistrationOutput]:
        old = self.state
        new = TABLE.get((old, verdict.event))
        if new is None:
            raise LocalProtocolError(
                f"registration of {self.aor}: {verdict.event.value} is not possible in state "
                f"{old.value}"
            )
        self.state = new
        return self._effects(old, verdict, now)

    def _effects(
        self, old: RegistrationState, verdict: _Verdict, now: float
    ) -> list[RegistrationOutput]:
        event = verdict.event
        if event in (_I.REGISTER, _I.REFRESH_DUE):
            self._refreshing = old is RegistrationState.REGISTERED
            self._challenges = 0
            self._interval_retries = 0
            return [self._send(self._build(self._expires, []))]
        if event is _I.UNREGISTER:
            self.refresh_at = None
            self._challenges = 0
            return [self._send(self._build(0, []))]
        if event is _I.FLOW_LOST:
            # A new flow may reach a restarted registrar whose nonces are gone: answering its
            # first challenge afresh beats replaying credentials it would refuse (403 for ever).
            self._responder.forget()
            self._pending = None
            self.refresh_at = None
            return []
        self._pending = None
        if event is _I.CHALLENGED:
            expires = 0 if old is RegistrationState.UNREGISTERING else self._expires
            return [self._send(self._build(expires, verdict.credentials or []))]
        if event is _I.INTERVAL_TOO_BRIEF:
            self._expires = verdict.granted
            return [self._send(self._build(verdict.granted, []))]
        if event is _I.ACCEPTED:
            self._responder.accepted()
            if old is RegistrationState.UNREGISTERING:
                self.granted_expires = None
                return [Unregistered(status=verdict.status, reason=verdict.reason)]
            self.granted_expires = verdict.granted
            self.refresh_at = now + refresh_delay(verdict.granted)
            refreshed, self._refreshing = self._refreshing, False
            return [
                Registered(
                    expires=verdict.granted,
                    refresh_at=self.refresh_at,
                    flow_timer=verdict.flow_timer,
                    refreshed=refreshed,
                )
            ]
        # A refusal, a timeout or an unusable 2xx.
        if old is RegistrationState.UNREGISTERING:
            return [Unregistered(status=verdict.status, reason=verdict.reason)]
        self.refresh_at = None
        self._refreshing = False
        # Whatever went wrong, the next attempt starts from a fresh challenge.
        self._responder.forget()
        return [
            RegistrationFailed(
                status=verdict.status,
                reason=verdict.reason,
                auth=verdict.auth,
                retry_after=verdict.retry_after,
                credentials_sent=verdict.credentials_sent,
            )
        ]

    # -- responses ------------------------------------------------------------------------------

    def _classify(self, response: Response, request: Request) -> _Verdict:
        status = response.status
        unregistering = self.state is RegistrationState.UNREGISTERING
        if status in (401, 407):
            return self._challenge_verdict(response, request)
        if status == 423:
            # RFC 3261 §10.2.8: retry with an expiry no lower than Min-Expires.
            try:
                minimum = response.min_expires
            except ProtocolError:
                minimum = None
            self._interval_retries += 1
            if (
                minimum is None
                or minimum <= self._expires
                or self._interval_retries > MAX_INTERVAL_RETRIES
                or unregistering
            ):
                reason = f"registrar says interval too brief (Min-Expires {minimum})"
                return _Verdict(event=_I.INTERVAL_REFUSED, status=423, reason=reason)
            return _Verdict(
                event=_I.INTERVAL_TOO_BRIEF, status=423, reason=response.reason, granted=minimum
            )
        if 200 <= status < 300:
            if unregistering:
                return _Verdict(event=_I.ACCEPTED, status=status, reason=response.reason)
            try:
                granted = self._granted_expires(response)
            except ProtocolError as exc:
                # The machine never stays REGISTERING on a bad answer: it fails, and says why.
                reason = f"the registrar's answer is malformed: {exc}"
                return _Verdict(event=_I.ACCEPTED_UNUSABLE, status=status, reason=reason)
            if granted <= 0:
                reason = "registrar accepted but did not keep our Contact"
                return _Verdict(event=_I.ACCEPTED_UNUSABLE, status=status, reason=reason)
            return _Verdict(
                event=_I.ACCEPTED,
                status=status,
                reason=response.reason,
                granted=granted,
                flow_timer=_int_header(response, "Flow-Timer"),
            )
        return _Verdict(
            event=_I.REFUSED,
            status=status,
            reason=response.reason,
            retry_after=_retry_after(response),
            credentials_sent=AUTHORIZATION in request.headers
            or PROXY_AUTHORIZATION in request.headers,
        )

    def _challenge_verdict(self, response: Response, request: Request) -> _Verdict:
        status = response.status
        self._challenges += 1
        refused = _I.CREDENTIALS_REFUSED
        if self._challenges > MAX_CHALLENGES_PER_ATTEMPT:
            reason = "too many authentication challenges"
            return _Verdict(event=refused, status=status, reason=reason, auth=True)
        try:
            credentials = self._responder.authorize(response, request)
        except CredentialsRejected as exc:
            reason = f"credentials rejected: {exc}"
            return _Verdict(event=refused, status=status, reason=reason, auth=True)
        except ProtocolError as exc:
            reason = f"cannot answer the challenge: {exc}"
            return _Verdict(event=refused, status=status, reason=reason, auth=True)
        return _Verdict(
            event=_I.CHALLENGED, status=status, reason=response.reason, credentials=credentials
        )

    def _granted_expires(self, response: Response) -> int:
        # RFC 3261 §10.2.4: the expires param of our Contact, else the Expires header.
        ours = self._our_contact_quickly(response)
        if ours is None:
            try:
                contacts = response.contacts
            except ProtocolError:
                contacts = []
            ours = self._our_contact(contacts)
        if ours is not None and ours.expires is not None:  # ParseError if malformed: the caller's
            return ours.expires
        try:
            header = response.expires
        except ProtocolError:
            header = None
        return header if header is not None else self._expires

    def _our_contact_quickly(self, response: Response) -> Contact | None:
        """Our Contact, found by parsing only the elements that carry our instance id.

        A registrar lists every binding of the AOR (a load run's accounts have many); ours
        echoes our ``+sip.instance``, so only elements whose text holds that id are parsed.
        None when none of them is ours by URI: `_our_contact` then looks at every one.
        """
        instance = self.instance_id.lower()
        for value in response.headers.get_fields("Contact"):
            lowered = value.lower()
            at = lowered.find(instance)
            if at < 0:
                continue
            if len(lowered) == len(value):
                ours = self._first_with_instance(value, at)
                if ours is not None:
                    return ours
            try:
                elements = split_list(value, allow_empty=False)
                for element in elements:
                    if instance in element.lower():
                        for contact in parse_contacts(element):
                            uri = contact.uri
                            if isinstance(uri, SipUri) and uri.matches(self.contact.uri):
                                return contact
            except ProtocolError:
                return None
        return None

    def _first_with_instance(self, value: str, at: int) -> Contact | None:
        """The element around `at` (our instance id) by its commas, if it parses and is ours.

        A registrar lists its bindings in one Contact field; cutting out the one element that
        holds our id saves splitting the whole list. A comma inside a quoted string or a URI
        cuts the element short, which then does not parse or is not ours by URI: None, and the
        caller splits the list properly.
        """
        start = value.rfind(",", 0, at) + 1
        end = value.find(",", at)
        element = value[start : end if end >= 0 else len(value)].strip(" \t")
        if not element or element == "*":
            return None
        try:
            contact = parse_contact(element)
        except ProtocolError:
            return None
        uri = contact.uri
        if isinstance(uri, SipUri) and uri.matches(self.contact.uri):
            return contact
        return None

    def _our_contact(self, contacts: list[Contact]) -> Contact | None:
        # Our binding is the Contact equal to ours by RFC 3261 §19.1.4 (not by text: hosts and
        # params compare case-insensitively). Failing that, the one with our +sip.instance *and*
        # reg-id (RFC 5626 §6); the instance alone also marks an old flow's binding (after a
        # reconnect the port differs), whose expiry is not ours.
        instance = f'"<urn:uuid:{self.instance_id}>"'.lower()
        reg_id = str(self.reg_id)
        fallback: Contact | None = None
        for contact in contacts:
            uri = contact.uri
            if isinstance(uri, SipUri) and uri.matches(self.contact.uri):
                return contact
            params = {k.lower(): v for k, v in contact.params.items()}
            if (
                fallback is None
                and (params.get("+sip.instance") or "").lower() == instance
                and params.get("reg-id") == reg_id
            ):
                fallback = contact
        return fallback

    # -- requests -------------------------------------------------------------------------------

    def _send(self, request: Request) -> SendRequest:
        self._pending = request
        return SendRequest(request=request)

    def _build(self, expires: int, extra: list[tuple[str, str]]) -> Request:
        self._cseq += 1
        branch = new_branch(self._rng)
        self._key = ClientTxKey(branch=branch, method="REGISTER")
        via = self._via_prefix + branch
        cseq = f"{self._cseq} REGISTER"
        expires_value = str(expires)
        items = self._fields(via, cseq, expires_value)
        index = {
            "via": [via],
            "max-forwards": [_MAX_FORWARDS],
            "from": [self._from],
            "to": [self._to],
            "call-id": [self._call_id],
            "cseq": [cseq],
            "contact": [self._contact_value],
            "expires": [expires_value],
            "supported": ["outbound, path"],
            "allow": [ALLOW],
            "user-agent": [USER_AGENT],
        }
        if extra:
            checked = Headers(extra)  # credentials carry the user name: checked as any field
            items += checked
            for key, values in checked._get_index().items():
                index.setdefault(key, []).extend(values)
        headers = Headers._trusted(items, index)
        request = new_request("REGISTER", self._registrar, headers, b"")
        if not extra:
            # Later REGISTERs (refresh, 423 retry, unregister) answer the last challenge at
            # once, with the nonce count advanced (RFC 7616 §3.4), saving a round trip; a
            # registrar that wants a new nonce challenges again.
            for name, value in self._responder.preemptive(request):
                headers.add(name, value)
        return request


# (registrar URI, "<address of record>") by (scheme, user, host, port): every REGISTER of
# every binding of an AOR repeats them. Bounded: past it, they are formatted per binding.
_AOR_PARTS: dict[tuple[str, str | None, str, int | None], tuple[SipUri, str]] = {}
_AOR_PARTS_MAX: Final = 16_384


def _aor_parts(aor: SipUri) -> tuple[SipUri, str]:
    key = (aor.scheme, aor.user, aor.host, aor.port)
    parts = _AOR_PARTS.get(key)
    if parts is None:
        registrar = SipUri.parse(f"sips:{host_port(aor.host, aor.port)}")
        # From/To carry the address of record itself (§10.2): its URI parameters (a
        # deprecated `transport=tls`, RFC 5630 §3.1.3) and headers are not part of it.
        record = dataclasses.replace(aor, params={}, headers={}, password=None)
        parts = (registrar, f"<{record}>")
        if len(_AOR_PARTS) < _AOR_PARTS_MAX:
            _AOR_PARTS[key] = parts
    return parts


def refresh_delay(granted: int) -> float:
    """Seconds after a 2xx at which to refresh a binding granted for `granted` seconds.

    The midpoint, or the expiry minus `REFRESH_MARGIN_SECONDS` when that is earlier, but never
    earlier than a quarter of the granted time (short expiries in tests and odd registrars).
    """
    return max(granted * 0.25, min(granted * 0.5, granted - REFRESH_MARGIN_SECONDS))


#: RFC 5626 §4.5: the base time when every flow failed, and the upper bound of the wait.
DEFAULT_BACKOFF_BASE_SECONDS: Final = 30.0
DEFAULT_BACKOFF_MAX_SECONDS: Final = 1800.0


class JitterSource(Protocol):
    """The random source of back-off and keep-alive jitter (`random.Random` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(
    failures: int,
    rng: JitterSource,
    *,
    base: float = DEFAULT_BACKOFF_BASE_SECONDS,
    maximum: float = DEFAULT_BACKOFF_MAX_SECONDS,
) -> float:
    """RFC 5626 §4.5 back-off before the next registration attempt.

    wait = min(maximum, base * 2**failures), then a random time between 50% and 100% of it.

    Args:
        failures: consecutive failed attempts so far (0 for the first retry).
        rng: the jitter source.
        base: base time in seconds (RFC 5626: 30 s when all flows failed).
        maximum: upper bound in seconds (RFC 5626: 1800 s).
    """
    exponent = min(max(failures, 0), 32)  # bounded: 2**32 * base is past any maximum
    wait = min(maximum, base * (2**exponent))
    return rng.uniform(wait * 0.5, wait)


MAX_INT_HEADER_DIGITS: Final = 10


def _int_header(message: Response, name: str) -> int | None:
    value = message.headers.get(name)
    if value is None:
        return None
    digits = value.strip().split(";", 1)[0].split("(", 1)[0].strip()
    # ASCII only ("²".isdigit() is True but int() refuses it) and bounded (int() refuses
    # more than 4300 digits; delta-seconds fit in 10, RFC 3261 §25.1).
    if digits.isascii() and digits.isdigit() and len(digits) <= MAX_INT_HEADER_DIGITS:
        return int(digits)
    return None


def _retry_after(message: Response) -> int | None:
    return _int_header(message, "Retry-After")


#: Live transactions of one `RegisterClient`: the REGISTER in flight, and one that a new
#: request (an unregister) overtook.
REGISTER_CLIENT_TRANSACTIONS: Final = 4


class RegisterClient:
    """One `Registration` run in client non-INVITE transactions of a table of its own.

    The small sans-IO path for owners that have no endpoint (the load engine, many
    registrations each on its own raw connection, where speed counts): the same inputs and
    outputs as the registration, plus any response read from the flow (`receive_response`),
    which the transaction layer's `ReliableClientTable` matches (§17.1.3; a response that
    matches no live transaction, or not the REGISTER in flight, is counted in
    `stray_responses` and dropped), and `handle_timer`, which fires Timer F (§17.1.2.2, a 408
    failure) as well as the refresh.

    Args:
        registration: the registration to run.
        timer_f: Timer F in seconds (64*T1), the REGISTER's timeout.
    """

    __slots__ = ("_key", "_table", "registration", "stray_responses")

    def __init__(self, registration: Registration, *, timer_f: float = DEFAULT_TIMER_F) -> None:
        self.registration = registration
        self._table = ReliableClientTable(
            timer_f=timer_f, max_transactions=REGISTER_CLIENT_TRANSACTIONS
        )
        self._key: ClientTxKey | None = None
        self.stray_responses = 0

    @property
    def state(self) -> RegistrationState:
        """The registration's state."""
        return self.registration.state

    @property
    def call_id(self) -> str:
        """The Call-ID of every REGISTER of the binding."""
        return self.registration.call_id

    def register(self, now: float) -> list[RegistrationOutput]:
        """Starts a registration (or a refresh) now."""
        return self._sent(self.registration.register(now), now)

    def unregister(self, now: float) -> list[RegistrationOutput]:
        """Removes the binding (``Expires: 0``)."""
        return self._sent(self.registration.unregister(now), now)

    def receive_response(self, response: Response, now: float) -> list[RegistrationOutput]:
        """Feeds a response read from the flow; the transaction layer matches it."""
        try:
            key = self._table.match(response)
        except ProtocolError:
            key = None  # no usable Via or CSeq: it answers no transaction of ours
        if key is None or key is not self._key:
            self.stray_responses += 1  # a stray, or the answer to a request overtaken since
            return []
        if response.status >= 200:
            self._key = None
        outputs = self.registration.receive_response(response, now)
        if outputs and type(outputs[0]) is SendRequest:  # a retry: a new transaction
            self._sent(outputs, now)
        return outputs

    def next_deadline(self) -> float | None:
        """The earlier of Timer F of the REGISTER in flight and the refresh."""
        timer_f = self._table.next_deadline()
        refresh = self.registration.next_deadline()
        if timer_f is None:
            return refresh
        return timer_f if refresh is None else min(timer_f, refresh)

    def handle_timer(self, now: float) -> list[RegistrationOutput]:
        """Fires what is due: Timer F (a 408 failure), or the refresh."""
        outputs: list[RegistrationOutput] = []
        for key in self._table.expired(now):
            if key == self._key:
                self._key = None
                reason = f"no response from the registrar within {self._table.timeout:g} s"
                outputs += self._sent(self.registration.timed_out(now, reason), now)
        return outputs + self._sent(self.registration.handle_timer(now), now)

    def connection_lost(self, now: float) -> None:
        """The flow is gone: its transaction fails, the registration starts afresh next time."""
        del now
        if self._key is not None:
            self._table.drop(self._key)
            self._key = None
        self.registration.connection_lost()

    def _sent(self, outputs: list[RegistrationOutput], now: float) -> list[RegistrationOutput]:
        """Starts the transaction of each REGISTER the registration asks to send."""
        for output in outputs:
            if isinstance(output, SendRequest):
                key = self.registration.pending_key
                assert key is not None
                self._table.send(key, now)
                self._key = key
        return outputs
