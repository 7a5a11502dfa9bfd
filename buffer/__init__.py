"""The gateway's durable event buffer: every event is in SQLite before anything else happens.

- :mod:`buffer.store`: :class:`~buffer.store.EventBuffer` (WAL, fsync for alarms, lanes, acks);
- :mod:`buffer.aio`: the asyncio face of it, one writer thread, commits batched;
- :mod:`buffer.files`: the buffer file itself: locking, quarantine of a corrupt file.
"""
