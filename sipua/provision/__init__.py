"""Provisioning certificates from URLs, as desk phones do (`static.trusted_certificates.url`,
`static.server_certificates.url` and their `.delete` counterparts)."""
