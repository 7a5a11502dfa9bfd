"""The RFLink serial text protocol: decoding received lines and building commands.

An RFLink receiver (an Arduino Mega with a 433 MHz radio and the RFLink firmware) talks 57600 8N1
text, one packet a line::

    20;63;SmokeAlert;ID=123456;SMOKEALERT=ON;
    │  │  │          └─ LABEL=value fields, the first usually ID (hexadecimal)
    │  │  └─ protocol (device family) name, may contain spaces and slashes
    │  └─ packet counter, two hex digits, wraps at FF
    └─ node 20: from the receiver to us (10 is from us to it)

Lines without an ``ID`` field are the receiver's own: the start banner
(``20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;``), ``20;99;PONG;`` (the reply to
``10;PING;``), ``20;xx;OK;`` and status lines. This module is pure: text in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from contract.parsing import FrameRejected

__all__ = [
    "MAX_LINE",
    "PING",
    "LineError",
    "RflinkLine",
    "decode_line",
    "is_pong",
    "transmit_command",
]

#: Longest line we accept; real lines are well under 200 characters.
MAX_LINE = 512
PING = b"10;PING;\r\n"

_SEQ = re.compile(r"^[0-9A-Fa-f]{2}$")
_LABEL = re.compile(r"^[A-Za-z0-9_]{1,32}$")
# Printable ASCII only: the firmware sends nothing else, and it keeps junk out of device ids.
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


class LineError(FrameRejected):
    """A line is not an RFLink packet; ``reason`` is a short, fixed string for counting."""


@dataclass(frozen=True)
class RflinkLine:
    """One decoded packet from the receiver."""

    seq: int
    name: str
    #: ``LABEL=value`` fields in order, labels upper-cased; a value may itself contain ``=``
    #: (``CMD=SET_LEVEL=14``).
    fields: dict[str, str] = field(default_factory=dict)
    #: Parts without ``=`` (status lines such as ``NO NRF24L01``).
    flags: tuple[str, ...] = ()
    #: The line without node and counter: the same radio packet repeated has the same body.
    body: str = ""

    @property
    def rf_id(self) -> str | None:
        return self.fields.get("ID")

    @property
    def switch(self) -> str | None:
        return self.fields.get("SWITCH")


def decode_line(payload: bytes) -> RflinkLine:
    """Decode one received line (with or without its line ending); raises :class:`LineError`."""
    if len(payload) > MAX_LINE:
        raise LineError("line_too_long")
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise LineError("not_ascii") from exc
    if not text:
        raise LineError("empty_line")
    if not _PRINTABLE.match(text):
        raise LineError("control_characters")
    parts = text.split(";")
    if parts[-1] == "":
        parts.pop()
    if parts[0] != "20":
        raise LineError("not_from_receiver")
    if len(parts) < 3:
        raise LineError("too_few_fields")
    _, seq_text, name, *rest = parts
    if not _SEQ.match(seq_text):
        raise LineError("bad_counter")
    name = name.strip()
    if not name:
        raise LineError("empty_name")
    if name.upper() == "DEBUG":
        # Pulse dumps (10;RFDEBUG=ON;) have labels like "Pulses(uSec)": not packets, not errors.
        return RflinkLine(seq=int(seq_text, 16), name=name, body=";".join(parts[2:]))
    fields: dict[str, str] = {}
    flags: list[str] = []
    for part in rest:
        label, eq, value = part.partition("=")
        if not eq:
            flags.append(part)
            continue
        label = label.strip().upper()
        if not _LABEL.match(label):
            raise LineError("bad_label")
        # A repeated label is a corrupted line: we cannot tell which value is right.
        if label in fields:
            raise LineError("repeated_label")
        fields[label] = value.strip()
    body = ";".join(parts[2:])
    return RflinkLine(
        seq=int(seq_text, 16), name=name, fields=fields, flags=tuple(flags), body=body
    )


def is_pong(payload: bytes) -> bool:
    """True for the receiver's reply to ``10;PING;`` (``20;99;PONG;``, any counter)."""
    try:
        line = decode_line(payload)
    except LineError:
        return False
    return line.name.upper() == "PONG" and not line.fields


def transmit_command(protocol: str, rf_id: str, switch: str, command: str) -> bytes:
    """The line that makes the receiver transmit a command (``10;NewKaku;00c142;1;ON;``)."""
    for part in (protocol, rf_id, switch, command):
        if not part or ";" in part or not _PRINTABLE.match(part):
            raise ValueError(f"cannot put {part!r} in an RFLink command")
    return f"10;{protocol};{rf_id};{switch};{command};\r\n".encode("ascii")
