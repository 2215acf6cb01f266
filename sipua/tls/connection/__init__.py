"""The TLS connection machinery: OpenSSL contexts, the memory-BIO engine, the trio stream and
listener, the handshake and close events, and the opt-in key log."""
