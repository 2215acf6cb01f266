"""RFC 3261 §25 grammar pieces as compiled regular expressions.

The parser works on `str` (the header block decoded once as UTF-8 with `surrogateescape`, so
every byte survives a round trip), and these patterns are the only place the grammar is
spelled out. Each constant quotes the ABNF it implements. Quantifiers that can meet long runs
of the same character class are possessive (`*+`, `++`, Python 3.11) so that no pattern
backtracks: every match is linear in the length of its input.
"""

from __future__ import annotations

import re
from typing import Final

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS: Final = r"A-Za-z0-9\-.!%*_+`'~"  # noqa: S105 - a grammar rule, not a secret
TOKEN: Final = f"[{TOKEN_CHARS}]++"
TOKEN_RE: Final = re.compile(TOKEN)

# Method = INVITEm / ACKm / ... / extension-method ; extension-method = token
METHOD_RE: Final = TOKEN_RE

# LWS = [*WSP CRLF] 1*WSP ; folding is undone before these patterns run, so LWS is 1*WSP.
LWS: Final = r"[ \t]++"
SWS: Final = r"[ \t]*+"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
# qdtext is read liberally (any character but DQUOTE, backslash, CR, LF) because RFC 4475
# §3.1.1.2 carries raw UTF-8 and the rule for rejecting controls buys nothing here.
QUOTED_STRING: Final = r'"(?:[^"\\\r\n]++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
QUOTED_STRING_RE: Final = re.compile(QUOTED_STRING)

# gen-value = token / host / quoted-string ; host may be an IPv6reference "[...]".
GEN_VALUE: Final = rf"(?:{TOKEN}|\[[0-9A-Fa-f:.]++\]|{QUOTED_STRING})"

# generic-param = token [ EQUAL gen-value ], preceded by SEMI = SWS ";" SWS.
# Matched one at a time at a position, so a failure pinpoints where the text went wrong.
GENERIC_PARAM: Final = rf"{SWS};{SWS}({TOKEN})(?:{SWS}={SWS}({GEN_VALUE}))?"
GENERIC_PARAM_RE: Final = re.compile(GENERIC_PARAM)
# Zero or more generic-params, for validating a whole parameter tail with one fullmatch.
GENERIC_PARAMS_RE: Final = re.compile(rf"(?:{SWS};{SWS}{TOKEN}(?:{SWS}={SWS}{GEN_VALUE})?)*+")

# header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS
# One header line of the (unfolded) header block: name, colon, value without the surrounding
# whitespace. Anchored at the start of a CRLF-delimited line (never after a bare LF), so a
# garbage line can never be skipped over: the parser counts matches against lines.
HEADER_LINE_RE: Final = re.compile(
    rf"(?:\A|(?<=\r\n))({TOKEN})[ \t]*+:[ \t]*+"
    r"((?:[^\r\n \t]++|[ \t]++(?=[^\r\n \t]))*+)[ \t]*+(?:\r\n|\Z)"
)

# Folded lines (RFC 3261 §7.3.1): a CRLF followed by whitespace continues the previous line
# and is equivalent to a single SP.
FOLD_RE: Final = re.compile(r"\r\n[ \t]++")

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION_RE: Final = re.compile(r"SIP/[0-9]++\.[0-9]++", re.IGNORECASE)

# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
# i.e. no control characters other than HTAB.
REASON_PHRASE_RE: Final = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*+")

# Status-Code = 3DIGIT
STATUS_CODE_RE: Final = re.compile(r"[1-6][0-9][0-9]")

# callid = word [ "@" word ]; word = 1*( alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" /
#   "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" /
#   "{" / "}" )   (RFC 3261 §25.1)
CALL_ID_RE: Final = re.compile(
    r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]++(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]++)?"""
)

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_RE: Final = re.compile(rf"([0-9]++){LWS}({TOKEN})")

# DIGITS for Max-Forwards, Expires, Min-Expires, Content-Length.
DIGITS_RE: Final = re.compile(r"[0-9]++")

# hostname = *( domainlabel "." ) toplabel [ "." ] ; IPv4address ; IPv6reference = "[" IPv6 "]"
# Read liberally as letters, digits, "-", "." and "_" (seen in the wild in SRV-style names);
# IPv6 references are checked with the ipaddress module by the URI code.
HOST_NAME: Final = r"[A-Za-z0-9\-._]++"
HOST: Final = rf"\[[0-9A-Fa-f:.]++\]|{HOST_NAME}"

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport ; SLASH = SWS "/" SWS
# sent-by = host [ COLON port ]
VIA_HEAD_RE: Final = re.compile(
    rf"({TOKEN}){SWS}/{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){LWS}"
    rf"({HOST})"
    rf"(?:{SWS}:{SWS}([0-9]++))?"
)

# rfc1123-date = wkday "," SP date1 SP time SP "GMT" (RFC 3261 §20.17)
DATE_RE: Final = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)

# A list element of a comma-separated header value: text outside quotes and <...>, quoted
# strings (commas inside do not split) and <...> (commas inside a URI do not split).
LIST_ELEMENT_RE: Final = re.compile(rf'(?:[^,"<]++|{QUOTED_STRING}|<[^>]*+>)++')
