"""`gatewayd test`: the installer's walk test.

Puts the gateway in test mode (alarms are raised as tests and open no incident at dispatch),
lists the home's devices, and ticks each off as its signal arrives while the installer triggers
them in turn: press the SOS button, smoke the detector with test spray, wet the leak sensor, open
the door. Ends when every device has signalled, at ``--timeout``, or on Ctrl-C, with a table of
what passed and what did not, and always puts the gateway back into the mode it was in (``normal``
if that was ``test``).

A device passes on any event of its own raised in test mode: an event of kind ``test`` or one
with ``"test": true``. Output devices (sirens) cannot be triggered by hand and are left out
unless named with ``--device``.

Exit codes: 0 every device passed; 1 some did not (or the test could not finish); 2 bad flags;
3 config unreadable; 4 daemon unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from drivers.base import DeviceSpec
from gatewayd.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gatewayd.commands.daemon_options import (
    config_option,
    fail,
    load_home_config,
    socket_option,
    unreachable,
)
from gatewayd.commands.status import format_age
from gatewayd.control import ControlClient, ControlError, ControlUnavailable
from gatewayd.status import parse_status

__all__ = ["DeviceResult", "WalkTest", "walk_test"]

#: Roles that are outputs: nothing to trigger, so not walked unless asked for by name.
OUTPUT_ROLES = frozenset({"siren"})
_SIGNAL_KEYS = ("signal", "linkquality", "rssi")
#: How long a passed device's line waits for the readings that came with it.
ANNOUNCE_AFTER_S = 0.3


@dataclass
class DeviceResult:
    device: DeviceSpec
    passed_after_s: float | None = None
    via: str = ""
    signal: float | None = None
    battery: float | None = None
    last_seen: datetime | None = None
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="yellow"))

    @property
    def passed(self) -> bool:
        return self.passed_after_s is not None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _first_number(source: Any, keys: tuple[str, ...]) -> float | None:
    if not isinstance(source, dict):
        return None
    for key in keys:
        if (value := _number(source.get(key))) is not None:
            return value
    return None


def _either(first: float | None, second: float | None) -> float | None:
    return first if first is not None else second


def measurements(event: dict[str, Any]) -> tuple[float | None, float | None]:
    """(signal, battery) an event carries, from its payload or the reading behind it."""
    payload = event.get("payload")
    reading = event.get("reading")
    reading = reading if isinstance(reading, dict) else {}
    extra = reading.get("extra")
    signal_ = _either(_first_number(payload, _SIGNAL_KEYS), _first_number(extra, _SIGNAL_KEYS))
    battery = _either(_first_number(payload, ("battery",)), _first_number(extra, ("battery",)))
    # A reading (or a telemetry event) of the quantity itself.
    value = _number(reading.get("value"))
    if value is None and isinstance(payload, dict):
        value = _number(payload.get("value"))
    quantity = reading.get("property") or event.get("kind")
    if value is not None and quantity == "signal":
        signal_ = value
    elif value is not None and quantity == "battery":
        battery = value
    return signal_, battery


def is_test_signal(event: dict[str, Any]) -> bool:
    return event.get("kind") == "test" or event.get("test") is True


class WalkTest:
    """The walk test's state and screen; :meth:`run` drives it against a running gateway."""

    def __init__(
        self,
        client: ControlClient,
        devices: list[DeviceSpec],
        *,
        timeout: float,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.results = {d.id: DeviceResult(d) for d in devices}
        self.timeout = timeout
        self.console = console or Console()
        self.clock = clock
        self.started = clock()
        self.ended_by = ""
        self.restored_mode: str | None = None

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.results.values())

    def handle(self, event: dict[str, Any]) -> DeviceResult | None:
        """Take one watched event; returns the device's result if this event passed it."""
        device_id = event.get("device_id")
        result = self.results.get(device_id) if isinstance(device_id, str) else None
        if result is None:
            return None
        signal_, battery = measurements(event)
        result.signal = signal_ if signal_ is not None else result.signal
        result.battery = battery if battery is not None else result.battery
        if result.passed or not is_test_signal(event):
            return None
        result.passed_after_s = self.clock() - self.started
        result.via = str(event.get("kind") or "")
        return result

    async def run(self) -> bool:
        """Run the walk test; True if every device passed. Always restores the mode."""
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread may handle signals; elsewhere (tests) Ctrl-C is not ours.
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, interrupted.set)
                handled.append(sig)
        try:
            before = parse_status(await self.client.status()).status.mode
            restore = before if before in ("normal", "away") else "normal"
            async with self.client.subscribe() as events:
                try:
                    await self.client.set_mode("test")
                    self.started = self.clock()
                    await self._collect(events, interrupted)
                finally:
                    await self._restore(restore)
            await self._fill_from_status()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
        return self.all_passed

    async def _collect(
        self, events: AsyncIterator[dict[str, Any]], interrupted: asyncio.Event
    ) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lost: list[BaseException] = []

        async def read() -> None:
            try:
                async for event in events:
                    queue.put_nowait(event)
            except ControlError as exc:
                lost.append(exc)
            interrupted.set()

        reader = asyncio.create_task(read())
        interrupt = asyncio.create_task(interrupted.wait())
        # Passed, not yet announced: a device's battery and signal readings come as events of
        # their own right after the one that passed it, so the line waits for them a moment.
        passed: list[DeviceResult] = []
        announce_at = 0.0
        try:
            with Live(
                get_renderable=self._screen,
                console=self.console,
                transient=True,
                refresh_per_second=8,
            ):
                while True:
                    now = self.clock()
                    if passed and now >= announce_at:
                        self._announce_all(passed)
                    remaining = self.timeout - (now - self.started)
                    if self.all_passed and not passed:
                        self.ended_by = "all passed"
                        return
                    if remaining <= 0:
                        self.ended_by = "timeout"
                        return
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, interrupt},
                        timeout=min(remaining, announce_at - now) if passed else remaining,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if getter in done:
                        if (result := self.handle(getter.result())) is not None:
                            if not passed:
                                announce_at = self.clock() + ANNOUNCE_AFTER_S
                            passed.append(result)
                        continue
                    getter.cancel()
                    if interrupt in done:
                        self.ended_by = f"lost gatewayd: {lost[0]}" if lost else "interrupted"
                        return
        finally:
            self._announce_all(passed)
            reader.cancel()
            interrupt.cancel()
            await asyncio.gather(reader, interrupt, return_exceptions=True)

    async def _restore(self, mode: str) -> None:
        try:
            self.restored_mode = await asyncio.shield(self.client.set_mode(mode))
        except ControlError as exc:
            self.console.print(
                f"[bold red]gatewayd could not be switched back to {mode} mode ({exc}). "
                f"It may still be in TEST mode: alarms would open no incident. "
                f"Run: gatewayd mode {mode}[/]"
            )

    async def _fill_from_status(self) -> None:
        """Signal and battery the daemon knows for devices whose events did not carry them."""
        with contextlib.suppress(ControlError):
            status = parse_status(await self.client.status()).status
            for device in status.devices:
                result = self.results.get(device.id or "")
                if result is None:
                    continue
                if result.signal is None:
                    result.signal = device.signal
                if result.battery is None:
                    result.battery = device.battery
                result.last_seen = device.last_seen

    def _announce_all(self, passed: list[DeviceResult]) -> None:
        for result in passed:
            self._announce(result)
        passed.clear()

    def _announce(self, result: DeviceResult) -> None:
        spec = result.device
        self.console.print(
            Text.assemble(
                ("✔ ", "bold green"),
                (spec.id, "bold"),
                (f" ({spec.role}{', ' + spec.room if spec.room else ''})", "dim"),
                f" passed after {result.passed_after_s:.0f} s",
                f", signal {_fmt(result.signal)}, battery {_fmt(result.battery, ' %')}",
            )
        )

    def _screen(self) -> RenderableType:
        passed = sum(r.passed for r in self.results.values())
        left = max(0.0, self.timeout - (self.clock() - self.started))
        head = Text.assemble(
            ("WALK TEST", "bold yellow"),
            f"  trigger each device in turn: {passed} of {len(self.results)} passed, ",
            f"{int(left // 60)}:{int(left % 60):02d} left  (Ctrl-C ends the test)",
        )
        return Group(head, self._table(live=True))

    def _table(self, *, live: bool) -> Table:
        table = Table(title=None if live else "Walk test", title_justify="left")
        columns = ["device", "role", "room", "result", "after", "signal", "battery"]
        if not live:
            columns.append("last heard")
        for column in columns:
            table.add_column(
                column, justify="right" if column in ("after", "signal", "battery") else "left"
            )
        for result in self.results.values():
            spec = result.device
            if result.passed:
                state: RenderableType = Text("✔ passed", "bold green")
            elif live:
                state = result.spinner
            else:
                state = Text("✘ no signal", "bold red")
            cells: list[RenderableType] = [
                spec.id,
                spec.role,
                spec.room or "—",
                state,
                "—" if result.passed_after_s is None else f"{result.passed_after_s:.0f} s",
                _fmt(result.signal),
                _fmt(result.battery, " %"),
            ]
            if not live:
                cells.append(format_age(result.last_seen, datetime.now(UTC)))
            table.add_row(*cells)
        return table

    def report(self) -> None:
        self.console.print(self._table(live=False))
        failed = [r.device.id for r in self.results.values() if not r.passed]
        if failed:
            self.console.print(
                f"[bold red]{len(failed)} of {len(self.results)} devices did not signal "
                f"({self.ended_by}): {', '.join(failed)}[/]"
            )
        else:
            self.console.print(f"[bold green]All {len(self.results)} devices passed.[/]")
        if self.restored_mode is not None:
            self.console.print(f"gatewayd is back in {self.restored_mode} mode.")


def _fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}"


@click.command("test")
@config_option
@socket_option
@click.option(
    "--timeout",
    type=click.FloatRange(1, 4 * 3600),
    default=900,
    show_default=True,
    help="Seconds to wait for all devices before ending the test.",
)
@click.option(
    "--device",
    "only",
    multiple=True,
    metavar="ID",
    help="Test only this device (repeatable); default: every device but outputs.",
)
def walk_test(
    config_path: Path, socket_path: Path | None, timeout: float, only: tuple[str, ...]
) -> None:
    """Walk test: trigger every device of the home in turn and see each one arrive.

    Exit codes: 0 all passed, 1 some did not, 2 bad flags, 3 config, 4 daemon unreachable.
    """
    config = load_home_config(config_path)
    if only:
        known = {d.id: d for d in config.devices}
        unknown = [d for d in only if d not in known]
        if unknown:
            fail(
                f"no device {', '.join(unknown)} in {config_path}; "
                f"devices: {', '.join(known) or '(none)'}",
                EXIT_USAGE,
            )
        devices = [known[d] for d in dict.fromkeys(only)]
    else:
        devices = [d for d in config.devices if d.role not in OUTPUT_ROLES]
    if not devices:
        fail(
            f"{config_path} lists no devices to test; add the home's devices first with "
            f"`gatewayd devices pair --driver DRIVER`",
            EXIT_USAGE,
        )
    walk = WalkTest(ControlClient(socket_path or config.status_socket), devices, timeout=timeout)
    walk.console.print(
        f"Walk test of {len(devices)} devices. The gateway goes into TEST mode: alarms are "
        f"raised as tests and open no incident at dispatch until the test ends."
    )
    try:
        all_passed = asyncio.run(walk.run())
    except ControlUnavailable as exc:
        unreachable(str(exc))
    except ControlError as exc:
        fail(str(exc), EXIT_FAILURE)
    walk.report()
    raise SystemExit(EXIT_OK if all_passed else EXIT_FAILURE)
