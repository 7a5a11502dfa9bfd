"""The floor both ends stand on: what crosses the wire and what describes a home.

Nothing here imports any other package of this project, and both the gateway (``gatewayd``,
``drivers``, ``rules``, ``buffer``, ``forwarder``, ``replay``) and the dispatch centre
(``dispatch``) import it:

- :mod:`contract.wire`: frames, readings, events, batches, heartbeats, Contact ID codes;
- :mod:`contract.signing`: the HMAC request signature between a gateway and dispatch;
- :mod:`contract.devices`: a device's spec, its roles, the local commands rules may ask for;
- :mod:`contract.parsing`: the parser seam every driver implements (frame in, readings out);
- :mod:`contract.home`: the home config file (``home.toml``) the installer writes.
"""

from __future__ import annotations

#: The product's version: both daemons and the wire's user agent report it.
__version__ = "0.1.0"

__all__ = ["__version__"]
