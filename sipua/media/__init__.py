"""Media for calls: RTP/RTCP, SRTP with SDES keys, SDP offer/answer, G.711, sources and sinks.

The packet, statistics, SDP and negotiation modules are sans-IO (time and randomness are
arguments); `session` is the trio task that moves the packets of one call.
"""
