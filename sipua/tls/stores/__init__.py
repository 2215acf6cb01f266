"""sipua's certificates on disk: the trusted CAs and the device certificates (`store`), and
the device CA that issues sipua's own certificates (`issuing`)."""
