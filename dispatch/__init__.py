"""dispatchd: the dispatch centre's server.

Gateways enroll, send signed event batches and heartbeats; alarms become incidents that operators
work through a lifecycle; consoles follow a resumable live stream of changes. Storage is SQLite for
a single process or PostgreSQL for several processes sharing one database.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
