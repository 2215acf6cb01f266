"""Whom sipua trusts: the trust policy and its one verdict, RFC 5922 identity, the anchors.

`policy.verify_chain` decides; `path` runs cryptography's RFC 5280 verifier under SIP's rules,
`reasons` turns its refusals into sipua's reason codes, `identity` checks RFC 5922 identity,
`anchors` reads the operating system's CA bundle (the "default" trusted set), and `verify`
binds the verdict to a connection's configuration, with the verdict cache.
"""
