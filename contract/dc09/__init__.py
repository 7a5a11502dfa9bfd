"""SIA DC-09: the alarm-receiving world's IP transport, spoken by the gateway and by dispatchd."""

from contract.dc09.config import Dc09Config, Dc09ReceiverConfig
from contract.dc09.content import (
    SIA_CODES,
    ContactIdData,
    SiaData,
    cid_for,
    kind_for,
    parse_content,
    sia_code_for,
)
from contract.dc09.frame import (
    ANSWER_TYPES,
    MESSAGE_TYPES,
    REASONS,
    Dc09Error,
    Dc09Message,
    crc16,
    decode,
    encode,
    format_timestamp,
    parse_key,
    parse_timestamp,
    split_frames,
)

__all__ = [
    "ANSWER_TYPES",
    "MESSAGE_TYPES",
    "REASONS",
    "SIA_CODES",
    "ContactIdData",
    "Dc09Config",
    "Dc09Error",
    "Dc09Message",
    "Dc09ReceiverConfig",
    "SiaData",
    "cid_for",
    "crc16",
    "decode",
    "encode",
    "format_timestamp",
    "kind_for",
    "parse_content",
    "parse_key",
    "parse_timestamp",
    "sia_code_for",
    "split_frames",
]
