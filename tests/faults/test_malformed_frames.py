"""Scenario 7a: random and mutated frames through every driver's parser, many per parser.

Seeds are the real wire samples kept next to each driver's tests; each frame is random bytes, a
mutated seed (bit flips, cuts, splices, repeats) or a seed with random JSON values, with a
random source, kind and retained flag. The contract (``drivers.base.FrameParser``): a parser
never raises, returns only valid readings, and counts every frame. ``FAULTS_SCALE`` multiplies
the number of frames; a time bound keeps CI honest on a slow machine (the count done is shown).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.home import parse_config
from contract.wire import RawFrame, Reading
from drivers.ble.frames import BTHOME_UUID, encode_advertisement
from drivers.modbus.parser import failed_poll_payload, poll_payload
from drivers.modbus.profiles import Block
from gatewayd.daemon import build_drivers
from tests.faults.harness import scaled
from tests.fixtures.gateway import home_toml

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
#: Wall-clock bound per parser; the frames done are printed and at least MIN_FRAMES must be.
TIME_BOUND_S = 25.0
MIN_FRAMES = 20_000

GAS_AT = "tcp://127.0.0.1:5020/1"

CONFIG = home_toml(
    Path("/nonexistent/state"),
    drivers="""
[[drivers]]
id = "rf"
type = "rflink"
port = "/dev/null"

[[drivers]]
id = "zb"
type = "zigbee2mqtt"
base_topic = "zigbee2mqtt"

[[drivers]]
id = "mb"
type = "modbus"

[[drivers]]
id = "ble"
type = "ble"
""",
    devices=f"""
[[devices]]
id = "smoke-rf"
driver = "rf"
address = "SmokeAlert:123456"
role = "smoke"

[[devices]]
id = "smoke-zb"
driver = "zb"
address = "kitchen_smoke"
role = "smoke"

[[devices]]
id = "gas-mb"
driver = "mb"
address = "{GAS_AT}"
role = "gas"
options = {{ profile = "combustible_gas" }}

[[devices]]
id = "sos-ble"
driver = "ble"
address = "A4:C1:38:8D:18:B2"
role = "sos_button"
""",
)


def _rflink_seeds() -> list[tuple[str, bytes]]:
    text = (TESTS / "rflink" / "protocol_reference_samples.txt").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    lines.append("20;01;SmokeAlert;ID=123456;SMOKEALERT=ON;")
    return [("/dev/rflink", ln.encode()) for ln in lines]


def _zigbee_seeds() -> list[tuple[str, bytes]]:
    data = json.loads((TESTS / "zigbee" / "samples" / "wire_samples.json").read_text())
    seeds = [(f"zigbee2mqtt/{m['topic']}", m["payload"].encode()) for m in data["messages"]]
    seeds.append(("zigbee2mqtt/bridge/devices", data["bridge_devices"].encode()))
    seeds.append(("zigbee2mqtt/kitchen_smoke", b'{"smoke":true,"battery":90,"linkquality":70}'))
    return seeds


def _modbus_seeds() -> list[tuple[str, bytes]]:
    return [
        (GAS_AT, poll_payload([(Block("holding", 0, 4), [0, 30, 1, 0])])),
        (GAS_AT, poll_payload([(Block("holding", 0, 4), [2, 0, 0, 65535])])),
        (GAS_AT, failed_poll_payload("timeout")),
    ]


def _ble_seeds() -> list[tuple[str, bytes]]:
    samples = json.loads((TESTS / "ble" / "fixtures" / "bthome_samples.json").read_text())
    return [
        (
            s["address"],
            encode_advertisement(
                address=s["address"],
                rssi=-60,
                name=None,
                service_data={BTHOME_UUID: bytes.fromhex(s["service_data"])},
                manufacturer_data={},
                service_uuids=[BTHOME_UUID],
                tx_power=None,
            ),
        )
        for s in samples["samples"]
    ]


SEEDS: dict[str, Callable[[], list[tuple[str, bytes]]]] = {
    "rf": _rflink_seeds,
    "zb": _zigbee_seeds,
    "mb": _modbus_seeds,
    "ble": _ble_seeds,
}

_WEIRD: list[Any] = [
    None, True, False, 0, -1, 2**63, 1e308, float("nan"), "", "ON", "\x00", "é" * 300,
    [], {}, [1, [2, [3]]], {"a": {"b": None}},
]  # fmt: skip


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(_WEIRD)
    if roll < 0.75:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["smoke", "battery", "ok", "t", "blocks", "state", "x"]): _random_json(
        rng, depth + 1) for _ in range(rng.randint(0, 4))}  # fmt: skip


def _mutate(rng: random.Random, seed: bytes, seeds: list[tuple[str, bytes]]) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            del data[rng.randrange(len(data)) :]
        elif op == 2:
            data[rng.randrange(len(data) + 1) : 0] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            data += rng.choice(seeds)[1][: rng.randint(0, 64)]
        elif op == 4 and data:
            i = rng.randrange(len(data))
            data[i : i + 1] = data[i : i + 1] * rng.randint(2, 200)
        elif op == 5:
            try:
                doc = json.loads(bytes(data))
            except ValueError:
                continue
            if isinstance(doc, dict) and doc:
                doc[rng.choice(list(doc))] = _random_json(rng)
            data = bytearray(json.dumps(doc).encode())
    return bytes(data)


def _frames(driver: str, rng: random.Random, seeds: list[tuple[str, bytes]], n: int) -> Any:
    sources = [s for s, _ in seeds] + ["", "x" * 512, "zigbee2mqtt/", "tcp://h:1/999", "\x00"]
    for i in range(n):
        roll = rng.random()
        source, seed = rng.choice(seeds)
        if roll < 0.25:
            payload = rng.randbytes(rng.randint(0, 300))
        elif roll < 0.9:
            payload = _mutate(rng, seed, seeds)
        else:
            payload = json.dumps(_random_json(rng)).encode()
        if rng.random() < 0.1:
            source = rng.choice(sources)
        yield RawFrame(
            driver=driver,
            source=source,
            payload=payload[:1_048_576],
            kind="link" if rng.random() < 0.02 else "data",
            retained=rng.random() < 0.1,
            wall_time=T0 + timedelta(seconds=i * 0.01),
            mono_time=1000.0 + i * 0.01,
        )


@pytest.mark.parametrize("driver_id", ["rf", "zb", "mb", "ble"])
def test_random_frames_never_crash_a_parser(driver_id: str) -> None:
    drivers = build_drivers(parse_config(CONFIG))
    parser = drivers[driver_id].create_parser()
    seeds = SEEDS[driver_id]()
    assert seeds
    # The seeds themselves are understood: the fuzzing starts from real, parseable frames.
    seed_parser = drivers[driver_id].create_parser()
    good = sum(
        len(seed_parser.parse(RawFrame(driver=driver_id, source=src, payload=payload,
                                       wall_time=T0, mono_time=1000.0 + i)))
        for i, (src, payload) in enumerate(seeds)
    )  # fmt: skip
    assert good > 0, "no seed gave a reading: the fuzzing would not start from real frames"
    rng = random.Random(driver_id)
    wanted = scaled(100_000, minimum=MIN_FRAMES)
    started = time.monotonic()
    done = readings = 0
    for frame in _frames(driver_id, rng, seeds, wanted):
        out = parser.parse(frame)  # must not raise
        assert isinstance(out, list)
        for reading in out:
            assert isinstance(reading, Reading)
            assert reading.driver == driver_id
        readings += len(out)
        done += 1
        if done % 1000 == 0 and time.monotonic() - started > TIME_BOUND_S:
            break
    elapsed = time.monotonic() - started
    stats = parser.stats
    assert stats.frames >= done, "every frame is counted"
    assert stats.rejected > 0, "malformed frames are counted as rejected, by reason"
    assert done >= min(wanted, MIN_FRAMES)
    print(
        f"\n{driver_id}: {done} frames in {elapsed:.1f} s, {readings} readings, "
        f"{stats.rejected} rejected {dict(list(stats.rejected_by_reason.items())[:6])}"
    )
