"""What a DC-09 message carries: Contact ID (``ADM-CID``) or SIA DC-03 (``SIA-DCS``) data.

``ADM-CID`` data is ``#acct|QEEE GG ZZZ``: qualifier (1 new event, 3 restore, 6 status),
event code, group (partition) and zone. ``SIA-DCS`` data is ``#acct|Nri<area>/<CC><zone>``:
a two-letter SIA event code with the area and zone.

Our event kinds map to both (:func:`cid_for`, :func:`sia_code_for`) and back (:func:`kind_for`),
so the gateway's channel and dispatchd's receiver agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from contract.dc09.frame import Dc09Error
from contract.wire import EventKind

__all__ = [
    "SIA_CODES",
    "ContactIdData",
    "SiaData",
    "cid_for",
    "kind_for",
    "parse_content",
    "sia_code_for",
]

_CID = re.compile(
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})\|)?"
    r"(?P<q>[136])(?P<code>\d{3}) (?P<group>\d{2}) (?P<zone>\d{3})\Z"
)
_SIA = re.compile(
    r"(?:#(?P<acct>[0-9A-Fa-f]{3,16})\|)?N?(?:ti\d{2}:\d{2}/?)?(?:id\d*/?)?"
    r"(?:ri(?P<area>\d*)/?)?(?P<code>[A-Z]{2})(?P<zone>[^\[\]]*)\Z"
)

#: Our kinds as SIA DC-03 codes: (opening code, restore code).
SIA_CODES: Final[dict[EventKind, tuple[str, str]]] = {
    EventKind.SOS: ("QA", "QR"),  # emergency
    EventKind.FALL: ("MA", "MR"),  # medical
    EventKind.SMOKE: ("FA", "FR"),
    EventKind.GAS: ("GA", "GR"),
    EventKind.CARBON_MONOXIDE: ("GA", "GR"),
    EventKind.WATER_LEAK: ("WA", "WR"),
    EventKind.INACTIVITY: ("MA", "MR"),
    EventKind.INTRUSION: ("BA", "BR"),
    EventKind.LEFT_OPEN: ("UA", "UR"),  # untyped zone alarm
    EventKind.LOW_BATTERY: ("XT", "XR"),  # transmitter battery
    EventKind.TAMPER: ("TA", "TR"),
    EventKind.DEVICE_OFFLINE: ("EM", "EN"),  # expansion device missing
    EventKind.GATEWAY_POWER: ("AT", "AR"),
    EventKind.DRIVER_FAULT: ("ET", "ER"),  # expansion trouble
    EventKind.FLAPPING: ("UT", "UR"),
    EventKind.BUFFER_EVICTED: ("YC", "YK"),  # communications fail
    EventKind.HEARTBEAT: ("RP", "RP"),
    EventKind.TEST: ("RX", "RX"),
}
_BY_SIA: Final = {
    **{codes[0]: kind for kind, codes in reversed(SIA_CODES.items())},
    **{codes[1]: kind.restore or kind for kind, codes in reversed(SIA_CODES.items())},
}
_BY_CID: Final = {
    cid.code: kind
    for kind in reversed(EventKind)
    if not kind.is_restore and (cid := kind.contact_id) is not None
}


@dataclass(frozen=True, slots=True)
class ContactIdData:
    qualifier: int
    code: int
    group: int = 1
    zone: int = 0

    def format(self, account: str) -> str:
        return f"#{account}|{self.qualifier}{self.code:03d} {self.group:02d} {self.zone:03d}"


@dataclass(frozen=True, slots=True)
class SiaData:
    code: str
    area: int = 1
    zone: int = 0

    @property
    def is_restore(self) -> bool:
        kind = _BY_SIA.get(self.code)
        return kind is not None and kind.is_restore

    def format(self, account: str) -> str:
        return f"#{account}|Nri{self.area}/{self.code}{self.zone:03d}"


def cid_for(
    kind: EventKind, *, test: bool = False, group: int = 1, zone: int = 0
) -> ContactIdData | None:
    """The Contact ID of an event, or None for a kind that has none. A walk-test event goes as
    601 (manual test), so a receiving centre never takes a test press for an emergency."""
    if test:
        return ContactIdData(1, 601, group, zone)
    cid = kind.contact_id
    return None if cid is None else ContactIdData(cid.qualifier, cid.code, group, zone)


def sia_code_for(
    kind: EventKind, *, test: bool = False, area: int = 1, zone: int = 0
) -> SiaData | None:
    if test:
        return SiaData("RX", area, zone)
    codes = SIA_CODES.get(kind.condition)
    if codes is None:
        return None
    return SiaData(codes[1] if kind.is_restore else codes[0], area, zone)


def kind_for(data: ContactIdData | SiaData) -> EventKind | None:
    """Our kind for received data, or None when we have no kind for that code."""
    if isinstance(data, SiaData):
        return _BY_SIA.get(data.code)
    if data.code in (601, 602):
        # Test reports: a restore qualifier changes nothing about them.
        return _BY_CID.get(data.code)
    kind = _BY_CID.get(data.code)
    if kind is None:
        return None
    if data.qualifier == 3:
        # A restore of a condition we cannot close (no restore kind) is not ours to guess at.
        return kind.restore
    return kind


def parse_content(message_type: str, data: str) -> ContactIdData | SiaData:
    """The event in a message's data block; :class:`Dc09Error` (``content``) if it is none."""
    if message_type == "ADM-CID":
        match = _CID.match(data)
        if match is None:
            raise Dc09Error("content", f"not Contact ID data (#acct|QEEE GG ZZZ): {data[:60]!r}")
        return ContactIdData(
            int(match["q"]), int(match["code"]), int(match["group"]), int(match["zone"])
        )
    if message_type == "SIA-DCS":
        match = _SIA.match(data)
        if match is None:
            raise Dc09Error("content", f"not SIA DC-03 data (#acct|Nri1/CCzzz): {data[:60]!r}")
        zone_text = re.match(r"\d*", match["zone"])
        zone = int(zone_text[0][:4]) if zone_text and zone_text[0] else 0
        area = int(match["area"][:4]) if match["area"] else 0
        return SiaData(match["code"], area, zone)
    raise Dc09Error("content", f"{message_type} messages carry no event")
