"""RFLink 433 MHz receivers on a serial port: smoke alarms, PIRs, door contacts, SOS buttons.

- :mod:`.protocol`: the RFLink text protocol (pure).
- :mod:`.parser`: lines to readings (pure; :class:`RflinkParser`).
- :mod:`.transport`: the serial port, PING supervision, reconnects.
- :mod:`.driver`: the ``rflink`` :class:`~drivers.base.Driver`.
"""

from __future__ import annotations

from .driver import RflinkDriver, RflinkOptions
from .parser import RflinkDevice, RflinkParser, parse_address

__all__ = ["RflinkDevice", "RflinkDriver", "RflinkOptions", "RflinkParser", "parse_address"]
