"""`host[:port]` as users write it: the one reader of an address, for settings and for RFC 3263.

A host is an IP address or a DNS name (RFC 1123 letters, digits and hyphens, at most 253
characters); an IPv6 address takes brackets when a port follows (`[2001:db8::1]:5061`, as in
SIP URIs, RFC 3261 §19.1.1 and RFC 5118 §4.1). Errors are `ValueError`s whose message says
what is wrong and how to write it; callers add which setting it was.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

_HOST_NAME: Final = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?\Z"
)


def is_ip(text: str) -> bool:
    """Tells whether `text` is an IPv4 or IPv6 address (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_host_name(text: str) -> bool:
    """Tells whether `text` is a DNS host name (a final dot allowed), not an IP address.

    All-numeric names are refused: `1.2.3` is a mistyped address, not a name.
    """
    return bool(_HOST_NAME.match(text)) and not text.replace(".", "").isdigit()


def is_valid_host(host: str) -> bool:
    """Tells whether `host` is an IP address (IPv6 without brackets) or a DNS host name."""
    return is_ip(host) or is_host_name(host)


def split_host_port(
    written: str, *, allow_port_zero: bool = False, bare_ipv6: bool = False
) -> tuple[str, int | None]:
    """Splits `host[:port]` (IPv6 in brackets: `[::1]:5061`) into host and port.

    Args:
        written: The address as written by the user.
        allow_port_zero: Accept port 0 (a listener asking the OS for a free port).
        bare_ipv6: Accept an IPv6 address without brackets, which then has no port.

    Returns:
        The host (IPv6 without brackets, otherwise as written) and the port, or None when no
        port was given.

    Raises:
        ValueError: The text is not a valid `host[:port]`; the message says what is wrong.
    """
    if written.startswith("["):
        close = written.find("]")
        if close < 0:
            raise ValueError("missing ']': the '[' before the IPv6 address never closes")
        host, rest = written[1:close], written[close + 1 :]
        if not _is_ipv6(host):
            raise ValueError(f"{host!r} in brackets is not an IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 address; expected ':PORT'")
        port_text = rest[1:] if rest else None
    elif written.count(":") > 1:
        if not _is_ipv6(written):
            raise ValueError(
                f"{written!r} is neither a host nor an IPv6 address; "
                "write IPv6 addresses with a port as [2001:db8::1]:5061"
            )
        if not bare_ipv6:
            raise ValueError(f"put the IPv6 address in brackets: [{written}] or [{written}]:5061")
        return written, None
    else:
        host, sep, tail = written.partition(":")
        port_text = tail if sep else None
        if not is_valid_host(host):
            raise ValueError(
                f"{host!r} is not an IP address or a valid host name; give a DNS name such "
                "as 'sip.example.com' or an IP address"
            )
    if port_text is None:
        return host, None
    return host, parse_port(port_text, allow_zero=allow_port_zero)


def _is_ipv6(text: str) -> bool:
    return ":" in text and is_ip(text)


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    """A TCP/UDP port written as decimal digits, 1 to 65535 (0 too with `allow_zero`).

    Raises:
        ValueError: not a number, or out of range; the message says which.
    """
    # isascii: "5²".isdigit() is true, and int() refuses it.
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"port {text!r} is not a number")
    lowest = 0 if allow_zero else 1
    if len(text) > 5 or not lowest <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is out of range {lowest}-65535")
    return int(text)
