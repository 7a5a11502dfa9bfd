"""Record and replay: what the drivers heard, kept as traces, replayed through the same code.

- :mod:`replay.trace`: the trace file format (JSON lines, gzip, one header per session);
- :mod:`replay.recorder`: the rotating recorder the gateway writes traces with;
- :mod:`replay.engine`: a trace through the real parsers and rule engine on a virtual clock;
- :mod:`replay.forward`: replayed events sent to a dispatch server through the real forwarder.
"""
