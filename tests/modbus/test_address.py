"""Modbus device addresses: the two schemes, their canonical form, and named errors."""

from __future__ import annotations

import pytest

from drivers.modbus import AddressError, parse_modbus_address


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tcp://192.168.1.40:502/1", "tcp://192.168.1.40:502/1"),
        ("tcp://gw.local/7", "tcp://gw.local:502/7"),
        ("TCP://GW.local:1502/247/", "tcp://gw.local:1502/247"),
        ("tcp://[fd00::5]:502/3", "tcp://[fd00::5]:502/3"),
        (
            "rtu:///dev/ttyUSB0/3",
            "rtu:///dev/ttyUSB0/3?baudrate=9600&parity=N&bytesize=8&stopbits=1",
        ),
        (
            "rtu:///dev/serial/by-id/usb-FTDI-if00/12?baudrate=19200&parity=e&stopbits=2",
            "rtu:///dev/serial/by-id/usb-FTDI-if00/12?baudrate=19200&parity=E&bytesize=8&stopbits=2",
        ),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    address = parse_modbus_address(text)
    assert str(address) == canonical
    # The canonical form reads back to the same address.
    assert parse_modbus_address(canonical) == address


def test_fields() -> None:
    tcp = parse_modbus_address("tcp://10.0.0.5:5020/9")
    assert (tcp.scheme, tcp.host, tcp.port, tcp.unit) == ("tcp", "10.0.0.5", 5020, 9)
    rtu = parse_modbus_address("rtu:///dev/ttyUSB0/3?baudrate=19200&parity=E")
    assert (rtu.scheme, rtu.host, rtu.unit, rtu.baudrate, rtu.parity) == (
        "rtu",
        "/dev/ttyUSB0",
        3,
        19200,
        "E",
    )
    assert rtu.endpoint == parse_modbus_address("rtu:///dev/ttyUSB0/4").endpoint
    assert tcp.endpoint != parse_modbus_address("tcp://10.0.0.5:502/9").endpoint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.5:502/1", "tcp:// or rtu://"),
        ("modbus://10.0.0.5/1", "tcp:// or rtu://"),
        ("tcp://10.0.0.5:502", "must end with /UNIT"),
        ("tcp://10.0.0.5:502/0", "1..247"),
        ("tcp://10.0.0.5:502/248", "1..247"),
        ("tcp://10.0.0.5:99999/1", "bad port"),
        ("tcp:///1", "needs a host"),
        ("tcp://h/a/1", "one path segment"),
        ("tcp://h/1?baudrate=9600", "takes no settings"),
        ("rtu:///1", "needs a serial port"),
        ("rtu:///dev/ttyUSB0/1?speed=9600", "unknown setting.*speed"),
        ("rtu:///dev/ttyUSB0/1?baudrate=fast", "must be numbers"),
        ("rtu:///dev/ttyUSB0/1?parity=X", "parity must be N, E or O"),
        ("rtu:///dev/ttyUSB0/1?bytesize=5", "impossible serial settings"),
    ],
)
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        parse_modbus_address(text)
