"""The SIP methods sipua serves, and the one Allow value that says so (RFC 3261 §20.5).

Every message that advertises what sipua accepts (a REGISTER, the 2xx to an INVITE, our
INVITE, the answer to OPTIONS, a 405) uses `ALLOW`, so they can never disagree.
"""

from __future__ import annotations

from typing import Final

#: Methods sipua serves, in the order `ALLOW` lists them (UPDATE: session refreshes, RFC 3311).
SERVED_METHODS: Final = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE")
#: The Allow header value.
ALLOW: Final = ", ".join(SERVED_METHODS)
#: Methods of RFC 3261 and its common extensions that sipua knows but does not serve (405;
#: any other method gets 501).
KNOWN_METHODS: Final = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "PRACK", "REFER", "PUBLISH"}
)
