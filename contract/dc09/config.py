"""The home config's ``[dc09]`` section: report to standard alarm receivers (docs/dc09.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.dc09.frame import parse_key

__all__ = ["Dc09Config", "Dc09ReceiverConfig"]

_HEX = r"^[0-9A-Fa-f]+$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dc09ReceiverConfig(_Section):
    """One receiver; the first in the list is the primary, the others its backups in order."""

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    transport: Literal["tcp", "udp"] = "tcp"


class Dc09Config(_Section):
    #: The account number the receiving centre knows this home by (3-16 hex digits).
    account: str = Field(min_length=3, max_length=16, pattern=_HEX)
    #: Receiver and line (account prefix) numbers, as the centre assigns them (1-6 hex digits).
    receiver_number: str = Field(default="0", min_length=1, max_length=6, pattern=_HEX)
    line_number: str = Field(default="0", min_length=1, max_length=6, pattern=_HEX)
    #: ``ADM-CID`` (Contact ID, the default) or ``SIA-DCS`` (SIA DC-03 codes).
    format: Literal["ADM-CID", "SIA-DCS"] = "ADM-CID"
    #: AES key as 32, 48 or 64 hex digits (AES-128/192/256); empty: messages go in the clear.
    key: str = Field(default="", repr=False)
    receivers: list[Dc09ReceiverConfig] = Field(min_length=1, max_length=8)
    #: Seconds to wait for an answer, and tries per receiver before the next one is used.
    timeout: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=3, ge=1, le=20)
    #: Seconds between NULL (supervision) messages while idle; 0: none.
    null_interval: float = Field(default=0.0, ge=0, le=86_400)
    #: Ceiling of the wait before starting again at the primary when every receiver failed.
    backoff_max: float = Field(default=60.0, gt=0, le=3600)
    #: Contact ID group (partition) of every event.
    group: int = Field(default=1, ge=0, le=99)
    #: Zone number per device id; a device not listed is its position in [[devices]] plus one.
    zones: dict[str, int] = Field(default_factory=dict)
    #: Also report to dispatchd (dual reporting). False: DC-09 receivers only.
    report_to_dispatchd: bool = True

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if value:
            parse_key(value)
        return value

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 999}
        if bad:
            raise ValueError(f"zone numbers are 0..999; got {bad}")
        return value

    @property
    def key_bytes(self) -> bytes | None:
        return parse_key(self.key) if self.key else None
