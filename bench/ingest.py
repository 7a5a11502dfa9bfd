"""Gateway ingest: readings per second through the Zigbee driver, parser, rules and durable buffer.

    python -m bench.ingest [--quick] [--duration S]

Everything real: Zigbee2MQTT-format messages from a lean publisher process (:mod:`bench.mqtt_flood`)
through the broker on 127.0.0.1:1883 into the gateway (the real :class:`~gatewayd.daemon.Gateway`
in this process: its Zigbee driver, :class:`~gatewayd.pipeline.Pipeline`, rule engine and an
:class:`~buffer.aio.AsyncEventBuffer` on disk, logging at its default INFO level to a
file). Every door message flips a contact (a ``contact`` telemetry event, committed); one
message in 500 is a smoke alarm or its restore (committed with ``synchronous=FULL``: the run
counts the FULL transactions to show the alarms were fsync'd). The gateway is not enrolled, so
events stay in its buffer (disk budget raised so that eviction is not what is measured).

The limit, measured in the same run: a bare aiomqtt client, subscribed like the driver (QoS 1,
``BASE/#``), receiving the same publisher's messages from the same broker. Both consumers are
measured at their own sustained rate: the publisher pauses whenever a consumer's backlog passes
20,000 messages. Goal: 20,000 readings/s, and at least half the bare client's message rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from bench.common import Report
from bench.home import ZigbeeDevice, zigbee_home_toml
from bench.mqtt_flood import Flood, contact_name, smoke_name, start
from runtime.timeouts import within

BROKER = ("127.0.0.1", 1883)
READINGS_GOAL = 20_000.0
CONTACTS = 200
SMOKES = 200
ALARM_EVERY = 500
WINDOW = 20_000


async def _pace(flood: Flood, taken: Callable[[], int], stop: asyncio.Event) -> None:
    """Pause the publisher while the consumer is more than WINDOW messages behind."""
    while not stop.is_set():
        backlog = flood.sent.value - taken()
        if backlog > WINDOW:
            flood.pause.set()
        elif backlog < WINDOW // 2:
            flood.pause.clear()
        await asyncio.sleep(0.005)


def _flood(base_topic: str, duration: float) -> Flood:
    return start(
        base_topic=base_topic,
        contacts=CONTACTS,
        smokes=SMOKES,
        alarm_every=ALARM_EVERY,
        duration_s=duration + 5,
        max_count=int(duration * 200_000),
    )


async def bare_client_rate(duration: float) -> dict[str, float]:
    base_topic = f"bench-ingest-bare-{uuid.uuid4().hex[:8]}"
    received = 0
    async with aiomqtt.Client(*BROKER) as client:
        await client.subscribe(f"{base_topic}/#", qos=1)
        flood = _flood(base_topic, duration)
        stop = asyncio.Event()
        pacer = asyncio.create_task(_pace(flood, lambda: received, stop))
        try:
            await asyncio.to_thread(time.sleep, 1.0)  # the publisher connects
            flood.begin()
            t0 = end = 0.0
            start_count = 0
            async for _ in client.messages:
                received += 1
                if received == 1:
                    t0 = time.perf_counter()
                    start_count = 1
                    end = t0 + duration
                elif received % 256 == 0 and time.perf_counter() >= end:
                    break
            elapsed = time.perf_counter() - t0
        finally:
            stop.set()
            await pacer
            flood.stop()
    return {"messages_per_s": (received - start_count) / elapsed, "messages": received}


@contextlib.contextmanager
def _count_transactions(raw: Any) -> Iterator[dict[str, int]]:
    """Count the buffer's transactions by their ``synchronous`` mode (observation only)."""
    counts = {"FULL": 0, "NORMAL": 0}
    original = raw._transaction

    def counting(synchronous: str) -> Any:
        counts[synchronous] = counts.get(synchronous, 0) + 1
        return original(synchronous)

    raw._transaction = counting
    try:
        yield counts
    finally:
        raw._transaction = original


async def gateway_rate(workdir: Path, duration: float) -> dict[str, float]:
    from contract.home import load_config
    from firmware_sim.zigbee2mqtt import SimDevice, Zigbee2MqttBridge
    from gatewayd.daemon import Gateway
    from runtime.logs import configure_logging

    configure_logging(level="INFO", json=True)
    handler = logging.FileHandler(workdir / "gateway.log")
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().handlers[:] = [handler]

    base_topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    devices = [
        ZigbeeDevice(f"door-{i:04d}", contact_name(i), "MCCGQ11LM", "door", f"0x00158d01{i:08x}")
        for i in range(CONTACTS)
    ] + [
        ZigbeeDevice(f"smoke-{i:04d}", smoke_name(i), "HS1SA", "smoke", f"0x00124b01{i:08x}")
        for i in range(SMOKES)
    ]
    state_dir = workdir / "gateway"
    config_path = workdir / "home.toml"
    config_path.write_text(
        zigbee_home_toml(
            gateway_id="gw-bench-ingest",
            household="hh-bench-ingest",
            state_dir=state_dir,
            dispatch_url="http://127.0.0.1:9",
            broker=BROKER,
            base_topic=base_topic,
            devices=devices,
        )
        + "\n[buffer]\ndisk_budget_mib = 8192\n"
    )
    config = load_config(config_path)
    sims = [SimDevice(d.name, d.model, d.ieee) for d in devices]
    # The bridge runs in this process only to publish the inventory: were it to read the flood
    # too (Zigbee2MQTT subscribes to BASE/#), it would take half of the gateway's process.
    async with Zigbee2MqttBridge(
        host=BROKER[0],
        port=BROKER[1],
        base_topic=base_topic,
        devices=sims,
        subscriptions=("bridge/request/#", "+/set"),
    ) as bridge:
        await bridge.wait_connected()
        gateway = Gateway(config, config_path=config_path)
        task = asyncio.create_task(gateway.run())
        try:
            await within(gateway.wait_ready(), 30)
            driver: Any = gateway.runners["zigbee"].driver
            await within(driver.wait_connected(), 30)
            await asyncio.sleep(2.0)  # the inventory and the bridge's own messages settle
            pipeline = gateway.pipeline
            assert pipeline is not None
            assert gateway.buffer is not None
            raw = gateway.buffer.buffer
            base_frames = pipeline.stats.frames
            flood = _flood(base_topic, duration)
            stop = asyncio.Event()
            pacer = asyncio.create_task(
                _pace(flood, lambda: pipeline.stats.frames - base_frames, stop)
            )
            with _count_transactions(raw) as modes:
                try:
                    await asyncio.to_thread(time.sleep, 1.0)
                    flood.begin()
                    while pipeline.stats.frames == base_frames:  # noqa: ASYNC110 (a counter, no event)
                        await asyncio.sleep(0.001)
                    t0 = time.perf_counter()
                    first = _sample(gateway)
                    await asyncio.sleep(duration)
                    last = _sample(gateway)
                    elapsed = time.perf_counter() - t0
                finally:
                    stop.set()
                    await pacer
                    flood.stop()
            sent = flood.sent.value
        finally:
            gateway.request_stop()
            with contextlib.suppress(Exception):
                await within(task, 20)
    delta = {k: last[k] - first[k] for k in first}
    return {
        "readings_per_s": delta["readings"] / elapsed,
        "frames_per_s": delta["frames"] / elapsed,
        "events_per_s": delta["events"] / elapsed,
        "alarms": delta["alarms"],
        "commits": delta["commits"],
        "full_commits": modes["FULL"],
        "normal_commits": modes["NORMAL"],
        "engine_errors": delta["engine_errors"],
        "sent": sent,
    }


def _sample(gateway: Any) -> dict[str, float]:
    pipeline = gateway.pipeline
    return {
        "frames": pipeline.stats.frames,
        "readings": pipeline.decider.readings,
        "events": pipeline.stats.events,
        "alarms": pipeline.stats.alarms,
        "commits": gateway.buffer.buffer.commits,
        "engine_errors": pipeline.decider.engine_errors,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 s instead of 60 s")
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv)
    duration = args.duration or (10.0 if args.quick else 60.0)
    report = Report("ingest")
    bare = asyncio.run(bare_client_rate(min(duration, 10.0)))
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        gw = asyncio.run(gateway_rate(Path(tmp), duration))
    limit = bare["messages_per_s"]
    report.add(
        "gateway readings/s", gw["readings_per_s"], "readings/s", goal=f">= {READINGS_GOAL:,.0f}"
    )
    report.add(
        "gateway messages/s",
        gw["frames_per_s"],
        "messages/s",
        limit,
        "bare aiomqtt client messages/s",
        goal=">= 0.5x limit",
    )
    report.add("gateway events committed/s", gw["events_per_s"], "events/s")
    report.add("bare aiomqtt client messages/s", limit, "messages/s")
    report.notes.append(
        f"{duration:.0f} s sustained; {gw['alarms']:.0f} alarms/restores in the window, "
        f"{gw['full_commits']} fsync'd (FULL) and {gw['normal_commits']} NORMAL buffer "
        f"transactions; {gw['commits']:.0f} commits; engine errors {gw['engine_errors']:.0f}; "
        f"readings per message {gw['readings_per_s'] / max(gw['frames_per_s'], 1):.2f}"
    )
    if gw["readings_per_s"] < READINGS_GOAL:
        report.notes.append(
            f"GOAL MISSED: {gw['readings_per_s']:,.0f} readings/s < {READINGS_GOAL:,.0f}"
        )
    if gw["frames_per_s"] < 0.5 * limit:
        report.notes.append(
            f"GOAL MISSED: gateway {gw['frames_per_s']:,.0f} messages/s < half the bare "
            f"client's {limit:,.0f}"
        )
    if gw["alarms"] and not gw["full_commits"]:
        report.notes.append("alarms were committed without a FULL transaction: investigate")
    report.print()


if __name__ == "__main__":
    main()
