"""The load engine of `sipua load`: many accounts registering over TLS from one or more processes.

- `engine`: `LoadPlan` and `LoadRun`, the registrations of one process (the core's
  `sipua.sip.registration.Registration` builds every REGISTER and judges every response, in
  the transaction layer's client transactions through `RegisterClient`).
- `raw_tls`: `RawTlsFlow`, the engine's one named way past the transport layer (a TLS client
  on a raw non-blocking socket, for speed).
- `accounts`: the accounts (a user pattern or a CSV file).
- `stats`: the figures, the progress line and the report.
"""
