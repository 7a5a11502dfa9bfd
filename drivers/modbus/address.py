"""Where a Modbus device is: one URL per device, naming the line and the unit (device id).

Two schemes::

    tcp://HOST[:PORT]/UNIT                  Modbus TCP (port 502 by default), e.g. a gateway
    rtu://SERIAL_PORT/UNIT[?SETTINGS]       Modbus RTU on a serial line (RS-485)

The unit is always the last path segment (1..247). For RTU the serial port is the path before
it and the settings are query parameters: ``baudrate`` (9600), ``parity`` (``N``/``E``/``O``,
default ``N``), ``bytesize`` (8), ``stopbits`` (1)::

    tcp://192.168.1.40:502/1
    rtu:///dev/ttyUSB0/3?baudrate=9600&parity=E

Devices on the same TCP host and port, or the same serial port, share one connection (an RS-485
line carries one request at a time). The canonical form (:meth:`ModbusAddress.__str__`) is the
``source`` of every frame, so a trace says which device answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

__all__ = ["AddressError", "ModbusAddress", "parse_modbus_address"]

Scheme = Literal["tcp", "rtu"]


class AddressError(ValueError):
    """A Modbus device address that does not follow the scheme."""


@dataclass(frozen=True)
class ModbusAddress:
    scheme: Scheme
    #: TCP host, or the serial port path for RTU.
    host: str
    port: int
    unit: int
    baudrate: int = 9600
    parity: str = "N"
    bytesize: int = 8
    stopbits: int = 1

    @property
    def endpoint(self) -> tuple[object, ...]:
        """Devices with the same endpoint share a connection."""
        if self.scheme == "tcp":
            return ("tcp", self.host.lower(), self.port)
        return ("rtu", self.host)

    @property
    def line_settings(self) -> tuple[int, str, int, int]:
        return (self.baudrate, self.parity, self.bytesize, self.stopbits)

    def __str__(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp://{host}:{self.port}/{self.unit}"
        return (
            f"rtu://{self.host}/{self.unit}?baudrate={self.baudrate}&parity={self.parity}"
            f"&bytesize={self.bytesize}&stopbits={self.stopbits}"
        )


def parse_modbus_address(text: str) -> ModbusAddress:
    """Parse a device address; raises :class:`AddressError` naming what is wrong."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("tcp", "rtu"):
        raise AddressError(
            f"Modbus address must start with tcp:// or rtu:// "
            f"(like 'tcp://192.168.1.40:502/1' or 'rtu:///dev/ttyUSB0/1?baudrate=9600'), "
            f"got {text!r}"
        )
    path = parts.path.rstrip("/")
    head, _, unit_text = path.rpartition("/")
    if not unit_text.isdigit():
        raise AddressError(f"Modbus address {text!r} must end with /UNIT (a device id 1..247)")
    unit = int(unit_text)
    if not 1 <= unit <= 247:
        raise AddressError(f"Modbus unit must be 1..247, got {unit} in {text!r}")
    if scheme == "tcp":
        if parts.query:
            raise AddressError(f"tcp:// Modbus address takes no settings: {text!r}")
        if head:
            raise AddressError(f"tcp:// Modbus address has one path segment, the unit: {text!r}")
        try:
            host, port = parts.hostname, parts.port or 502
        except ValueError as exc:
            raise AddressError(f"bad port in Modbus address {text!r}") from exc
        if not host:
            raise AddressError(f"tcp:// Modbus address needs a host: {text!r}")
        return ModbusAddress("tcp", host, port, unit)
    serial_port = (parts.netloc + head) if parts.netloc else head
    if not serial_port:
        raise AddressError(f"rtu:// Modbus address needs a serial port: {text!r}")
    settings = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(settings) - {"baudrate", "parity", "bytesize", "stopbits"}
    if unknown:
        raise AddressError(
            f"unknown setting(s) {', '.join(sorted(unknown))} in {text!r}; "
            f"known: baudrate, parity, bytesize, stopbits"
        )
    try:
        baudrate = int(settings.get("baudrate", "9600"))
        bytesize = int(settings.get("bytesize", "8"))
        stopbits = int(settings.get("stopbits", "1"))
    except ValueError as exc:
        raise AddressError(f"settings must be numbers in {text!r}") from exc
    parity = settings.get("parity", "N").upper()
    if parity not in ("N", "E", "O"):
        raise AddressError(f"parity must be N, E or O, got {parity!r} in {text!r}")
    if baudrate <= 0 or bytesize not in (7, 8) or stopbits not in (1, 2):
        raise AddressError(f"impossible serial settings in {text!r}")
    return ModbusAddress("rtu", serial_port, 0, unit, baudrate, parity, bytesize, stopbits)
