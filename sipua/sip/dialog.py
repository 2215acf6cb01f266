"""SIP dialogs (RFC 3261 §12), the UAS side and in-dialog requests, sans-IO.

A dialog is identified by Call-ID, local tag and remote tag (§12). The UAS creates it from the
INVITE it answers (§12.1.1): the route set is the INVITE's Record-Route values *in order*, the
remote target is the INVITE's Contact, the remote sequence number is the INVITE's CSeq, and the
dialog is secure when the Request-URI was `sips:`. In-dialog requests from the peer must carry a
higher CSeq than the last one (§12.2.2, else 500); ACK and CANCEL reuse the INVITE's number.
Requests we send in the dialog (a BYE, the ACK of a 2xx) go to the remote target through the
route set, with our own CSeq counting up (§12.2.1.1): when the first route is a loose router
(``;lr``) the Request-URI is the remote target and the route set the Route header fields; when
it is a strict router (RFC 2543), its URI is the Request-URI and the rest of the route set,
then the remote target, are the Route header fields. Everything a later in-dialog request needs
is checked when the dialog is created, so a bad INVITE is refused up front (400) instead of
failing when we build our BYE: the remote target must be a SIP or SIPS URI (§8.1.1.8, §12.1.1),
and every route a SIP or SIPS URI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from sipua.sip import Headers, Request, Response, SipUri
from sipua.sip.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sipua.sip.fields import parse_name_address
from sipua.sip.ids import RandomSource, new_branch

MAX_FORWARDS: Final = 70


def credentials_of(invite: Request) -> list[tuple[str, str]]:
    """The INVITE's credentials, which the ACK of its 2xx carries too (§22.1)."""
    return [
        (name, value)
        for name in ("Authorization", "Proxy-Authorization")
        for value in invite.headers.get_all(name)
    ]


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID, local tag, remote tag (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(slots=True, kw_only=True)
class Dialog:
    """One dialog as the UAS keeps it.

    Attributes:
        call_id: the Call-ID.
        local_tag: our tag (the To tag of our responses).
        remote_tag: the peer's tag (the From tag of its requests).
        local_uri: our URI (the To URI of the INVITE), as text.
        remote_uri: the peer's URI (the From URI of the INVITE), as text.
        remote_target: the peer's Contact URI, as text.
        route_set: Record-Route values in the order the UAS uses them (§12.1.1).
        remote_seq: the highest CSeq number seen from the peer; None until the peer's first
            request in a dialog we created as UAC (§12.1.2: the remote sequence number is empty).
        local_seq: the last CSeq number we used.
        secure: the dialog was created by a `sips:` request (§12.1.1).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    remote_seq: int | None = None
    local_seq: int = 0
    secure: bool = True

    @classmethod
    def from_uas(cls, request: Request, local_tag: str) -> Dialog:
        """Creates the dialog a 2xx (or 1xx with a tag) to `request` establishes (§12.1.1).

        Raises:
            RemoteProtocolError: the request has no From tag or no Contact, its Contact is not a
                SIP(S) URI, or its route set is not usable (a non-SIP route); status_hint 400.
        """
        remote_tag = request.from_.tag
        if not remote_tag:
            raise RemoteProtocolError("the INVITE has no From tag", status_hint=400)
        contacts = request.contacts
        if not contacts:
            raise RemoteProtocolError("the INVITE has no Contact (RFC 3261 §8.1.1.8)")
        uri = request.uri
        secure = isinstance(uri, SipUri) and uri.scheme == "sips"
        target = contacts[0].uri
        if contacts[0].is_star or not isinstance(target, SipUri):
            raise RemoteProtocolError(
                f"the INVITE's Contact {str(target)[:200]!r} is not a SIP or SIPS URI, so no "
                "request could reach the caller in the dialog (RFC 3261 §8.1.1.8)"
            )
        # A sip: Contact under a sips: Request-URI is accepted although §8.1.1.8 says the
        # caller MUST use sips: a proxy that retargets a sip: call to our registered sips:
        # Contact produces exactly that (Kamailio does), and refusing would refuse real
        # calls. It costs no security here: sipua sends its in-dialog requests on the call's
        # own TLS connection, through the route set, never to the Contact directly.
        routes = request.record_routes
        route_uris = [route.uri for route in routes]
        for route_uri in route_uris:
            if not isinstance(route_uri, SipUri):
                raise RemoteProtocolError(
                    f"the INVITE's Record-Route {str(route_uri)[:200]!r} is not a SIP or SIPS URI"
                )
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=str(request.to.uri),
            remote_uri=str(request.from_.uri),
            remote_target=str(contacts[0].uri),
            route_set=[str(route) for route in routes],
            remote_seq=request.cseq.seq,
            secure=secure,
        )

    @classmethod
    def from_uac(cls, invite: Request, response: Response) -> Dialog:
        """The dialog a 2xx to our `invite` establishes, as the UAC keeps it (§12.1.2).

        The route set is the response's Record-Route in *reverse* order, the remote target its
        Contact, the remote tag its To tag; our CSeq continues from the INVITE's.

        Raises:
            RemoteProtocolError: the response has no To tag or no usable Contact, or its route
                set is not usable (status_hint 400 is never sent: the caller ends the call).
        """
        remote_tag = response.to.tag
        if not remote_tag:
            raise RemoteProtocolError("the 2xx to our INVITE has no To tag (RFC 3261 §12.1.2)")
        contacts = response.contacts
        target = contacts[0].uri if contacts else None
        if not contacts or contacts[0].is_star or not isinstance(target, SipUri):
            raise RemoteProtocolError(
                f"the 2xx to our INVITE has no SIP or SIPS Contact ({str(target)[:200]!r}), so "
                "no request could reach the callee in the dialog (RFC 3261 §12.1.2)"
            )
        routes = list(reversed(response.record_routes))
        for route in routes:
            if not isinstance(route.uri, SipUri):
                raise RemoteProtocolError(
                    f"the 2xx's Record-Route {str(route.uri)[:200]!r} is not a SIP or SIPS URI"
                )
        uri = invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=remote_tag,
            local_uri=str(invite.from_.uri),
            remote_uri=str(invite.to.uri),
            remote_target=str(target),
            route_set=[str(route) for route in routes],
            local_seq=invite.cseq.seq,
            secure=isinstance(uri, SipUri) and uri.scheme == "sips",
        )

    @property
    def id(self) -> DialogId:
        """The dialog id."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    def matches(self, request: Request) -> bool:
        """Whether an in-dialog request belongs here (Call-ID, To tag = ours, From tag = theirs)."""
        return (
            request.call_id == self.call_id
            and request.to.tag == self.local_tag
            and request.from_.tag == self.remote_tag
        )

    def receive_request(self, request: Request) -> None:
        """Checks and records the CSeq of an in-dialog request from the peer (§12.2.2).

        Raises:
            RemoteProtocolError: the CSeq went backwards (status_hint 500, as §12.2.2 says).
        """
        seq = request.cseq.seq
        if request.method in ("ACK", "CANCEL"):
            return  # they reuse the INVITE's number (§13.2.2.4, §9.1)
        # §12.2.2: the first request sets the remote number, whatever it is (0 included,
        # §8.1.1.5); after that, a number not above it is out of order.
        if self.remote_seq is not None and seq <= self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} is not above {self.remote_seq} in this dialog", status_hint=500
            )
        self.remote_seq = seq

    def new_request(self, method: str, *, sent_by: str, rng: RandomSource) -> Request:
        """Builds a request we send inside the dialog (§12.2.1.1), e.g. a BYE.

        Args:
            method: the method (not ACK or CANCEL, which reuse the INVITE's CSeq).
            sent_by: our Via sent-by, ``host:port`` of the connection it goes out on.
            rng: the branch source.

        Raises:
            LocalProtocolError: for ACK or CANCEL, or a route or target that is not a SIP URI.
        """
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"{method} is not built by Dialog.new_request")
        uri, routes = self._routing()
        self.local_seq = max(self.local_seq, 0) + 1
        transport = "TLS"
        headers = Headers(
            [
                ("Via", f"SIP/2.0/{transport} {sent_by};branch={new_branch(rng)}"),
                ("Max-Forwards", str(MAX_FORWARDS)),
                ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
                ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.local_seq} {method}"),
                *[("Route", route) for route in routes],
            ]
        )
        return Request(method, uri, headers)

    def new_ack(self, invite: Request, *, sent_by: str, rng: RandomSource) -> Request:
        """The ACK for the 2xx to our `invite` (§13.2.2.4): a new branch, the INVITE's CSeq
        number, the dialog's route set and target, and the INVITE's credentials.

        Raises:
            LocalProtocolError: a route or the target is not a SIP URI.
        """
        uri, routes = self._routing()
        headers = Headers(
            [
                ("Via", f"SIP/2.0/TLS {sent_by};branch={new_branch(rng)}"),
                ("Max-Forwards", str(MAX_FORWARDS)),
                ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
                ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{invite.cseq.seq} ACK"),
                *[("Route", route) for route in routes],
                *credentials_of(invite),
            ]
        )
        return Request("ACK", uri, headers)

    def _routing(self) -> tuple[SipUri, list[str]]:
        """The Request-URI and the Route values of a request in the dialog (§12.2.1.1).

        Raises:
            LocalProtocolError: a route or the target is not a SIP URI.
        """
        try:
            target = SipUri.parse(self.remote_target)
            first = parse_name_address(self.route_set[0], "Route").uri if self.route_set else None
        except ProtocolError as exc:
            raise LocalProtocolError(f"the dialog's target or route is unusable: {exc}") from None
        if first is None:
            return target, []
        if not isinstance(first, SipUri):
            raise LocalProtocolError(f"the dialog's first route {str(first)[:200]!r} is not SIP")
        if "lr" in first.params:
            return target, list(self.route_set)
        # A strict router (RFC 2543): it takes the Request-URI, the target goes last (§12.2.1.1);
        # URI headers are not allowed in a Request-URI (§19.1.1).
        return replace(first, headers={}), [*self.route_set[1:], f"<{self.remote_target}>"]
