"""Digest authentication, client side (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Theory of operation
-------------------
A registrar or proxy answers a request with 401 (`WWW-Authenticate`) or 407
(`Proxy-Authenticate`), each header field carrying one challenge. We:

1. parse every challenge value (`parse_challenge`); schemes other than Digest and Digest
   challenges with an algorithm or qop we do not implement are ignored, as RFC 8760 §2.4 asks
   (baresip aborts on the first unknown algorithm; we skip it);
2. per realm, pick the strongest algorithm we support (`choose_challenges`):
   SHA-512-256 > SHA-256 > MD5, each `-sess` variant ranked beside its base algorithm;
3. compute the response (`digest_response`) and format the credentials
   (`Credentials.header_value`) for `Authorization` / `Proxy-Authorization`.

`DigestSession` adds the memory a request stream (one registration, one call) needs: the nonce
count per nonce, the cnonce, and whether credentials were already sent for a nonce. From that it
tells a retry (first challenge, or `stale=true`: the nonce expired but the password was right)
from a rejection (a fresh, non-stale challenge right after we answered: the credentials are
wrong, RFC 7616 §3.3 and RFC 2617 §3.2.1).

The password arrives as a plain `str` argument of the call that needs it (the caller unwraps its
`Secret`) and is never stored, logged, or put in an exception message.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sipua.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError
from sipua.sip.ids import RandomSource, new_cnonce

__all__ = [
    "Challenge",
    "ChallengeVerdict",
    "Credentials",
    "DigestAlgorithm",
    "DigestChallengeError",
    "DigestSession",
    "NoUsableChallenge",
    "build_credentials",
    "choose_challenges",
    "digest_response",
    "parse_challenge",
    "redact_credentials",
]

WWW_AUTHENTICATE: Final = "WWW-Authenticate"
PROXY_AUTHENTICATE: Final = "Proxy-Authenticate"
AUTHORIZATION: Final = "Authorization"
PROXY_AUTHORIZATION: Final = "Proxy-Authorization"

# Bounds on what we accept from the peer: a challenge is a few hundred bytes in practice.
MAX_CHALLENGE_CHARS: Final = 8192
MAX_CHALLENGE_PARAMS: Final = 64
# RFC 7616 §3.4: nc is 8 hex digits, so a nonce can be used at most this many times.
MAX_NONCE_COUNT: Final = 0xFFFFFFFF


class DigestChallengeError(ParseError):
    """A `WWW-Authenticate`/`Proxy-Authenticate` value is not a valid challenge."""


class NoUsableChallenge(RemoteProtocolError):
    """None of the offered challenges uses a scheme, algorithm and qop sipua supports."""


@enum.unique
class DigestAlgorithm(enum.Enum):
    """The digest algorithms sipua implements (RFC 7616 §6.1, RFC 8760 §2.1)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    # Members are singletons: the identity hash (C) keys `_HASH_OF` as well as Enum's by-name
    # hash (Python), which every digest would pay.
    __hash__ = object.__hash__

    @property
    def is_session(self) -> bool:
        """Whether A1 includes the nonce and cnonce (the `-sess` variants, RFC 7616 §3.4.2)."""
        return self.value.endswith("-sess")

    @property
    def strength(self) -> int:
        """Preference rank; larger is stronger. `-sess` ranks beside its base algorithm."""
        return _STRENGTH[self.value.removesuffix("-sess")] * 2 + (1 if self.is_session else 0)

    def hash_hex(self, data: bytes) -> str:
        """Hash `data` with this algorithm's function and return lowercase hex.

        SHA-512-256 is the real SHA-512/256 of FIPS 180-4 (its own initial values), not SHA-512
        truncated to 256 bits; RFC 8760 §2.1 and RFC 7616 §3.2 name it that way.
        """
        return _HASH_OF[self](data).hexdigest()

    @classmethod
    def from_token(cls, token: str) -> DigestAlgorithm | None:
        """Return the algorithm for a challenge token (case-insensitive), or None if unknown."""
        return _BY_LOWER_TOKEN.get(token.lower())


_STRENGTH: Final = {"MD5": 0, "SHA-256": 1, "SHA-512-256": 2}
_HASHLIB_NAME: Final = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _hash_function(name: str) -> Callable[[bytes], hashlib._Hash]:
    # hashlib's named constructors skip `hashlib.new`'s lookup by name (a third of an MD5 of
    # a short string); SHA-512/256 has none.
    constructor = getattr(hashlib, name, None)
    if constructor is not None:
        return constructor  # type: ignore[no-any-return]
    return functools.partial(hashlib.new, name)


#: Each algorithm's hash function (keyed by the member: enum members hash by identity here).
_HASH_OF: Final = {
    alg: _hash_function(_HASHLIB_NAME[alg.value.removesuffix("-sess")]) for alg in DigestAlgorithm
}
_BY_LOWER_TOKEN: Final = {alg.value.lower(): alg for alg in DigestAlgorithm}

QOP_AUTH: Final = "auth"
QOP_AUTH_INT: Final = "auth-int"
_SUPPORTED_QOP: Final = (QOP_AUTH, QOP_AUTH_INT)
_SUPPORTED_QOP_SET: Final = frozenset(_SUPPORTED_QOP)


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One parsed authentication challenge.

    Attributes:
        scheme: the auth scheme as sent (compare case-insensitively; only Digest is usable).
        realm: the protection space; quoted-string contents with escapes removed.
        nonce: the server nonce.
        opaque: echoed back unchanged when present.
        stale: `stale=true`: the previous nonce expired, the credentials were fine.
        algorithm_name: the algorithm as sent ("MD5" when absent, RFC 7616 §3.3).
        qop: the offered qop values, lowercased ("auth", "auth-int"); empty for RFC 2069 style.
        domain: the URIs of the `domain` parameter.
        params: every parameter, names lowercased, values unquoted, in order.
        proxy: True for `Proxy-Authenticate` (answer with `Proxy-Authorization`).
    """

    scheme: str
    realm: str
    nonce: str
    opaque: str | None = None
    stale: bool = False
    algorithm_name: str = "MD5"
    qop: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    proxy: bool = False

    @property
    def algorithm(self) -> DigestAlgorithm | None:
        """The algorithm, or None if sipua does not implement the offered one."""
        return DigestAlgorithm.from_token(self.algorithm_name)

    @property
    def usable(self) -> bool:
        """Whether sipua can answer this challenge (Digest, known algorithm, known qop)."""
        if self.scheme.lower() != "digest" or self.algorithm is None:
            return False
        return not self.qop or not _SUPPORTED_QOP_SET.isdisjoint(self.qop)


# --- parsing -------------------------------------------------------------------------------
#
# RFC 3261 §25.1:
#   challenge        =  ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
#   other-challenge  =  auth-scheme LWS auth-param *(COMMA auth-param)
#   auth-param       =  auth-param-name EQUAL ( token / quoted-string )
#   quoted-string    =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
#   quoted-pair      =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
# token chars (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_LWS = re.compile(r"[ \t\r\n]*")


def parse_challenge(value: str, *, header: str = WWW_AUTHENTICATE) -> Challenge:
    """Parse one `WWW-Authenticate` or `Proxy-Authenticate` header value.

    Parameter names and the scheme are case-insensitive; unknown parameters are kept in
    `params` and otherwise ignored. For a non-Digest scheme only the scheme and params are
    meaningful (realm and nonce may be empty).

    Args:
        value: the header field value (one challenge, RFC 3261 §20.44).
        header: the header name, used in error messages and to set `proxy`.

    Raises:
        DigestChallengeError: the value is not a challenge; the message names the header and
            the problem.
    """
    if len(value) > MAX_CHALLENGE_CHARS:
        raise DigestChallengeError(
            f"{header}: challenge is {len(value)} characters, more than {MAX_CHALLENGE_CHARS}"
        )
    pos = _LWS.match(value, 0)
    assert pos is not None  # the pattern matches the empty string
    scheme_match = _TOKEN.match(value, pos.end())
    if scheme_match is None:
        raise DigestChallengeError(f"{header}: expected an auth scheme such as Digest")
    scheme = scheme_match.group()
    params = _parse_params(value, scheme_match.end(), header)
    is_digest = scheme.lower() == "digest"
    names = dict(params)
    if is_digest:
        for required in ("realm", "nonce"):
            if required not in names:
                raise DigestChallengeError(f"{header}: Digest challenge has no {required}")
    qop_raw = names.get("qop")
    qop: tuple[str, ...] = ()
    if qop_raw is None:
        pass
    elif "," in qop_raw:
        qop = tuple(q.strip().lower() for q in qop_raw.split(",") if q.strip())
    elif one := qop_raw.strip().lower():  # the usual single value
        qop = (one,)
    domain = names.get("domain")
    return Challenge(
        scheme=scheme,
        realm=names.get("realm", ""),
        nonce=names.get("nonce", ""),
        opaque=names.get("opaque"),
        stale=names.get("stale", "").lower() == "true",
        algorithm_name=names.get("algorithm", "MD5"),
        qop=qop,
        domain=tuple(domain.split()) if domain else (),
        params=tuple(params),
        proxy=header == PROXY_AUTHENTICATE or header.lower() == _PROXY_AUTHENTICATE_KEY,
    )


_PROXY_AUTHENTICATE_KEY: Final = PROXY_AUTHENTICATE.lower()


MAX_REALMS: Final = 4  # challenges answered at once (a proxy and a registrar, with room to spare)
MAX_PARAM_NAME_CHARS: Final = 64  # longest auth-param name we accept (RFC 7616 names are short)


# One `name = value` parameter and what follows it (a comma, or the end), for the common case
# of a challenge without backslash escapes. Groups: name, quoted value, token value.
_PARAM_FAST = re.compile(
    r"[ \t\r\n]*+([A-Za-z0-9\-.!%*_+`'~]++)[ \t\r\n]*+=[ \t\r\n]*+"
    r"(?:\"([^\"\\]*+)\"|([A-Za-z0-9\-.!%*_+`'~]++))[ \t\r\n]*+(?:,|\Z)"
)


def _parse_params_fast(value: str, start: int) -> list[tuple[str, str]] | None:
    """The parameters by one regex match each, or None where `_parse_params` must judge."""
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos, end = start, len(value)
    if _skip_lws(value, pos) >= end:
        return None  # no parameters: the general loop says so
    while pos < end:
        m = _PARAM_FAST.match(value, pos)
        if m is None:
            return None
        name, quoted, token = m.groups()
        name = name.lower()
        if len(name) > MAX_PARAM_NAME_CHARS or name in seen:
            return None
        seen.add(name)
        params.append((name, quoted if quoted is not None else token))
        if len(params) > MAX_CHALLENGE_PARAMS:
            return None
        pos = m.end()
        if value[pos - 1 : pos] == "," and _skip_lws(value, pos) >= end:
            return None  # a trailing comma: the general loop decides
    return params


def _parse_params(value: str, start: int, header: str) -> list[tuple[str, str]]:
    """Parse `name=value` pairs separated by commas, starting at `start`."""
    fast = _parse_params_fast(value, start)
    if fast is not None:
        return fast
    return _parse_params_slow(value, start, header)


def _parse_params_slow(value: str, start: int, header: str) -> list[tuple[str, str]]:
    """The general parameter loop: every form RFC 7235 allows, and the error messages."""
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos = start
    end = len(value)
    while True:
        pos = _skip_lws(value, pos)
        if pos >= end:
            break
        name_match = _TOKEN.match(value, pos)
        if name_match is None:
            raise DigestChallengeError(
                f"{header}: expected a parameter name at offset {pos}, found {value[pos]!r}"
            )
        name = name_match.group().lower()
        if len(name) > MAX_PARAM_NAME_CHARS:
            raise DigestChallengeError(
                f"{header}: a parameter name is longer than {MAX_PARAM_NAME_CHARS} characters"
                f" ({name[:32]!r}...)"
            )
        pos = _skip_lws(value, name_match.end())
        if pos >= end or value[pos] != "=":
            raise DigestChallengeError(f"{header}: parameter {name!r} has no '=' and no value")
        pos = _skip_lws(value, pos + 1)
        if pos < end and value[pos] == '"':
            param_value, pos = _parse_quoted(value, pos, header, name)
        else:
            value_match = _TOKEN.match(value, pos)
            if value_match is None:
                raise DigestChallengeError(f"{header}: parameter {name!r} has an empty value")
            param_value, pos = value_match.group(), value_match.end()
        if name in seen:
            # RFC 7235 §2.1: each parameter name MUST occur only once per challenge; two
            # different nonces or realms would make our answer ambiguous.
            raise DigestChallengeError(f"{header}: parameter {name!r} appears twice")
        seen.add(name)
        params.append((name, param_value))
        if len(params) > MAX_CHALLENGE_PARAMS:
            raise DigestChallengeError(f"{header}: more than {MAX_CHALLENGE_PARAMS} parameters")
        pos = _skip_lws(value, pos)
        if pos >= end:
            break
        if value[pos] != ",":
            raise DigestChallengeError(
                f"{header}: expected ',' after parameter {name!r}, found {value[pos]!r}"
            )
        pos += 1
    return params


def _skip_lws(value: str, pos: int) -> int:
    match = _LWS.match(value, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _parse_quoted(value: str, pos: int, header: str, name: str) -> tuple[str, int]:
    """Parse the quoted-string starting at `value[pos] == '"'`; return (contents, next pos)."""
    chars: list[str] = []
    i = pos + 1
    end = len(value)
    while i < end:
        char = value[i]
        if char == "\\":
            if i + 1 >= end:
                break
            chars.append(value[i + 1])
            i += 2
        elif char == '"':
            return "".join(chars), i + 1
        else:
            chars.append(char)
            i += 1
    raise DigestChallengeError(f"{header}: quoted value of parameter {name!r} is not closed")


# --- choosing -------------------------------------------------------------------------------


def choose_challenges(challenges: Iterable[Challenge]) -> list[Challenge]:
    """Pick, for each realm, the strongest usable challenge (RFC 8760 §2.4, RFC 3261 §22.3).

    Challenges we cannot answer (other schemes, unknown algorithms such as AKAv1-MD5, qop
    values we do not know) are skipped. Between equally strong ones the first offered wins.

    Args:
        challenges: the parsed challenges of one 401/407 response, in header order.

    Returns:
        One challenge per realm, in the order the realms first appeared.

    Raises:
        NoUsableChallenge: nothing is usable; the message lists what was offered.
    """
    offered: list[Challenge] = list(challenges)
    best: dict[str, Challenge] = {}
    for challenge in offered:
        algorithm = challenge.algorithm
        if not challenge.usable or algorithm is None:
            continue
        current = best.get(challenge.realm)
        current_alg = current.algorithm if current is not None else None
        if current_alg is None or algorithm.strength > current_alg.strength:
            best[challenge.realm] = challenge
    if not best:
        described = ", ".join(_describe(c) for c in offered) or "no challenge at all"
        supported = ", ".join(alg.value for alg in DigestAlgorithm)
        raise NoUsableChallenge(
            f"the server offered {described}; sipua supports Digest with {supported} "
            f"and qop auth or auth-int: enable one of these on the server"
        )
    return list(best.values())


def _describe(challenge: Challenge) -> str:
    if challenge.scheme.lower() != "digest":
        return f"scheme {challenge.scheme}"
    qop = f" qop={','.join(challenge.qop)}" if challenge.qop else ""
    return f"Digest algorithm={challenge.algorithm_name}{qop}"


# --- computing -----------------------------------------------------------------------------


def digest_response(
    *,
    algorithm: DigestAlgorithm,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """Compute the `response` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).

    Strings are encoded as UTF-8 (RFC 7616 §3.4.4 and §4; identical to ISO-8859-1 for ASCII).

    Args:
        algorithm: the hash algorithm.
        username: the user name.
        password: the password; used for this computation only.
        realm: the challenge's realm.
        nonce: the challenge's nonce.
        method: the request method (for SIP, never the ACK/CANCEL special case here).
        uri: the digest-uri, in SIP the Request-URI (RFC 3261 §22.4).
        qop: "auth", "auth-int" or None for the RFC 2069 form.
        nc: the nonce count as 8 hex digits (required with qop).
        cnonce: the client nonce (required with qop and with `-sess` algorithms).
        body: the message body, hashed for auth-int.

    Raises:
        LocalProtocolError: a required argument is missing or qop is unknown.
    """
    if qop is not None and qop not in _SUPPORTED_QOP:
        raise LocalProtocolError(f"digest qop {qop!r} is not supported (use auth or auth-int)")
    if (qop is not None or algorithm.is_session) and not cnonce:
        raise LocalProtocolError(f"digest with qop={qop} and {algorithm.value} needs a cnonce")
    if qop is not None and not nc:
        raise LocalProtocolError("digest with qop needs a nonce count (nc)")

    def h(text: str) -> str:
        # surrogateescape: the parser keeps undecodable wire bytes as surrogates, and the
        # digest must hash the very bytes the server sent (a realm in Latin-1, say).
        return algorithm.hash_hex(text.encode("utf-8", "surrogateescape"))

    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.is_session:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    if qop == QOP_AUTH_INT:
        ha2 = h(f"{method}:{uri}:{algorithm.hash_hex(body)}")
    else:
        ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """The contents of an `Authorization` / `Proxy-Authorization` header (RFC 3261 §22.2).

    The response digest is left out of the repr: it allows an offline guess of the password.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None
    proxy: bool = False

    @property
    def header_name(self) -> str:
        """`Proxy-Authorization` for a 407 challenge, else `Authorization`."""
        return PROXY_AUTHORIZATION if self.proxy else AUTHORIZATION

    def header_value(self) -> str:
        """Format the header value; qop, nc and algorithm are tokens, the rest quoted.

        RFC 3261 §25.1 (`message-qop`, `nonce-count`, `algorithm`) and RFC 7616 §3.4: quoting
        qop or nc breaks some servers, so they stay bare.
        """
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
        ]
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        return "Digest " + ", ".join(parts)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _choose_qop(offered: Sequence[str]) -> str | None:
    # "auth" protects the request line and keeps working when a proxy rewrites the body;
    # auth-int is used only when it is all the server accepts.
    if not offered:
        return None
    # A usable challenge (checked by the caller) offers at least one of the two.
    return QOP_AUTH if QOP_AUTH in offered else QOP_AUTH_INT


def build_credentials(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nonce_count: int = 1,
    body: bytes = b"",
) -> Credentials:
    """Answer one challenge.

    Args:
        challenge: a usable challenge (see `Challenge.usable`).
        username: the user name.
        password: the password; used for this computation only, never stored.
        method: the request method.
        uri: the digest-uri: the Request-URI of the request being authorised (§22.4).
        cnonce: the client nonce (ignored for RFC 2069-style challenges without qop, unless
            the algorithm is a `-sess` variant that needs it).
        nonce_count: how many times this nonce has been used, this time included.
        body: the request body, for qop=auth-int.

    Raises:
        LocalProtocolError: the challenge is not usable or the nonce count is out of range.
    """
    algorithm = challenge.algorithm
    if not challenge.usable or algorithm is None:
        raise LocalProtocolError(f"cannot answer {_describe(challenge)}: not supported by sipua")
    if not 1 <= nonce_count <= MAX_NONCE_COUNT:
        raise LocalProtocolError(f"digest nonce count {nonce_count} is out of range 1..2^32-1")
    qop = _choose_qop(challenge.qop)
    nc = f"{nonce_count:08x}" if qop is not None else None
    sent_cnonce = cnonce if (qop is not None or algorithm.is_session) else None
    response = digest_response(
        algorithm=algorithm,
        username=username,
        password=password,
        realm=challenge.realm,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc,
        cnonce=sent_cnonce,
        body=body,
    )
    # RFC 2617 §3.2.2: echo the algorithm when the server named one; an RFC 2069 server that
    # sent none gets none back.
    explicit_algorithm = any(name == "algorithm" for name, _ in challenge.params)
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=algorithm.value if explicit_algorithm else None,
        cnonce=sent_cnonce,
        nc=nc,
        qop=qop,
        opaque=challenge.opaque,
        proxy=challenge.proxy,
    )


# --- session ------------------------------------------------------------------------------


class ChallengeVerdict(enum.Enum):
    """What a 401/407 means for the request stream that received it."""

    #: First challenge for the realm, or the previous nonce was accepted and has now expired.
    RETRY = "retry"
    #: `stale=true`: the nonce expired but the credentials were right; retry with the new nonce.
    RETRY_STALE = "retry-stale"
    #: A non-stale challenge right after we answered: the credentials were rejected.
    REJECTED = "rejected"


@dataclass(slots=True)
class _RealmState:
    challenge: Challenge
    cnonce: str
    nonce_count: int = 0  # times the nonce was used so far
    accepted: bool = False  # a request answered with this nonce succeeded


class DigestSession:
    """Digest state for one request stream (a registration, a call), per realm.

    Usage: on a 401/407 call `handle_challenges(values, header=...)`; on `REJECTED` stop, on a
    retry verdict resend the request with the headers from `credentials(...)`. After a success
    call `mark_accepted()` so that a later non-stale challenge (the server let the nonce expire
    without `stale=true`) is treated as a retry, not a rejection. Later requests may call
    `credentials(...)` pre-emptively; the nonce count advances each time (RFC 7616 §3.4).

    Args:
        username: the digest user name.
        rng: the randomness source for cnonces.
    """

    __slots__ = ("_realms", "_rng", "username")

    def __init__(self, *, username: str, rng: RandomSource) -> None:
        self.username = username
        self._rng = rng
        # Keyed by (proxy?, realm): a proxy (407) and a registrar (401) often share one realm
        # (the domain), yet each has its own nonce and needs its own header.
        self._realms: dict[tuple[bool, str], _RealmState] = {}

    def __repr__(self) -> str:
        return f"DigestSession(username={self.username!r}, realms={list(self.realms)!r})"

    @property
    def realms(self) -> tuple[str, ...]:
        """The realms we currently hold a challenge for."""
        return tuple(realm for _, realm in self._realms)

    def handle_challenges(
        self, values: Iterable[str], *, header: str = WWW_AUTHENTICATE
    ) -> ChallengeVerdict:
        """Take the challenge header values of a 401 or 407 and say what to do.

        Args:
            values: every value of the `header` field in the response, in order.
            header: `WWW-Authenticate` (401) or `Proxy-Authenticate` (407).

        Returns:
            `REJECTED` if any realm rejected credentials we sent; else `RETRY_STALE` if any
            challenge was stale; else `RETRY`.

        Raises:
            DigestChallengeError: a Digest challenge is malformed.
            NoUsableChallenge: no challenge can be answered.
        """
        parsed: list[Challenge] = []
        for value in values:
            # Other schemes (Negotiate, token68 forms) may not even parse as auth-params;
            # they are not ours to understand, so skip them before parsing.
            scheme = _TOKEN.match(value, _skip_lws(value, 0))
            if scheme is not None and scheme.group().lower() != "digest":
                continue
            parsed.append(parse_challenge(value, header=header))
        rejected = stale = False
        for challenge in choose_challenges(parsed)[:MAX_REALMS]:
            key = (challenge.proxy, challenge.realm)
            previous = self._realms.pop(key, None)
            if challenge.stale:
                stale = True
            elif previous is not None and previous.nonce_count > 0 and not previous.accepted:
                rejected = True
            self._realms[key] = _RealmState(challenge=challenge, cnonce=new_cnonce(self._rng))
        # Bounded: a peer inventing realms must not grow every later request's headers.
        while len(self._realms) > MAX_REALMS:
            del self._realms[next(iter(self._realms))]
        if rejected:
            return ChallengeVerdict.REJECTED
        return ChallengeVerdict.RETRY_STALE if stale else ChallengeVerdict.RETRY

    def mark_accepted(self) -> None:
        """Record that the last request sent with credentials succeeded (a 2xx)."""
        for state in self._realms.values():
            if state.nonce_count > 0:
                state.accepted = True

    def credentials(
        self, *, method: str, uri: str, password: str, body: bytes = b""
    ) -> list[Credentials]:
        """Build the credentials for the next request, one per realm, advancing nc.

        Args:
            method: the request method.
            uri: the Request-URI of the request (the digest-uri, RFC 3261 §22.4).
            password: the password; used for this computation only, never stored.
            body: the request body, for qop=auth-int.

        Returns:
            Credentials to add as headers (`header_name`, `header_value()`); empty before the
            first challenge.
        """
        result: list[Credentials] = []
        for state in self._realms.values():
            state.nonce_count += 1
            result.append(
                build_credentials(
                    state.challenge,
                    username=self.username,
                    password=password,
                    method=method,
                    uri=uri,
                    cnonce=state.cnonce,
                    nonce_count=state.nonce_count,
                    body=body,
                )
            )
        return result

    def reset(self) -> None:
        """Forget every challenge (for example after a rejection, before asking again)."""
        self._realms.clear()


# --- traces --------------------------------------------------------------------------------

# Either a whole quoted string (kept as it is) or a proof parameter (value hidden). Quoted
# strings are consumed whole, so `uri="urn:response=..."` is never taken for the parameter; an
# unterminated quote runs to the end and is then caught by the fallback in `_redact`.
_QUOTED_VALUE: Final = r'"(?:[^"\\]|\\.)*"'
_PARAM_VALUE: Final = r'(?:"(?:[^"\\]|\\.)*"?|[^,\s]*)'
_QUOTED_OR_RESPONSE = re.compile(
    rf"{_QUOTED_VALUE}|(?<![\w-])(response\s*=\s*){_PARAM_VALUE}", re.IGNORECASE
)
_QUOTED_OR_PROOF = re.compile(
    rf"{_QUOTED_VALUE}|(?<![\w-])((?:response|rspauth)\s*=\s*){_PARAM_VALUE}", re.IGNORECASE
)
_REDACTED = '"<redacted>"'


def redact_credentials(value: str) -> str:
    """Hide the `response` digest of an Authorization value, for logs and traces.

    The digest allows an offline dictionary attack on the password, so it never reaches a log;
    the other parameters (username, realm, nonce, nc) stay visible for debugging.
    """
    return _redact(value, _QUOTED_OR_RESPONSE)


def redact_digest_proofs(value: str) -> str:
    """Like `redact_credentials`, and also hides an Authentication-Info `rspauth` (RFC 7616
    §3.5): the log redaction of any line of text that may carry either."""
    return _redact(value, _QUOTED_OR_PROOF)


def _redact(value: str, pattern: re.Pattern[str]) -> str:
    def hide(match: re.Match[str]) -> str:
        prefix = match.group(1)
        return match.group() if prefix is None else prefix + _REDACTED

    redacted = pattern.sub(hide, value)
    if redacted.count('"') % 2:
        # Unbalanced quotes: the structure cannot be trusted, so keep only the scheme and the
        # parameter names rather than risk showing the digest.
        scheme = value.split(None, 1)[0] if value.strip() else ""
        return f"{scheme} <redacted: malformed credentials>".lstrip()
    return redacted
