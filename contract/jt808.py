"""JT/T 808 (China's road-transport terminal protocol), the part Beidou/GNSS wristbands speak.

Pure: bytes in, values out, and back. Both dispatch's server and the wristband simulator use it.

A frame on the wire is ``0x7e | header | body | check code | 0x7e``; between the flags 0x7e is
sent as ``0x7d 0x02`` and 0x7d as ``0x7d 0x01``. The check code is the XOR of header and body.
The header (2011/2013) is message id (2), body attributes (2: length in bits 0-9, encryption in
10-12, sub-package in 13, the 2019 version flag in 14), terminal phone (6 BCD), serial (2), and,
for a sub-package, the package count (2) and index (2). The 2019 header adds a protocol version
byte after the attributes and widens the phone to 10 BCD bytes.

Times in a location report are BCD ``YYMMDDhhmmss`` in Beijing time (UTC+8), as the standard says.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = [
    "BEIJING",
    "FLAG",
    "MAX_BODY",
    "AlarmBit",
    "Authentication",
    "FrameError",
    "Header",
    "Location",
    "Message",
    "MsgId",
    "Param",
    "Registration",
    "Result",
    "Splitter",
    "StatusBit",
    "bcd_time",
    "checksum",
    "decode_authentication",
    "decode_batch",
    "decode_frame",
    "decode_general_response",
    "decode_location",
    "decode_register_reply",
    "decode_registration",
    "decode_set_params",
    "encode_authentication",
    "encode_batch",
    "encode_frame",
    "encode_general_response",
    "encode_location",
    "encode_register_reply",
    "encode_registration",
    "encode_set_params",
    "escape",
    "normalise_phone",
    "unescape",
]

FLAG: Final = 0x7E
ESC: Final = 0x7D
#: The body length field has 10 bits.
MAX_BODY: Final = 0x3FF
#: The standard's times are Beijing time.
BEIJING: Final = timezone(timedelta(hours=8))


class FrameError(ValueError):
    """A frame that cannot be read; ``reason`` is a short stable word for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MsgId(enum.IntEnum):
    TERMINAL_RESPONSE = 0x0001
    HEARTBEAT = 0x0002
    REGISTER = 0x0100
    AUTHENTICATE = 0x0102
    LOCATION = 0x0200
    BATCH_LOCATION = 0x0704
    PLATFORM_RESPONSE = 0x8001
    REGISTER_REPLY = 0x8100
    SET_PARAMS = 0x8103


class Result(enum.IntEnum):
    """The result byte of a general response (0x8001/0x0001)."""

    SUCCESS = 0
    FAILURE = 1
    #: "消息有误": a bad check code or length.
    MESSAGE_ERROR = 2
    UNSUPPORTED = 3
    ALARM_CONFIRMED = 4


class AlarmBit(enum.IntEnum):
    """Alarm flag bits of a location report (those this product acts on)."""

    EMERGENCY = 0
    GNSS_FAULT = 4
    UNDERVOLTAGE = 7
    POWER_OFF = 8
    #: Collision and rollover: how wristbands of this kind report a fall.
    COLLISION = 29
    ROLLOVER = 30


class Param(enum.IntEnum):
    """Terminal parameter ids (0x8103) this product sets."""

    #: Heartbeat interval, seconds (DWORD).
    HEARTBEAT_S = 0x0001


class StatusBit(enum.IntEnum):
    ACC = 0
    FIX = 1
    SOUTH = 2
    WEST = 3


@dataclass(frozen=True, slots=True)
class Header:
    msg_id: int
    phone: str
    serial: int
    #: None for 2011/2013; the protocol version byte (1 for 2019) otherwise.
    version: int | None = None
    encryption: int = 0
    packages: int | None = None
    index: int | None = None
    body_length: int = 0

    @property
    def is_2019(self) -> bool:
        return self.version is not None


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    body: bytes
    #: False when the frame's check code did not match (the content may still be read).
    check_ok: bool = True
    #: Set when the body attributes' length disagrees with the body.
    length_ok: bool = True


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Undo escaping; a 0x7d followed by anything but 0x01/0x02 is an error."""
    if b"\x7d" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == ESC:
            if i + 1 >= n or data[i + 1] not in (1, 2):
                raise FrameError("escape", f"0x7d at offset {i} not followed by 0x01 or 0x02")
            out.append(0x7D if data[i + 1] == 1 else 0x7E)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def checksum(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


def _bcd(data: bytes) -> str:
    return data.hex()


def _to_bcd(digits: str, size: int) -> bytes:
    # Hex nibbles too: an answer carries back the phone exactly as a terminal wrote it.
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"not a number of digits: {digits!r}")
    if len(digits) > size * 2:
        raise ValueError(f"{digits!r} is longer than {size * 2} digits")
    return bytes.fromhex(digits.rjust(size * 2, "0"))


def normalise_phone(phone: str) -> str:
    """A terminal's phone number as bound and looked up: digits, leading zeros dropped."""
    digits = phone.strip().replace(" ", "").replace("-", "")
    if not digits.isdigit() or len(digits) > 20:
        raise ValueError(f"a terminal phone number is up to 20 digits, got {phone!r}")
    return digits.lstrip("0") or "0"


def _read_header(raw: bytes) -> tuple[Header, int]:
    if len(raw) < 12:
        raise FrameError("short", f"{len(raw)} bytes is shorter than any header")
    msg_id, attrs = struct.unpack_from(">HH", raw, 0)
    length = attrs & MAX_BODY
    encryption = (attrs >> 10) & 0x7
    sub = bool(attrs & (1 << 13))
    version: int | None = None
    if attrs & (1 << 14):
        if len(raw) < 17:
            raise FrameError("short", f"{len(raw)} bytes is shorter than a 2019 header")
        version = raw[4]
        phone = _bcd(raw[5:15])
        (serial,) = struct.unpack_from(">H", raw, 15)
        pos = 17
    else:
        phone = _bcd(raw[4:10])
        (serial,) = struct.unpack_from(">H", raw, 10)
        pos = 12
    packages = index = None
    if sub:
        if len(raw) < pos + 4:
            raise FrameError("short", "sub-package header cut short")
        packages, index = struct.unpack_from(">HH", raw, pos)
        pos += 4
    header = Header(msg_id, phone, serial, version, encryption, packages, index, length)
    return header, pos


def decode_frame(frame: bytes) -> Message:
    """One frame (with or without its 0x7e flags) to a message.

    A wrong check code or a length that disagrees with the body does not raise: the message says
    so (``check_ok``, ``length_ok``), so that the caller can still see an emergency in it and
    answer as the standard says. Raises :class:`FrameError` only when no header can be read.
    """
    if frame[:1] == b"\x7e":
        frame = frame[1:]
    if frame[-1:] == b"\x7e":
        frame = frame[:-1]
    raw = unescape(frame)
    if len(raw) < 13:
        raise FrameError("short", f"{len(raw)} bytes is shorter than a header and check code")
    content, check = raw[:-1], raw[-1]
    header, pos = _read_header(content)
    body = content[pos:]
    return Message(
        header, body, check_ok=checksum(content) == check, length_ok=len(body) == header.body_length
    )


def encode_frame(
    msg_id: int,
    phone: str,
    serial: int,
    body: bytes = b"",
    *,
    version: int | None = None,
    packages: int | None = None,
    index: int | None = None,
    corrupt_check: bool = False,
) -> bytes:
    """A complete frame, flags included. ``version`` set makes a 2019 header."""
    if len(body) > MAX_BODY:
        raise ValueError(f"a body is at most {MAX_BODY} bytes; split it into sub-packages")
    attrs = len(body)
    if packages is not None:
        attrs |= 1 << 13
    if version is not None:
        attrs |= 1 << 14
        head = struct.pack(">HHB", msg_id, attrs, version) + _to_bcd(phone, 10)
    else:
        head = struct.pack(">HH", msg_id, attrs) + _to_bcd(phone, 6)
    head += struct.pack(">H", serial & 0xFFFF)
    if packages is not None:
        head += struct.pack(">HH", packages, index or 1)
    content = head + body
    check = checksum(content) ^ (0xFF if corrupt_check else 0)
    return b"\x7e" + escape(content + bytes([check])) + b"\x7e"


class Splitter:
    """Cuts a TCP byte stream into frames between 0x7e flags, with a bound on frame size."""

    def __init__(self, max_frame: int = 4 * (MAX_BODY + 32)) -> None:
        self._buf = bytearray()
        self._max = max_frame
        #: Bytes thrown away: outside any frame, or a frame over the size bound.
        self.discarded = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        while True:
            start = self._buf.find(b"\x7e")
            if start < 0:
                self.discarded += len(self._buf)
                self._buf.clear()
                return frames
            if start:
                self.discarded += start
                del self._buf[:start]
            end = self._buf.find(b"\x7e", 1)
            if end < 0:
                if len(self._buf) > self._max:
                    self.discarded += len(self._buf)
                    self._buf.clear()
                return frames
            if end == 1:
                # Two flags together: the second opens the next frame.
                del self._buf[:1]
                continue
            frames.append(bytes(self._buf[: end + 1]))
            del self._buf[: end + 1]


# -- bodies -------------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    """A fixed or variable text field: GBK, padding NULs and spaces dropped."""
    return data.rstrip(b"\x00").decode("gbk", errors="replace").strip()


@dataclass(frozen=True, slots=True)
class Registration:
    province: int
    city: int
    manufacturer: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str


def decode_registration(body: bytes, *, is_2019: bool = False) -> Registration:
    # 2019: maker 11, model 30, id 30; 2013: 5, 20, 7; 2011: 5, 8, 7.
    if is_2019:
        sizes = (11, 30, 30)
    elif len(body) >= 37:
        sizes = (5, 20, 7)
    else:
        sizes = (5, 8, 7)
    need = 4 + sum(sizes) + 1
    if len(body) < need:
        raise FrameError("length", f"registration body is {len(body)} bytes, needs {need}")
    province, city = struct.unpack_from(">HH", body, 0)
    pos = 4
    fields: list[str] = []
    for size in sizes:
        fields.append(_text(body[pos : pos + size]))
        pos += size
    maker, model, terminal_id = fields
    return Registration(
        province, city, maker, model, terminal_id, body[pos], _text(body[pos + 1 :])
    )


def encode_registration(reg: Registration, *, is_2019: bool = False) -> bytes:
    sizes = (11, 30, 30) if is_2019 else (5, 20, 7)
    out = struct.pack(">HH", reg.province, reg.city)
    for value, size in zip((reg.manufacturer, reg.model, reg.terminal_id), sizes, strict=True):
        out += value.encode("gbk")[:size].ljust(size, b"\x00")
    return out + bytes([reg.plate_colour]) + reg.plate.encode("gbk")


def encode_register_reply(serial: int, result: int, auth_code: str = "") -> bytes:
    body = struct.pack(">HB", serial & 0xFFFF, result)
    return body + (auth_code.encode("gbk") if result == 0 else b"")


def decode_register_reply(body: bytes) -> tuple[int, int, str]:
    if len(body) < 3:
        raise FrameError("length", "registration reply shorter than 3 bytes")
    serial, result = struct.unpack_from(">HB", body, 0)
    return serial, result, _text(body[3:])


@dataclass(frozen=True, slots=True)
class Authentication:
    code: str
    imei: str = ""
    software: str = ""


def decode_authentication(body: bytes, *, is_2019: bool = False) -> Authentication:
    if not is_2019:
        return Authentication(_text(body))
    if not body or len(body) < 1 + body[0]:
        raise FrameError("length", "2019 authentication shorter than its code length")
    n = body[0]
    return Authentication(
        _text(body[1 : 1 + n]), _text(body[1 + n : 16 + n]), _text(body[16 + n : 36 + n])
    )


def encode_authentication(auth: Authentication, *, is_2019: bool = False) -> bytes:
    code = auth.code.encode("gbk")
    if not is_2019:
        return code
    return (
        bytes([len(code)])
        + code
        + auth.imei.encode()[:15].ljust(15, b"\x00")
        + auth.software.encode()[:20].ljust(20, b"\x00")
    )


def encode_general_response(serial: int, msg_id: int, result: int) -> bytes:
    return struct.pack(">HHB", serial & 0xFFFF, msg_id, result)


def decode_general_response(body: bytes) -> tuple[int, int, int]:
    if len(body) < 5:
        raise FrameError("length", f"general response is {len(body)} bytes, needs 5")
    serial, msg_id, result = struct.unpack_from(">HHB", body, 0)
    return serial, msg_id, result


def bcd_time(data: bytes) -> datetime:
    """``YYMMDDhhmmss`` BCD in Beijing time, as an aware UTC datetime."""
    text = data.hex()
    try:
        local = datetime(
            2000 + int(text[0:2]),
            int(text[2:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            tzinfo=BEIJING,
        )
    except ValueError as exc:
        raise FrameError("time", f"not a BCD time: {text}") from exc
    return local.astimezone(UTC)


def _to_bcd_time(at: datetime) -> bytes:
    return bytes.fromhex(at.astimezone(BEIJING).strftime("%y%m%d%H%M%S"))


@dataclass(frozen=True, slots=True)
class Location:
    alarm: int
    status: int
    lat: float
    lon: float
    altitude: int
    speed_kmh: float
    direction: int
    at: datetime
    #: Additional items by id, raw.
    extra: dict[int, bytes] = field(default_factory=dict)

    def has(self, bit: AlarmBit) -> bool:
        return bool(self.alarm >> bit & 1)

    @property
    def fix(self) -> bool:
        """The receiver has a real position fix (status bit 1)."""
        return bool(self.status >> StatusBit.FIX & 1)

    @property
    def emergency(self) -> bool:
        return self.has(AlarmBit.EMERGENCY)

    @property
    def fall(self) -> bool:
        return self.has(AlarmBit.COLLISION) or self.has(AlarmBit.ROLLOVER)

    @property
    def signal(self) -> int | None:
        """Mobile network signal strength (item 0x30)."""
        v = self.extra.get(0x30)
        return v[0] if v and len(v) == 1 else None

    @property
    def satellites(self) -> int | None:
        """GNSS satellites in view (item 0x31)."""
        v = self.extra.get(0x31)
        return v[0] if v and len(v) == 1 else None

    @property
    def battery(self) -> int | None:
        """Battery percent (vendor item 0xFE, one byte; as traccar's Huabao decoder reads it)."""
        v = self.extra.get(0xFE)
        return v[0] if v and len(v) == 1 and v[0] <= 100 else None


_LOCATION_FIXED: Final = struct.Struct(">IIIIHHH6s")


def decode_location(body: bytes) -> Location:
    """A 0x0200 body. Raises :class:`FrameError` if the fixed part is cut short.

    Additional items past a truncated one are ignored (the fixed part is what an alarm needs).
    """
    if len(body) < _LOCATION_FIXED.size:
        raise FrameError(
            "length", f"location body is {len(body)} bytes, needs {_LOCATION_FIXED.size}"
        )
    alarm, status, lat, lon, alt, speed, direction, when = _LOCATION_FIXED.unpack_from(body, 0)
    extra: dict[int, bytes] = {}
    pos = _LOCATION_FIXED.size
    while pos + 2 <= len(body):
        item, size = body[pos], body[pos + 1]
        if pos + 2 + size > len(body):
            break
        extra[item] = body[pos + 2 : pos + 2 + size]
        pos += 2 + size
    lat_deg = lat / 1e6 * (-1 if status >> StatusBit.SOUTH & 1 else 1)
    lon_deg = lon / 1e6 * (-1 if status >> StatusBit.WEST & 1 else 1)
    return Location(
        alarm,
        status,
        lat_deg,
        lon_deg,
        alt if alt < 0x8000 else alt - 0x10000,
        speed / 10,
        direction,
        bcd_time(when),
        extra,
    )


def encode_location(loc: Location) -> bytes:
    status = loc.status & ~(1 << StatusBit.SOUTH | 1 << StatusBit.WEST)
    if loc.lat < 0:
        status |= 1 << StatusBit.SOUTH
    if loc.lon < 0:
        status |= 1 << StatusBit.WEST
    out = _LOCATION_FIXED.pack(
        loc.alarm & 0xFFFFFFFF,
        status & 0xFFFFFFFF,
        round(abs(loc.lat) * 1e6),
        round(abs(loc.lon) * 1e6),
        loc.altitude & 0xFFFF,
        round(loc.speed_kmh * 10) & 0xFFFF,
        loc.direction & 0xFFFF,
        _to_bcd_time(loc.at),
    )
    for item, value in loc.extra.items():
        out += bytes([item, len(value)]) + value
    return out


def decode_batch(body: bytes) -> tuple[int, list[Location]]:
    """A 0x0704 body: (type: 0 normal, 1 blind-area supplement, locations)."""
    if len(body) < 3:
        raise FrameError("length", "batch body shorter than 3 bytes")
    count, kind = struct.unpack_from(">HB", body, 0)
    pos = 3
    locations: list[Location] = []
    for n in range(count):
        if pos + 2 > len(body):
            raise FrameError("length", f"batch says {count} locations, body ends after {n}")
        (size,) = struct.unpack_from(">H", body, pos)
        if pos + 2 + size > len(body):
            raise FrameError("length", f"batch location {n + 1} is cut short")
        locations.append(decode_location(body[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return kind, locations


def encode_batch(locations: list[Location], kind: int = 0) -> bytes:
    out = struct.pack(">HB", len(locations), kind)
    for loc in locations:
        item = encode_location(loc)
        out += struct.pack(">H", len(item)) + item
    return out


def encode_set_params(params: dict[int, int | bytes]) -> bytes:
    """A 0x8103 body: count (1), then per parameter id (4), length (1), value.

    An ``int`` value is sent as a DWORD, as the standard's numeric parameters are.
    """
    if len(params) > 0xFF:
        raise ValueError(f"at most 255 parameters in one message, got {len(params)}")
    out = bytes([len(params)])
    for param, value in params.items():
        if not 0 <= param <= 0xFFFFFFFF:
            raise ValueError(f"parameter id {param:#x} does not fit a DWORD")
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"parameter {param:#06x} value {value} does not fit a DWORD")
            value = struct.pack(">I", value)
        if len(value) > 0xFF:
            raise ValueError(f"parameter {param:#06x} value is {len(value)} bytes, at most 255")
        out += struct.pack(">IB", param, len(value)) + value
    return out


def decode_set_params(body: bytes) -> dict[int, bytes]:
    """A 0x8103 body to parameter id -> raw value; raises :class:`FrameError` if cut short."""
    if not body:
        raise FrameError("length", "parameter body is empty")
    params: dict[int, bytes] = {}
    pos = 1
    for n in range(body[0]):
        if pos + 5 > len(body):
            raise FrameError("length", f"{body[0]} parameters announced, body ends after {n}")
        param, size = struct.unpack_from(">IB", body, pos)
        if pos + 5 + size > len(body):
            raise FrameError("length", f"parameter {param:#06x} is cut short")
        params[param] = body[pos + 5 : pos + 5 + size]
        pos += 5 + size
    return params
