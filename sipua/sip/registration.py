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
- A request with no final response within `response_timeout` (Timer F, 64*T1, §17.1.2.2) fails
  with status 408, as the transaction layer would report it.
- `unregister()` sends the same Contact with ``Expires: 0`` (§10.2.2) and ends in `Unregistered`.

Failures are reported, not retried: back-off, reconnection and failover are the UA's job
(`backoff_delay` computes the RFC 5626 §4.5 wait).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Final, Protocol

from sipua.sip import Contact, Headers, Request, Response, SipUri
from sipua.sip.digest import (
    AUTHORIZATION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
    ChallengeVerdict,
    DigestSession,
)
from sipua.sip.errors import LocalProtocolError, ProtocolError
from sipua.sip.fields import parse_contacts
from sipua.sip.headers import split_list
from sipua.sip.ids import RandomSource, new_branch, new_call_id, new_tag
from sipua.sip.methods import ALLOW
from sipua.sip.uri import host_port

DEFAULT_RESPONSE_TIMEOUT_SECONDS: Final = 32.0  # Timer F = 64 * T1, RFC 3261 §17.1.2.2
REFRESH_MARGIN_SECONDS: Final = 32.0
MAX_CHALLENGES_PER_ATTEMPT: Final = 3  # a stale nonce may be retried; loops end here
MAX_INTERVAL_RETRIES: Final = 3  # 423 answers per attempt
MAX_FORWARDS: Final = 70  # RFC 3261 §8.1.1.6
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """Send this request on the registration connection."""

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


class Registration:
    """The REGISTER state machine for one account (one AOR, one Contact, one flow).

    Args:
        aor: the address of record, a `sips:` URI.
        username: the authentication user name (for the responder; kept for logs).
        contact: our Contact URI and Via sent-by.
        instance_id: the stable per-device UUID for ``+sip.instance`` (RFC 5626 §4.1).
        rng: the randomness source for Call-ID, tags and branches.
        responder: answers digest challenges.
        expires: the requested expiry in seconds.
        reg_id: RFC 5626 ``reg-id`` of this flow.
        response_timeout: seconds to wait for a final response.

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
        response_timeout: float = DEFAULT_RESPONSE_TIMEOUT_SECONDS,
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
        self._timeout = response_timeout
        self._call_id = new_call_id(rng)
        self._from_tag = new_tag(rng)
        self._cseq = 0
        self._pending: Request | None = None
        self._response_deadline: float | None = None
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

    # -- inputs ---------------------------------------------------------------------------------

    def register(self, now: float) -> list[RegistrationOutput]:
        """Starts a registration (or a refresh) now."""
        if self.state in (RegistrationState.REGISTERING, RegistrationState.UNREGISTERING):
            raise LocalProtocolError(f"cannot register in state {self.state.value}")
        self._refreshing = self.state is RegistrationState.REGISTERED
        self.state = RegistrationState.REGISTERING
        self._challenges = 0
        self._interval_retries = 0
        return [self._send(self._build(self._expires, []), now)]

    def unregister(self, now: float) -> list[RegistrationOutput]:
        """Removes our binding (``Expires: 0``); ends in `Unregistered`."""
        if self.state is RegistrationState.UNREGISTERING:
            raise LocalProtocolError("already unregistering")
        self.state = RegistrationState.UNREGISTERING
        self.refresh_at = None
        self._challenges = 0
        return [self._send(self._build(0, []), now)]

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

    def connection_lost(self) -> None:
        """The flow is gone: the binding can no longer be trusted and nothing is pending."""
        # A new flow may reach a restarted registrar whose nonces are gone: answering its
        # first challenge afresh beats replaying credentials it would refuse (403 for ever).
        self._responder.forget()
        self._pending = None
        self._response_deadline = None
        self.refresh_at = None
        if self.state is not RegistrationState.UNREGISTERED:
            self.state = RegistrationState.IDLE

    def matches(self, response: Response) -> bool:
        """Whether `response` answers the request in flight (§17.1.3: branch and method)."""
        pending = self._pending
        if pending is None:
            return False
        try:
            return (
                response.cseq.method == "REGISTER"
                and response.cseq.seq == self._cseq
                and response.call_id == self._call_id
                and response.top_via.branch == pending.top_via.branch
            )
        except ProtocolError:
            return False

    def receive_response(self, response: Response, now: float) -> list[RegistrationOutput]:
        """Feeds a response; responses that do not match the request in flight are ignored."""
        if not self.matches(response) or response.status < 200:
            return []
        request = self._pending
        assert request is not None
        self._pending = None
        self._response_deadline = None
        status = response.status
        if status in (401, 407):
            return self._on_challenge(response, request, now)
        if status == 423:
            return self._on_interval_too_brief(response, now)
        if 200 <= status < 300:
            return self._on_success(response, now)
        return self._fail(
            status,
            response.reason,
            retry_after=_retry_after(response),
            credentials_sent=AUTHORIZATION in request.headers
            or PROXY_AUTHORIZATION in request.headers,
        )

    def next_deadline(self) -> float | None:
        """The next time `handle_timer` has work: a response timeout or the refresh."""
        if self._response_deadline is not None:
            return self._response_deadline
        if self.state is RegistrationState.REGISTERED:
            return self.refresh_at
        return None

    def handle_timer(self, now: float) -> list[RegistrationOutput]:
        """Acts on a passed deadline: fail a request that got no answer, or refresh."""
        if self._response_deadline is not None:
            if now < self._response_deadline:
                return []
            self._pending = None
            self._response_deadline = None
            return self._fail(408, f"no response from the registrar within {self._timeout:g} s")
        if (
            self.state is RegistrationState.REGISTERED
            and self.refresh_at is not None
            and now >= self.refresh_at
        ):
            return self.register(now)
        return []

    # -- responses ------------------------------------------------------------------------------

    def _on_challenge(
        self, response: Response, request: Request, now: float
    ) -> list[RegistrationOutput]:
        self._challenges += 1
        if self._challenges > MAX_CHALLENGES_PER_ATTEMPT:
            return self._fail(response.status, "too many authentication challenges", auth=True)
        try:
            auth = self._responder.authorize(response, request)
        except CredentialsRejected as exc:
            return self._fail(response.status, f"credentials rejected: {exc}", auth=True)
        except ProtocolError as exc:
            return self._fail(response.status, f"cannot answer the challenge: {exc}", auth=True)
        expires = 0 if self.state is RegistrationState.UNREGISTERING else self._expires
        return [self._send(self._build(expires, auth), now)]

    def _on_interval_too_brief(self, response: Response, now: float) -> list[RegistrationOutput]:
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
            or self.state is RegistrationState.UNREGISTERING
        ):
            return self._fail(423, f"registrar says interval too brief (Min-Expires {minimum})")
        self._expires = minimum
        return [self._send(self._build(minimum, []), now)]

    def _on_success(self, response: Response, now: float) -> list[RegistrationOutput]:
        self._responder.accepted()
        if self.state is RegistrationState.UNREGISTERING:
            self.state = RegistrationState.UNREGISTERED
            self.granted_expires = None
            return [Unregistered(status=response.status, reason=response.reason)]
        try:
            granted = self._granted_expires(response)
        except ProtocolError as exc:
            # The state machine never stays REGISTERING on a bad answer: it fails, and says why.
            return self._fail(response.status, f"the registrar's answer is malformed: {exc}")
        if granted <= 0:
            return self._fail(response.status, "registrar accepted but did not keep our Contact")
        self.granted_expires = granted
        self.refresh_at = now + refresh_delay(granted)
        self.state = RegistrationState.REGISTERED
        refreshed = self._refreshing
        self._refreshing = False
        return [
            Registered(
                expires=granted,
                refresh_at=self.refresh_at,
                flow_timer=_int_header(response, "Flow-Timer"),
                refreshed=refreshed,
            )
        ]

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
            if instance not in value.lower():
                continue
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

    def _fail(
        self,
        status: int,
        reason: str,
        *,
        auth: bool = False,
        retry_after: int | None = None,
        credentials_sent: bool = False,
    ) -> list[RegistrationOutput]:
        if self.state is RegistrationState.UNREGISTERING:
            self.state = RegistrationState.UNREGISTERED
            return [Unregistered(status=status, reason=reason)]
        self.state = RegistrationState.FAILED
        self.refresh_at = None
        self._refreshing = False
        # Whatever went wrong, the next attempt starts from a fresh challenge.
        self._responder.forget()
        return [
            RegistrationFailed(
                status=status,
                reason=reason,
                auth=auth,
                retry_after=retry_after,
                credentials_sent=credentials_sent,
            )
        ]

    # -- requests -------------------------------------------------------------------------------

    def _send(self, request: Request, now: float) -> SendRequest:
        self._pending = request
        self._response_deadline = now + self._timeout
        return SendRequest(request=request)

    def _build(self, expires: int, extra: list[tuple[str, str]]) -> Request:
        self._cseq += 1
        headers = Headers(
            [
                ("Via", self._via_prefix + new_branch(self._rng)),
                ("Max-Forwards", _MAX_FORWARDS),
                ("From", self._from),
                ("To", self._to),
                ("Call-ID", self._call_id),
                ("CSeq", f"{self._cseq} REGISTER"),
                ("Contact", self._contact_value),
                ("Expires", str(expires)),
                ("Supported", "outbound, path"),
                ("Allow", ALLOW),
                ("User-Agent", USER_AGENT),
                *extra,
            ]
        )
        request = Request("REGISTER", self._registrar, headers)
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


class UniformSource(Protocol):
    """A random source with `uniform` (`random.Random` has it)."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(
    failures: int, rng: UniformSource, *, base: float = 30.0, maximum: float = 1800.0
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
