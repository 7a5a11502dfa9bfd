"""What a long-running process of this project needs, whichever end it runs at.

- :mod:`runtime.logs`: structlog set up once (JSON lines under journald, colours on a TTY);
- :mod:`runtime.sdnotify`: ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1`` to systemd;
- :mod:`runtime.backoff`: the one exponential back-off with jitter every retry loop uses;
- :mod:`runtime.files`: atomic file writes (a temporary file, fsync, rename);
- :mod:`runtime.cli`: how a command-line tool gives up (a message on stderr, an exit code).

It imports :mod:`contract` at most, never the gateway's or dispatch's own packages.
"""
