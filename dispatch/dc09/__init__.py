"""dispatchd's SIA DC-09 receiver: alarm panels and telecare units report into the console."""

from dispatch.dc09.intake import Dc09Intake
from dispatch.dc09.server import Dc09Receiver

__all__ = ["Dc09Intake", "Dc09Receiver"]
