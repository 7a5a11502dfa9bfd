"""SIA DC-09 framing: CRC, length, header, AES-CBC, timestamps. Pure; both ends use it.

A message on the wire (ANSI/SIA DC-09)::

    <LF> CRC 0LLL "id" seq Rrcvr Lpref #acct [data] [xdata]... _HH:MM:SS,MM-DD-YYYY <CR>

``CRC`` is CRC-16/ARC (polynomial 0x8005 reflected, initial 0) over everything from the first
quote to the end of the timestamp, as four upper-case hex digits; ``0LLL`` is the length of the
same span, in hex, with a leading ``0``. An encrypted message has ``*`` before its id, and
everything after ``[`` is the hex of AES-CBC (zero IV) over ``pad|data]xdata_timestamp``; the
pad (characters other than ``|``, ``[`` and ``]``) makes the plaintext a multiple of 16 bytes.

:func:`decode` never raises anything but :class:`Dc09Error`, whose ``reason`` names the problem
(one of :data:`REASONS`), so a receiver can count and log every rejection by reason.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "ANSWER_TYPES",
    "MESSAGE_TYPES",
    "REASONS",
    "Dc09Error",
    "Dc09Message",
    "crc16",
    "decode",
    "encode",
    "format_timestamp",
    "parse_key",
    "parse_timestamp",
    "split_frames",
]

#: Messages a transmitter sends; the receiver answers with one of :data:`ANSWER_TYPES`.
MESSAGE_TYPES: Final = ("SIA-DCS", "ADM-CID", "NULL")
ANSWER_TYPES: Final = ("ACK", "NAK", "DUH", "RSP")
#: Every reason a frame is rejected for.
REASONS: Final = (
    "framing",
    "length",
    "crc",
    "header",
    "encoding",
    "no_key",
    "decrypt",
    "content",
    "timestamp",
)
#: The longest message we accept (the standard's length field has three hex digits).
MAX_BODY: Final = 0xFFF
_IV: Final = bytes(16)
_PAD_ALPHABET: Final = string.ascii_letters + string.digits
_TIMESTAMP_FORMAT: Final = "%H:%M:%S,%m-%d-%Y"

_HEADER = re.compile(
    r'"(?P<star>\*?)(?P<type>SIA-DCS|ADM-CID|NULL|ACK|NAK|DUH|RSP)"'
    r"(?P<seq>\d{4})"
    r"(?:R(?P<receiver>[0-9A-Fa-f]{1,6}))?"
    # Lazy, so that a NAK's "A0" after the line number is read as its account field.
    r"L(?P<line>[0-9A-Fa-f]{1,6}?)"
    r"(?:[#A](?P<account>[0-9A-Fa-f]{1,16}))?"
    r"\[(?P<rest>.*)\Z",
    re.S,
)
_TAIL = re.compile(r"(?P<xdata>(?:\[[^\[\]]*\])*)(?:_(?P<ts>[0-9:,\-]*))?\Z")


class Dc09Error(ValueError):
    """A frame that is not a valid DC-09 message; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Dc09Message:
    """One DC-09 message, decoded (or to be encoded).

    ``data`` is what stands between ``[`` and ``]`` in the clear: for an event, the account
    block and the event (``#1234|1110 01 005``), empty for ``NULL`` and most answers.
    """

    type: str
    sequence: int
    account: str
    line: str = "0"
    receiver: str | None = "0"
    data: str = ""
    xdata: tuple[str, ...] = ()
    timestamp: datetime | None = None
    encrypted: bool = False
    #: The frame's bytes as received (decode only), for logs.
    raw: bytes = field(default=b"", compare=False, repr=False)


def crc16(data: bytes) -> int:
    """CRC-16/ARC as DC-09 defines it (poly 0xA001 reflected, init 0, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def parse_key(text: str) -> bytes:
    """An AES key from its hex form: 32, 48 or 64 hex digits (AES-128, -192, -256)."""
    cleaned = text.strip()
    if len(cleaned) not in (32, 48, 64):
        raise ValueError(
            f"a DC-09 key is 32, 48 or 64 hex digits (AES-128/192/256); got {len(cleaned)} "
            "characters"
        )
    try:
        return bytes.fromhex(cleaned)
    except ValueError as exc:
        raise ValueError("a DC-09 key must be hex digits only (0-9, A-F)") from exc


def format_timestamp(at: datetime) -> str:
    """``HH:MM:SS,MM-DD-YYYY`` in UTC, as DC-09 writes it."""
    return at.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    try:
        return datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise Dc09Error("timestamp", f"not HH:MM:SS,MM-DD-YYYY: {text[:40]!r}") from exc


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    # Imported when a key is used: a gateway that reports in the clear, or not over DC-09 at all,
    # never loads the cryptography library (it is most of a small gateway's memory).
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CBC(_IV))


def _encrypt(key: bytes, plain: str, pad: Callable[[int], str]) -> str:
    # The pad and its '|' separator bring the plaintext to a multiple of the block size.
    fill = 16 - (len(plain) + 1) % 16
    fill = 0 if fill == 16 else fill
    text = f"{pad(fill)}|{plain}".encode("ascii")
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(text) + encryptor.finalize()).hex().upper()


def _random_pad(count: int) -> str:
    return "".join(secrets.choice(_PAD_ALPHABET) for _ in range(count))


def encode(
    message: Dc09Message, *, key: bytes | None = None, pad: Callable[[int], str] = _random_pad
) -> bytes:
    """The frame for ``message``: LF, CRC, length, body, CR. Encrypted when ``key`` is given."""
    if message.type not in MESSAGE_TYPES + ANSWER_TYPES:
        raise ValueError(f"unknown DC-09 message type {message.type!r}")
    if not 0 <= message.sequence <= 9999:
        raise ValueError(f"sequence must be 0..9999, got {message.sequence}")
    star = "*" if key is not None else ""
    receiver = f"R{message.receiver}" if message.receiver is not None else ""
    # A NAK names no account: the standard writes it "A0" ("NAK"0000R0L0A0[]_timestamp).
    if message.type == "NAK":
        account = f"A{message.account or '0'}"
    else:
        account = f"#{message.account}" if message.account else ""
    header = f'"{star}{message.type}"{message.sequence:04d}{receiver}L{message.line}{account}['
    tail = "".join(f"[{x}]" for x in message.xdata)
    if message.timestamp is not None:
        tail += "_" + format_timestamp(message.timestamp)
    clear = f"{message.data}]{tail}"
    body = header + (_encrypt(key, clear, pad) if key is not None else clear)
    if len(body) > MAX_BODY:
        raise ValueError(f"a DC-09 message is at most {MAX_BODY} characters; this is {len(body)}")
    raw = body.encode("ascii")
    return f"\n{crc16(raw):04X}0{len(raw):03X}".encode("ascii") + raw + b"\r"


KeyLookup = Mapping[str, bytes] | Callable[[str], bytes | None]


def _key_for(keys: KeyLookup | None, account: str) -> bytes | None:
    if keys is None:
        return None
    if callable(keys):
        return keys(account)
    return keys.get(account)


def decode(frame: bytes, *, keys: KeyLookup | None = None) -> Dc09Message:
    """Check and decode one frame (with or without its LF and CR).

    ``keys`` gives the AES key of an account (a mapping or a function); an encrypted frame for
    an account without a key is refused (``no_key``). Raises only :class:`Dc09Error`.
    """
    text = _ascii(frame)
    if text.startswith("\n"):
        text = text[1:]
    if text.endswith("\r"):
        text = text[:-1]
    if len(text) < 9:
        raise Dc09Error("framing", f"too short for CRC, length and body ({len(text)} bytes)")
    crc_text, length_text, body = text[:4], text[4:8], text[8:]
    if not _is_hex(crc_text) or not _is_hex(length_text):
        raise Dc09Error("framing", f"CRC and length must be hex, got {text[:8]!r}")
    if int(length_text, 16) != len(body):
        raise Dc09Error(
            "length", f"length field says {int(length_text, 16)}, the message has {len(body)}"
        )
    crc = crc16(body.encode("ascii"))
    if int(crc_text, 16) != crc:
        raise Dc09Error("crc", f"CRC field is {crc_text.upper()}, the message's CRC is {crc:04X}")
    match = _HEADER.match(body)
    if match is None:
        raise Dc09Error("header", f'not "type"seq[Rrcvr]Lpref[#acct][...: {body[:60]!r}')
    account = (match["account"] or "").upper()
    rest = match["rest"]
    encrypted = bool(match["star"])
    if encrypted:
        rest = _decrypt(_key_for(keys, account), account, rest)
    data, _, tail = rest.partition("]")
    if "[" in data or "]" not in rest:
        raise Dc09Error("content", f"the data block is not closed by ']': {rest[:60]!r}")
    tail_match = _TAIL.match(tail)
    if tail_match is None:
        raise Dc09Error("content", f"unexpected text after the data block: {tail[:60]!r}")
    xdata = tuple(x[1:] for x in re.findall(r"\[[^\[\]]*", tail_match["xdata"]))
    ts_text = tail_match["ts"]
    return Dc09Message(
        type=match["type"],
        sequence=int(match["seq"]),
        account=account,
        line=match["line"].upper(),
        receiver=match["receiver"].upper() if match["receiver"] is not None else None,
        data=data,
        xdata=xdata,
        timestamp=parse_timestamp(ts_text) if ts_text else None,
        encrypted=encrypted,
        raw=frame,
    )


def _decrypt(key: bytes | None, account: str, rest: str) -> str:
    if key is None:
        raise Dc09Error("no_key", f"encrypted message for account {account!r}, which has no key")
    if not rest or len(rest) % 32 or not _is_hex(rest):
        raise Dc09Error("decrypt", "the encrypted block is not whole 16-byte blocks of hex")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(bytes.fromhex(rest)) + decryptor.finalize()
    try:
        text = plain.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Dc09Error("decrypt", "the decrypted block is not text: wrong key?") from exc
    if not text.isprintable():
        raise Dc09Error("decrypt", "the decrypted block is not text: wrong key?")
    # The pad ends at the first '|'; a pad without one (some receivers' answers) runs up to ']'.
    bar, close = text.find("|"), text.find("]")
    if close < 0:
        raise Dc09Error("decrypt", "the decrypted block has no ']': wrong key?")
    return text[bar + 1 :] if 0 <= bar < close else text[close:]


def _ascii(frame: bytes) -> str:
    try:
        return frame.decode("ascii")
    except UnicodeDecodeError as exc:
        raise Dc09Error("encoding", f"not ASCII at byte {exc.start}") from exc


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in string.hexdigits for c in text)


def split_frames(stream: bytes) -> tuple[list[bytes], bytes]:
    """Complete frames (LF ... CR) from the front of a TCP byte stream, and the rest.

    Bytes before an LF are noise and dropped; the rest is an unfinished frame.
    """
    frames: list[bytes] = []
    while True:
        start = stream.find(b"\n")
        if start < 0:
            return frames, b""
        end = stream.find(b"\r", start)
        if end < 0:
            return frames, stream[start:]
        frames.append(stream[start : end + 1])
        stream = stream[end + 1 :]
