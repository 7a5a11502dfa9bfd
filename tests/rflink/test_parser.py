"""The RFLink parser with real lines from the protocol reference, and arbitrary bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.wire import RawFrame
from drivers.rflink import RflinkDevice, RflinkParser, parse_address
from drivers.rflink.protocol import LineError, decode_line, is_pong, transmit_command

SAMPLES = Path(__file__).with_name("protocol_reference_samples.txt")
WALL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def sample_lines() -> list[str]:
    return [
        line.rstrip("\n")
        for line in SAMPLES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def frame(payload: bytes | str, at: float = 100.0, *, kind: str = "data") -> RawFrame:
    if isinstance(payload, str):
        payload = payload.encode()
    return RawFrame(
        driver="rf",
        source="/dev/ttyACM0",
        payload=payload,
        kind=kind,
        wall_time=WALL,
        mono_time=at,
    )


def device(id: str, address: str, role: str, **options: str) -> RflinkDevice:
    protocol, rf_id, switch = parse_address(address)
    return RflinkDevice(
        id=id,
        protocol=protocol,
        rf_id=rf_id,
        role=role,
        switch=switch,
        open_switch=options.get("open_switch"),
        closed_switch=options.get("closed_switch"),
    )


def facts(parser: RflinkParser, payload: str, at: float = 100.0) -> list[tuple[str, str, object]]:
    return [(r.device, r.property, r.value) for r in parser.parse(frame(payload, at))]


# -- the protocol reference's own lines -----------------------------------------------------


def test_every_reference_sample_is_accepted() -> None:
    parser = RflinkParser("rf")
    lines = sample_lines()
    # Far apart in time so that no line is taken for a repeat of another.
    for i, line in enumerate(lines):
        parser.parse(frame(line, at=10.0 * i))
    assert parser.stats.frames == len(lines) > 60
    assert parser.stats.rejected == 0, parser.stats.rejected_by_reason


def test_reference_samples_give_the_documented_facts_for_unknown_devices() -> None:
    parser = RflinkParser("rf")
    got = []
    for i, line in enumerate(sample_lines()):
        got.extend(facts(parser, line, at=10.0 * i))
    assert ("Pir:aa66", "motion", True) in got
    assert ("SmokeAlert:123456", "smoke", True) in got
    assert ("Auriol V2:008f", "battery_low", True) in got
    assert ("Auriol:008f", "battery_low", False) in got
    assert ("Kaku:41", "action", "on") in got
    # Weather sensors (TEMP, HUM, RAIN, ...) say nothing in our vocabulary but their battery.
    assert not any(d.startswith("Cresta") for d, _, _ in got)


def test_decode_line_fields_and_body() -> None:
    line = decode_line(b"20;04;NewKaku;ID=000007;SWITCH=2;CMD=SET_LEVEL=14; \r\n")
    assert line.seq == 4
    assert line.name == "NewKaku"
    assert line.fields == {"ID": "000007", "SWITCH": "2", "CMD": "SET_LEVEL=14"}
    assert line.body == "NewKaku;ID=000007;SWITCH=2;CMD=SET_LEVEL=14"
    banner = decode_line(b"20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;")
    assert banner.name == "Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46"
    assert banner.rf_id is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty_line"),
        (b"10;PING;", "not_from_receiver"),
        (b"20;GG;Pir;ID=aa66;PIR=ON;", "bad_counter"),
        (b"20;12;", "too_few_fields"),
        (b"20;12;Pir;ID=aa66;PIR=ON;PIR=OFF;", "repeated_label"),
        (b"20;12;Pir;I D=aa66;", "bad_label"),
        (b"20;12;Pir;ID=\xffaa66;", "not_ascii"),
        (b"20;12;Pir;ID=aa\x0766;", "control_characters"),
        (b"20;12;Pir;ID=" + b"a" * 600 + b";", "line_too_long"),
    ],
)
def test_malformed_lines_are_refused_by_name(payload: bytes, reason: str) -> None:
    with pytest.raises(LineError) as err:
        decode_line(payload)
    assert err.value.reason == reason
    parser = RflinkParser("rf")
    assert parser.parse(frame(payload)) == []
    assert parser.stats.rejected_by_reason == {reason: 1}


def test_debug_pulse_dumps_are_ignored() -> None:
    parser = RflinkParser("rf")
    dump = "20;0A;DEBUG;Pulses=92;Pulses(uSec)=1200,420,390,1230,1230,390;"
    assert parser.parse(frame(dump)) == []
    assert parser.stats.rejected == 0


def test_pong_with_any_counter() -> None:
    assert is_pong(b"20;99;PONG;")
    assert is_pong(b"20;3A;PONG;\r\n")
    assert not is_pong(b"20;99;Pir;ID=aa66;PIR=ON;")
    assert not is_pong(b"garbage")


def test_transmit_command_and_refusals() -> None:
    assert transmit_command("NewKaku", "00c142", "1", "ON") == b"10;NewKaku;00c142;1;ON;\r\n"
    with pytest.raises(ValueError, match="cannot put"):
        transmit_command("New;Kaku", "00c142", "1", "ON")


# -- configured devices and roles -----------------------------------------------------------


def test_configured_devices_by_protocol_and_id_case_insensitively() -> None:
    parser = RflinkParser(
        "rf",
        [
            device("smoke-hall", "smokealert:123456", "smoke"),
            device("pir-hall", "PIR:AA66", "motion"),
        ],
    )
    assert facts(parser, "20;63;SmokeAlert;ID=123456;SMOKEALERT=ON;") == [
        ("smoke-hall", "smoke", True)
    ]
    assert facts(parser, "20;12;Pir;ID=aa66;PIR=ON;") == [("pir-hall", "motion", True)]
    assert facts(parser, "20;13;Pir;ID=aa66;PIR=OFF;", at=200) == [("pir-hall", "motion", False)]
    [reading] = parser.parse(frame("20;64;SmokeAlert;ID=123456;SMOKEALERT=OFF;", at=300))
    assert reading.extra == {"protocol": "SmokeAlert", "rf_id": "123456"}
    assert reading.at == WALL
    assert reading.driver == "rf"


def test_door_contact_from_cmd() -> None:
    parser = RflinkParser("rf", [device("door-front", "NewKaku:cac142", "door")])
    assert facts(parser, "20;3B;NewKaku;ID=cac142;SWITCH=3;CMD=OFF;") == [
        ("door-front", "contact_open", False)
    ]
    assert facts(parser, "20;3C;NewKaku;ID=cac142;SWITCH=3;CMD=ON;", at=200) == [
        ("door-front", "contact_open", True)
    ]


def test_door_contact_from_switch_codes() -> None:
    # Cheap door sensors send one code when opened and another when closed.
    parser = RflinkParser(
        "rf",
        [device("door-back", "EV1527:0abcd", "door", open_switch="0a", closed_switch="0E")],
    )
    assert facts(parser, "20;10;EV1527;ID=0abcd;SWITCH=0a;CMD=ON;") == [
        ("door-back", "contact_open", True)
    ]
    assert facts(parser, "20;11;EV1527;ID=0abcd;SWITCH=0e;CMD=ON;", at=200) == [
        ("door-back", "contact_open", False)
    ]


def test_sos_button_each_press_and_other_commands() -> None:
    # The button's command, each press; whether it is an SOS is for the rules to decide.
    parser = RflinkParser("rf", [device("sos-bed", "Kaku:41", "sos_button")])
    assert facts(parser, "20;06;Kaku;ID=41;SWITCH=1;CMD=ON;") == [("sos-bed", "action", "on")]
    assert facts(parser, "20;07;Kaku;ID=41;SWITCH=1;CMD=ON;", at=110) == [
        ("sos-bed", "action", "on")
    ]
    assert facts(parser, "20;08;Kaku;ID=41;SWITCH=1;CMD=OFF;", at=120) == [
        ("sos-bed", "action", "off")
    ]


@pytest.mark.parametrize(
    ("role", "prop"),
    [("water_leak", "water_leak"), ("gas", "gas"), ("co", "carbon_monoxide"), ("smoke", "smoke")],
)
def test_detector_roles_map_cmd_to_their_property(role: str, prop: str) -> None:
    parser = RflinkParser("rf", [device("det", "Chuango:00a1b2", role)])
    assert facts(parser, "20;20;Chuango;ID=00a1b2;SWITCH=02;CMD=ON;") == [("det", prop, True)]
    assert facts(parser, "20;21;Chuango;ID=00a1b2;SWITCH=02;CMD=OFF;", at=200) == [
        ("det", prop, False)
    ]


def test_device_with_a_switch_matches_only_that_switch() -> None:
    parser = RflinkParser(
        "rf", [device("bed", "Kaku:41:2", "sos_button"), device("remote", "Kaku:41", "other")]
    )
    assert facts(parser, "20;0D;Kaku;ID=41;SWITCH=2;CMD=ON;") == [("bed", "action", "on")]
    assert facts(parser, "20;06;Kaku;ID=41;SWITCH=1;CMD=ON;", at=200) == [
        ("remote", "action", "on")
    ]


def test_battery_with_other_facts() -> None:
    parser = RflinkParser("rf", [device("pir", "Pir:aa66", "motion")])
    assert facts(parser, "20;12;Pir;ID=aa66;PIR=ON;BAT=LOW;") == [
        ("pir", "motion", True),
        ("pir", "battery_low", True),
    ]


@pytest.mark.parametrize("address", ["SmokeAlert", "SmokeAlert:", ":123", "a:b:c:d", ""])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="Protocol:ID"):
        parse_address(address)


def test_receiver_lines_give_nothing_and_are_not_rejected() -> None:
    parser = RflinkParser("rf")
    for line in (
        "20;99;PONG;",
        "20;D3;OK;",
        "20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;",
    ):
        assert parser.parse(frame(line)) == []
    assert parser.stats.rejected == 0


def test_link_frames() -> None:
    parser = RflinkParser("rf")
    [down] = parser.parse(frame(b"down:port failed: EIO", kind="link"))
    assert (down.device, down.property, down.value) == ("rf", "link", False)
    assert down.extra == {"reason": "port failed: EIO"}
    [up] = parser.parse(frame(b"up", kind="link"))
    assert up.value is True
    assert parser.parse(frame(b"sideways", kind="link")) == []
    assert parser.stats.rejected_by_reason == {"bad_link_payload": 1}


# -- repeats ---------------------------------------------------------------------------------


def test_repeats_within_the_window_are_one_packet() -> None:
    parser = RflinkParser(
        "rf", [device("smoke", "SmokeAlert:123456", "smoke")], repeat_window_s=1.0
    )
    got = [
        facts(parser, f"20;{seq:02X};SmokeAlert;ID=123456;SMOKEALERT=ON;", at=t)
        for seq, t in ((1, 10.0), (2, 10.2), (3, 10.5), (4, 10.9))
    ]
    assert got == [[("smoke", "smoke", True)], [], [], []]
    assert parser.duplicates == 3
    # A different packet is never a repeat, however close.
    assert facts(parser, "20;05;SmokeAlert;ID=123456;SMOKEALERT=OFF;", at=10.95) == [
        ("smoke", "smoke", False)
    ]


def test_window_is_anchored_at_the_accepted_copy_so_sos_presses_stay_apart() -> None:
    parser = RflinkParser("rf", [device("sos", "Kaku:41", "sos_button")], repeat_window_s=1.0)
    line = "20;{:02X};Kaku;ID=41;SWITCH=1;CMD=ON;"
    # First press at t=0 repeated every 0.3 s until 0.9; a second press at 1.2 s. A window slid
    # by each repeat (0.9 → 1.2 is 0.3 s) would swallow the second press.
    times = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
    presses = [facts(parser, line.format(i), at=100 + t) for i, t in enumerate(times)]
    assert [bool(p) for p in presses] == [True, False, False, False, True, False]


def test_a_clock_that_went_back_is_not_a_repeat() -> None:
    parser = RflinkParser("rf", [device("sos", "Kaku:41", "sos_button")])
    assert facts(parser, "20;01;Kaku;ID=41;SWITCH=1;CMD=ON;", at=500.0)
    assert facts(parser, "20;02;Kaku;ID=41;SWITCH=1;CMD=ON;", at=3.0)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=1.001, max_value=30.0), min_size=1, max_size=12),
    repeats=st.lists(
        st.lists(st.floats(min_value=0.0, max_value=0.999), max_size=6), min_size=13, max_size=13
    ),
)
def test_sos_presses_further_apart_than_the_window_are_never_merged(
    gaps: list[float], repeats: list[list[float]]
) -> None:
    parser = RflinkParser("rf", [device("sos", "Kaku:41", "sos_button")], repeat_window_s=1.0)
    t, seq, events = 1000.0, 0, []
    for i, gap in enumerate([0.0, *gaps]):
        t += gap
        # Each press is sent once and repeated within the window, before the next press.
        limit = gaps[i] if i < len(gaps) else 1.0
        events.append(t)
        events.extend(t + r for r in repeats[i] if r < limit)
    readings = 0
    for at in sorted(events):
        seq = (seq + 1) % 256
        readings += len(parser.parse(frame(f"20;{seq:02X};Kaku;ID=41;SWITCH=1;CMD=ON;", at)))
    assert readings == len(gaps) + 1


# -- never raises ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=700))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    parser = RflinkParser("rf", [device("sos", "Kaku:41", "sos_button")])
    readings = parser.parse(frame(payload))
    assert parser.stats.frames == 1
    assert parser.stats.rejected in (0, 1)
    if parser.stats.rejected:
        assert readings == []
    assert parser.stats.readings == len(readings)
    assert sum(parser.stats.rejected_by_reason.values()) == parser.stats.rejected


_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40)


@settings(max_examples=500, deadline=None)
@given(
    name=_text,
    fields=st.lists(st.tuples(_text, _text), max_size=6),
    seq=st.text(alphabet="0123456789ABCDEFabcdefXZ", min_size=1, max_size=3),
    kind=st.sampled_from(["data", "link"]),
)
def test_line_shaped_input_never_raises(
    name: str, fields: list[tuple[str, str]], seq: str, kind: str
) -> None:
    parser = RflinkParser(
        "rf", [device("sos", "Kaku:41", "sos_button"), device("door", "X:1", "door")]
    )
    body = ";".join(f"{k}={v}" for k, v in fields)
    payload = f"20;{seq};{name};{body};".encode()
    for readings in (parser.parse(frame(payload, kind=kind)), parser.parse(frame(payload))):
        for reading in readings:
            assert reading.driver == "rf"
            assert 0 < len(reading.device) <= 128
    assert parser.stats.frames == 2
