"""The JT/T 808 codec on frames from other servers' tests, escaping edges, and fuzz."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import jt808
from tests.wristbands import frames as F


def test_registration_2013_from_traccar() -> None:
    msg = jt808.decode_frame(F.frame(F.REGISTER_2013))
    assert msg.check_ok
    assert msg.length_ok
    assert msg.header.msg_id == jt808.MsgId.REGISTER
    assert not msg.header.is_2019
    assert jt808.normalise_phone(msg.header.phone) == "14130567872"
    reg = jt808.decode_registration(msg.body)
    assert (reg.province, reg.city, reg.manufacturer, reg.model) == (44, 303, "70111", "BSJ-A6-BD")
    assert reg.plate == "粤B88888"


def test_registration_2019_header_from_smallchi() -> None:
    msg = jt808.decode_frame(F.frame(F.REGISTER_2019))
    assert msg.check_ok
    assert msg.length_ok
    assert msg.header.version == 1
    assert msg.header.is_2019
    assert msg.header.serial == 10
    assert jt808.normalise_phone(msg.header.phone) == "123456789"
    reg = jt808.decode_registration(msg.body, is_2019=True)
    assert reg.manufacturer == "00000001234"
    assert reg.terminal_id.endswith("CHI123")
    assert reg.plate == "粤A12345"


def test_authentication_frames() -> None:
    msg = jt808.decode_frame(F.frame(F.AUTHENTICATE))
    assert jt808.decode_authentication(msg.body).code == "authentication"
    msg2 = jt808.decode_frame(F.frame(F.AUTHENTICATE_2))
    assert msg2.header.serial == 12345
    assert jt808.decode_authentication(msg2.body).code == "456121111"


def test_heartbeat_frame() -> None:
    msg = jt808.decode_frame(F.frame(F.HEARTBEAT))
    assert msg.header.msg_id == jt808.MsgId.HEARTBEAT
    assert msg.body == b""
    assert msg.check_ok


def test_location_2019_signal_and_satellites() -> None:
    msg = jt808.decode_frame(F.frame(F.LOCATION_2019))
    loc = jt808.decode_location(msg.body)
    assert msg.header.is_2019
    assert loc.fix
    assert loc.lat == pytest.approx(22.589078)
    assert loc.lon == pytest.approx(113.837718)
    assert loc.signal == 0x19
    assert loc.satellites == 10
    # 2021-09-17 17:25:59 Beijing time.
    assert loc.at == datetime(2021, 9, 17, 9, 25, 59, tzinfo=UTC)


def test_low_battery_alarm_bit_and_battery_item() -> None:
    low = jt808.decode_location(jt808.decode_frame(F.frame(F.LOCATION_LOW_BATTERY)).body)
    assert low.has(jt808.AlarmBit.UNDERVOLTAGE)
    assert not low.emergency
    batt = jt808.decode_location(jt808.decode_frame(F.frame(F.LOCATION_BATTERY_69)).body)
    assert batt.battery == 69


def test_bad_check_code_and_length_are_reported_not_raised() -> None:
    msg = jt808.decode_frame(F.frame(F.LOCATION_BAD_CHECK))
    assert not msg.check_ok
    assert not msg.length_ok
    loc = jt808.decode_location(msg.body)
    assert loc.lat == pytest.approx(22.51488)
    assert loc.lon == pytest.approx(113.916508)


def test_batch_upload_of_eight() -> None:
    msg = jt808.decode_frame(F.frame(F.BATCH))
    kind, locations = jt808.decode_batch(msg.body)
    assert kind == 1
    assert len(locations) == 8
    assert all(loc.fix for loc in locations)
    assert locations[0].lat == pytest.approx(22.639634)
    assert [loc.at for loc in locations] == sorted(loc.at for loc in locations)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"\x7e", b"\x7d\x02"),
        (b"\x7d", b"\x7d\x01"),
        (b"\x7d\x02", b"\x7d\x01\x02"),
        (b"\x7e\x7d\x7e", b"\x7d\x02\x7d\x01\x7d\x02"),
        (b"\x01\x02", b"\x01\x02"),
    ],
)
def test_escaping_edges(raw: bytes, escaped: bytes) -> None:
    assert jt808.escape(raw) == escaped
    assert jt808.unescape(escaped) == raw


@pytest.mark.parametrize("bad", [b"\x7d", b"\x01\x7d", b"\x7d\x03", b"\x7d\x7e"])
def test_bad_escape_is_named(bad: bytes) -> None:
    with pytest.raises(jt808.FrameError) as err:
        jt808.unescape(bad)
    assert err.value.reason == "escape"


def test_splitter_handles_split_and_glued_frames() -> None:
    one = F.frame(F.HEARTBEAT)
    two = F.frame(F.AUTHENTICATE)
    splitter = jt808.Splitter()
    stream = b"noise" + one + two + one
    got: list[bytes] = []
    for i in range(0, len(stream), 3):
        got += splitter.feed(stream[i : i + 3])
    assert got == [one, two, one]
    assert splitter.discarded == len(b"noise")


def test_splitter_bounds_a_frame_that_never_ends() -> None:
    splitter = jt808.Splitter(max_frame=100)
    assert splitter.feed(b"\x7e" + b"\x01" * 200) == []
    assert splitter.discarded == 201
    assert splitter.feed(F.frame(F.HEARTBEAT)) == [F.frame(F.HEARTBEAT)]


def test_sub_package_header_round_trip() -> None:
    data = jt808.encode_frame(0x0704, "13912345678", 7, b"\x00\x01", packages=3, index=2)
    msg = jt808.decode_frame(data)
    assert (msg.header.packages, msg.header.index, msg.body) == (3, 2, b"\x00\x01")
    assert msg.check_ok
    assert msg.length_ok


def test_normalise_phone() -> None:
    assert jt808.normalise_phone("013912345678") == "13912345678"
    assert jt808.normalise_phone("139 1234-5678") == "13912345678"
    with pytest.raises(ValueError, match="20 digits"):
        jt808.normalise_phone("not a phone")


# -- properties ---------------------------------------------------------------------------------

phones = st.from_regex(r"[1-9][0-9]{0,11}", fullmatch=True)


@given(
    msg_id=st.integers(0, 0xFFFF),
    phone=phones,
    serial=st.integers(0, 0xFFFF),
    body=st.binary(max_size=300),
    v2019=st.booleans(),
)
def test_frame_round_trip(msg_id: int, phone: str, serial: int, body: bytes, v2019: bool) -> None:
    data = jt808.encode_frame(msg_id, phone, serial, body, version=1 if v2019 else None)
    assert data.count(b"\x7e") == 2  # escaping leaves flags only at the ends
    msg = jt808.decode_frame(data)
    assert msg.check_ok
    assert msg.length_ok
    assert (msg.header.msg_id, msg.header.serial, msg.body) == (msg_id, serial, body)
    assert jt808.normalise_phone(msg.header.phone) == phone
    assert msg.header.is_2019 is v2019


@given(data=st.binary(max_size=400))
def test_escape_round_trip(data: bytes) -> None:
    escaped = jt808.escape(data)
    assert b"\x7e" not in escaped
    assert jt808.unescape(escaped) == data


@given(noise=st.binary(max_size=600))
def test_decoder_never_crashes_on_noise(noise: bytes) -> None:
    """Anything at all either decodes or raises FrameError; never another exception."""
    for piece in [*jt808.Splitter().feed(noise), noise]:
        try:
            msg = jt808.decode_frame(piece)
        except jt808.FrameError:
            continue
        for decode in (
            jt808.decode_location,
            jt808.decode_batch,
            jt808.decode_registration,
            jt808.decode_authentication,
            jt808.decode_general_response,
            jt808.decode_set_params,
        ):
            with contextlib.suppress(jt808.FrameError):
                decode(msg.body)


@given(
    flip=st.integers(1, 40),
    body=st.binary(min_size=28, max_size=80),
)
def test_one_flipped_byte_is_caught_by_the_check_code(flip: int, body: bytes) -> None:
    data = bytearray(jt808.unescape(jt808.encode_frame(0x0200, "13912345678", 1, body)[1:-1]))
    i = flip % (len(data) - 1)
    data[i] ^= 0x5A
    try:
        msg = jt808.decode_frame(b"\x7e" + jt808.escape(bytes(data)) + b"\x7e")
    except jt808.FrameError:
        return
    assert not msg.check_ok


locations = st.builds(
    jt808.Location,
    alarm=st.integers(0, 0xFFFFFFFF),
    status=st.integers(0, 0xFFFFFFF0),
    lat=st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6),
    lon=st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6),
    altitude=st.integers(-1000, 9000),
    speed_kmh=st.integers(0, 6000).map(lambda v: v / 10),
    direction=st.integers(0, 359),
    at=st.datetimes(
        min_value=datetime(2000, 1, 2), max_value=datetime(2098, 12, 30), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0)),
    extra=st.dictionaries(st.integers(0, 255), st.binary(max_size=20), max_size=5),
)


@given(loc=locations)
def test_location_round_trip(loc: jt808.Location) -> None:
    back = jt808.decode_location(jt808.encode_location(loc))
    assert back.lat == pytest.approx(loc.lat, abs=1e-6)
    assert back.lon == pytest.approx(loc.lon, abs=1e-6)
    assert (back.alarm, back.at, back.altitude, back.direction) == (
        loc.alarm,
        loc.at,
        loc.altitude,
        loc.direction,
    )
    assert back.extra == loc.extra
    assert back.emergency is bool(loc.alarm & 1)


@given(batch=st.lists(locations, max_size=5), kind=st.integers(0, 1))
def test_batch_round_trip(batch: list[jt808.Location], kind: int) -> None:
    got_kind, got = jt808.decode_batch(jt808.encode_batch(batch, kind))
    assert got_kind == kind
    assert [g.at for g in got] == [b.at for b in batch]


def test_a_phone_with_hex_nibbles_is_refused_but_can_be_answered() -> None:
    """Noise may put 0xA-0xF nibbles in the phone: it is no terminal's number, yet the answer
    (message error) carries it back exactly."""
    frame = bytearray(jt808.unescape(jt808.encode_frame(0x0002, "1", 5)[1:-1]))
    frame[9] = 0x0A
    frame[-1] = jt808.checksum(bytes(frame[:-1]))
    msg = jt808.decode_frame(b"\x7e" + jt808.escape(bytes(frame)) + b"\x7e")
    assert msg.header.phone == "00000000000a"
    with pytest.raises(ValueError, match="20 digits"):
        jt808.normalise_phone(msg.header.phone)
    answer = jt808.decode_frame(jt808.encode_frame(0x8001, msg.header.phone, 1, b""))
    assert answer.header.phone == "00000000000a"


# -- set terminal parameters (0x8103) ----------------------------------------------------------


def test_set_params_from_smallchi() -> None:
    msg = jt808.decode_frame(F.frame(F.SET_PARAMS))
    assert msg.check_ok
    assert msg.length_ok
    assert (msg.header.msg_id, msg.header.serial) == (jt808.MsgId.SET_PARAMS, 10)
    params = jt808.decode_set_params(msg.body)
    sizes = {param: len(value) for param, value in params.items()}
    assert sizes == {0x75: 21, 0x76: 27, 0x77: 43, 0x79: 3, 0x7A: 4, 0x7B: 2, 0x7C: 20}
    assert params[0x7A] == b"\x00\x00\x00\x01"
    # Encoding what was decoded gives the same body back, byte for byte.
    assert jt808.encode_set_params(dict(params)) == msg.body


def test_heartbeat_interval_is_a_dword() -> None:
    body = jt808.encode_set_params({jt808.Param.HEARTBEAT_S: 60})
    assert body == bytes.fromhex("01 00000001 04 0000003c")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({0x0001: -1}, "does not fit a DWORD"),
        ({0x0001: 2**32}, "does not fit a DWORD"),
        ({2**32: 1}, "does not fit a DWORD"),
        ({0x0083: b"x" * 256}, "at most 255"),
        ({n: 0 for n in range(256)}, "at most 255 parameters"),
    ],
)
def test_set_params_refuses_what_does_not_fit(params: dict[int, int | bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        jt808.encode_set_params(params)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty"),
        (bytes.fromhex("02 00000001 04 0000003c"), "ends after 1"),
        (bytes.fromhex("01 00000001 04 0000"), "0x0001 is cut short"),
    ],
)
def test_set_params_cut_short_is_named(body: bytes, match: str) -> None:
    with pytest.raises(jt808.FrameError, match=match):
        jt808.decode_set_params(body)


param_values = st.one_of(st.integers(0, 0xFFFFFFFF), st.binary(max_size=255))


@given(params=st.dictionaries(st.integers(0, 0xFFFFFFFF), param_values, max_size=20))
def test_set_params_round_trip(params: dict[int, int | bytes]) -> None:
    back = jt808.decode_set_params(jt808.encode_set_params(params))
    assert list(back) == list(params)
    for param, value in params.items():
        if isinstance(value, int):
            assert int.from_bytes(back[param], "big") == value
            assert len(back[param]) == 4
        else:
            assert back[param] == value


@given(body=st.binary(max_size=300))
def test_set_params_decoder_raises_only_frame_error(body: bytes) -> None:
    with contextlib.suppress(jt808.FrameError):
        params = jt808.decode_set_params(body)
        assert len(params) <= body[0]
