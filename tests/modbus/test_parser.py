"""The Modbus parser and profiles: register maps from the manuals, changes, offline, fuzzing."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.pdu import DecodePDU

from contract.wire import RawFrame
from drivers.modbus import ModbusDevice, ModbusParser, get_profile, parse_modbus_address
from drivers.modbus.parser import failed_poll_payload, poll_payload
from drivers.modbus.profiles import (
    PROFILES,
    Block,
    Fact,
    Profile,
    ProfileError,
    Registers,
    Table,
)

SAMPLES = json.loads(Path(__file__).with_name("register_samples.json").read_text())
WALL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
GAS_AT = "tcp://10.0.0.5:502/1"
LEAK_AT = "tcp://10.0.0.5:502/2"


def devices(lel_step: float = 5.0) -> list[ModbusDevice]:
    return [
        ModbusDevice(
            "gas-kitchen", parse_modbus_address(GAS_AT), get_profile("combustible_gas"), lel_step
        ),
        ModbusDevice(
            "leak-bath", parse_modbus_address(LEAK_AT), get_profile("water_leak_controller")
        ),
    ]


def frame(source: str, payload: bytes, *, kind: str = "data") -> RawFrame:
    return RawFrame(
        driver="mb", source=source, payload=payload, kind=kind, wall_time=WALL, mono_time=1.0
    )


def gas_frame(values: list[int]) -> RawFrame:
    return frame(GAS_AT, poll_payload([(Block("holding", 0, 4), values)]))


def leak_frame(values: list[int]) -> RawFrame:
    return frame(LEAK_AT, poll_payload([(Block("input", 0, 3), values)]))


def gas_values(status: int, lel: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", lel))
    return [status, 261, high, low]


def facts(parser: ModbusParser, f: RawFrame) -> dict[str, Any]:
    return {r.property: r.value for r in parser.parse(f)}


# -- profiles against the manuals' register maps --------------------------------------------


@pytest.mark.parametrize(
    ("profile", "sample"),
    [(name, s) for name in PROFILES for s in SAMPLES[name]],
    ids=lambda v: v["name"] if isinstance(v, dict) else v,
)
def test_profile_reads_the_manuals_register_map(profile: str, sample: dict[str, Any]) -> None:
    prof = get_profile(profile)
    [block] = prof.blocks
    registers = Registers(
        {(block.table, block.address + i): v for i, v in enumerate(sample["values"])}
    )
    got = {f.property: [f.value, f.extra] for f in prof.decode(registers)}
    assert got == sample["expect"]


@pytest.mark.parametrize("sample", SAMPLES["spec_pdus"], ids=lambda s: s["name"])
def test_spec_example_pdus_become_a_poll_the_parser_reads(sample: dict[str, Any]) -> None:
    response = DecodePDU(False).decode(bytes.fromhex(sample["pdu"]))
    assert response is not None
    assert list(response.registers) == sample["registers"]
    table: Table = "holding" if response.function_code == 3 else "input"
    address = sample["address"]
    # A one-register profile over the block of the spec's example.
    profile = Profile(
        name="spec",
        description="the specification's example",
        blocks=(Block(table, address, len(sample["registers"])),),
        decode=lambda regs: [Fact("gas_concentration", float(regs(table, address)))],
    )
    parser = ModbusParser("mb", [ModbusDevice("dev", parse_modbus_address(GAS_AT), profile)])
    payload = poll_payload([(profile.blocks[0], list(response.registers))])
    assert facts(parser, frame(GAS_AT, payload)) == {
        "available": True,
        "gas_concentration": float(sample["registers"][0]),
    }


def test_unknown_profile_is_named() -> None:
    with pytest.raises(ProfileError, match="combustible_gas, water_leak_controller"):
        get_profile("smoke_panel")


def test_missing_register_is_a_rejected_frame() -> None:
    parser = ModbusParser("mb", devices())
    short = frame(GAS_AT, poll_payload([(Block("holding", 0, 2), [65, 0])]))
    assert parser.parse(short) == []
    assert parser.stats.rejected_by_reason == {"missing_register_holding_2": 1}


# -- changes only ----------------------------------------------------------------------------


def test_gas_alarm_levels_and_restore() -> None:
    parser = ModbusParser("mb", devices())
    first = parser.parse(gas_frame(gas_values(0x0001, 0.0)))
    assert [(r.property, r.value) for r in first] == [
        ("available", True),
        ("gas", False),
        ("fault", False),
        ("gas_concentration", 0.0),
    ]
    assert all(r.device == "gas-kitchen" and r.at == WALL for r in first)
    assert parser.parse(gas_frame(gas_values(0x0001, 0.0))) == []
    alarm1 = parser.parse(gas_frame(gas_values(0x0041, 25.0)))
    assert [(r.property, r.value, r.extra.get("level")) for r in alarm1] == [
        ("gas", True, 1),
        ("gas_concentration", 25.0, None),
    ]
    # Alarm 2 on top of alarm 1: the value stays True but the level is news.
    [alarm2] = parser.parse(gas_frame(gas_values(0x00C1, 27.0)))
    assert (alarm2.property, alarm2.value, alarm2.extra["level"]) == ("gas", True, 2)
    restore = facts(parser, gas_frame(gas_values(0x0001, 0.0)))
    assert restore == {"gas": False, "gas_concentration": 0.0}


def test_concentration_is_reported_by_step() -> None:
    parser = ModbusParser("mb", devices(lel_step=5.0))
    parser.parse(gas_frame(gas_values(0x0001, 10.0)))
    assert facts(parser, gas_frame(gas_values(0x0001, 14.9))) == {}
    assert facts(parser, gas_frame(gas_values(0x0001, 6.0))) == {}
    assert facts(parser, gas_frame(gas_values(0x0001, 15.0))) == {"gas_concentration": 15.0}
    assert facts(parser, gas_frame(gas_values(0x0001, 11.0))) == {}
    assert facts(parser, gas_frame(gas_values(0x0001, 9.9))) == {"gas_concentration": 9.9}


def test_non_finite_concentration_is_refused() -> None:
    parser = ModbusParser("mb", devices())
    high, low = struct.unpack(">HH", struct.pack(">f", math.nan))
    assert parser.parse(gas_frame([0x0041, 0, high, low])) == []
    assert parser.stats.rejected_by_reason == {"concentration_not_finite": 1}


def test_leak_and_cable_break() -> None:
    parser = ModbusParser("mb", devices())
    assert facts(parser, leak_frame([0, 0, 0])) == {
        "available": True,
        "water_leak": False,
        "fault": False,
    }
    [leak] = parser.parse(leak_frame([0x9, 12, 1]))
    assert (leak.property, leak.value, leak.extra) == (
        "water_leak",
        True,
        {"distance": 12, "unit": "ft"},
    )
    assert facts(parser, leak_frame([0xA, 0, 1])) == {"water_leak": False, "fault": True}
    assert facts(parser, leak_frame([0xE, 0, 1])) == {"fault": True}  # contamination is news
    assert facts(parser, leak_frame([0, 0, 1])) == {"fault": False}


# -- offline after N failed polls -----------------------------------------------------------


def test_offline_after_n_failed_polls_and_back() -> None:
    parser = ModbusParser("mb", devices(), offline_after=3)
    parser.parse(leak_frame([0, 0, 0]))
    failed = frame(LEAK_AT, failed_poll_payload("no answer within 2s"))
    assert parser.parse(failed) == []
    assert parser.parse(failed) == []
    [offline] = parser.parse(failed)
    assert (offline.device, offline.property, offline.value) == ("leak-bath", "available", False)
    assert offline.extra == {"error": "no answer within 2s", "failed_polls": 3}
    assert parser.parse(failed) == []  # once per outage
    # Back, and the leak began while it was away.
    back = parser.parse(leak_frame([0x9, 3, 0]))
    assert [(r.property, r.value) for r in back] == [("available", True), ("water_leak", True)]
    assert back[0].extra == {"after_failed_polls": 4}


def test_failures_must_be_consecutive() -> None:
    parser = ModbusParser("mb", devices(), offline_after=2)
    failed = frame(GAS_AT, failed_poll_payload("modbus exception 6 (device busy)"))
    good = gas_frame(gas_values(1, 0.0))
    for f in (good, failed, good, failed, good):
        assert all(r.property != "available" or r.value for r in parser.parse(f))


def test_a_device_never_seen_goes_offline_too() -> None:
    parser = ModbusParser("mb", devices(), offline_after=1)
    [offline] = parser.parse(frame(GAS_AT, failed_poll_payload("cannot connect")))
    assert offline.value is False


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "payload", "reason"),
    [
        ("tcp://10.0.0.9:502/1", b'{"ok":true}', "unknown_device"),
        (GAS_AT, b"\xff\xfe", "not_json"),
        (GAS_AT, b"[1,2]", "not_an_object"),
        (GAS_AT, b'{"ok":"yes"}', "bad_ok_field"),
        (GAS_AT, b'{"ok":true,"blocks":[]}', "no_blocks"),
        (GAS_AT, b'{"ok":true,"blocks":[7]}', "bad_block"),
        (GAS_AT, b'{"ok":true,"blocks":[{"table":"coil","address":0,"values":[1]}]}', "bad_table"),
        (
            GAS_AT,
            b'{"ok":true,"blocks":[{"table":"input","address":-1,"values":[1]}]}',
            "bad_address",
        ),
        (
            GAS_AT,
            b'{"ok":true,"blocks":[{"table":"input","address":true,"values":[1]}]}',
            "bad_address",
        ),
        (GAS_AT, b'{"ok":true,"blocks":[{"table":"input","address":0,"values":[]}]}', "bad_values"),
        (
            GAS_AT,
            b'{"ok":true,"blocks":[{"table":"input","address":0,"values":[70000]}]}',
            "bad_register_value",
        ),
    ],
)
def test_bad_frames_are_counted_by_reason(source: str, payload: bytes, reason: str) -> None:
    parser = ModbusParser("mb", devices())
    assert parser.parse(frame(source, payload)) == []
    assert parser.stats.rejected_by_reason == {reason: 1}
    assert parser.stats.frames == 1


def test_link_frames() -> None:
    parser = ModbusParser("mb", devices())
    [down] = parser.parse(frame("", b"down:gone", kind="link"))
    assert (down.device, down.property, down.value, down.extra) == (
        "mb",
        "link",
        False,
        {"reason": "gone"},
    )
    assert parser.parse(frame("", b"???", kind="link")) == []


# -- never raises ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(payload=st.binary(max_size=600), source=st.sampled_from([GAS_AT, LEAK_AT, "x"]))
def test_arbitrary_bytes_never_raise(payload: bytes, source: str) -> None:
    parser = ModbusParser("mb", devices())
    readings = parser.parse(frame(source, payload))
    assert parser.stats.frames == 1
    assert parser.stats.rejected in (0, 1)
    if readings:
        assert parser.stats.rejected == 0
    assert parser.stats.readings == len(readings)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
_block = st.fixed_dictionaries(
    {
        "table": st.sampled_from(["holding", "input", "coil"]),
        "address": st.integers(-2, 70000) | _json,
        "values": st.lists(st.integers(-1, 70000), max_size=130) | _json,
    }
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {"ok": st.booleans() | _json, "blocks": st.lists(_block | _json, max_size=4) | _json},
        optional={"error": _json},
    ),
    source=st.sampled_from([GAS_AT, LEAK_AT]),
)
def test_arbitrary_json_never_raises(body: dict[str, Any], source: str) -> None:
    parser = ModbusParser("mb", devices(), offline_after=1)
    payload = json.dumps(body).encode()
    for _ in range(2):
        for reading in parser.parse(frame(source, payload)):
            assert reading.device in ("gas-kitchen", "leak-bath")
    assert parser.stats.frames == 2


@settings(max_examples=300, deadline=None)
@given(
    gas=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
    leak=st.lists(st.integers(0, 0xFFFF), min_size=3, max_size=3),
)
def test_any_register_values_give_valid_readings_or_a_counted_refusal(
    gas: list[int], leak: list[int]
) -> None:
    parser = ModbusParser("mb", devices())
    for f in (gas_frame(gas), leak_frame(leak)):
        readings = parser.parse(f)
        for reading in readings:
            if reading.property in ("gas", "fault", "water_leak", "available"):
                assert isinstance(reading.value, bool)
            if reading.property == "gas_concentration":
                assert isinstance(reading.value, float)
                assert math.isfinite(reading.value)
    assert parser.stats.rejected <= 1  # only a non-finite concentration is refused
