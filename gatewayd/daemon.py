"""The gateway daemon: wires drivers, rules, buffer, forwarder and the control socket together.

Start-up order matters: the buffer opens first (so nothing can be lost), the rule engine is seeded
with the conditions the buffer says are still open, then the drivers start, and only then does
systemd hear ``READY=1``. Shutdown runs the other way round and is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import EventBuffer
from contract import __version__
from contract.home import ConfigError, HomeConfig, load_config
from contract.wire import DriverHealth, Event, Heartbeat, Lane, RawFrame
from drivers import registry
from drivers.base import Driver, DriverConfigError, DriverError, LocalCommand
from forwarder.client import Credential, CredentialError, DispatchClient
from forwarder.delivery import Forwarder, HeartbeatSender
from gatewayd.commands.status import one_line_summary
from gatewayd.control import ControlServer, WatchHub
from gatewayd.devicestate import DeviceStates
from gatewayd.pipeline import Pipeline, TraceSink, describe_status
from replay.recorder import Recorder
from rules import RuleConfigError, RuleEngine, load_rules
from rules.decider import Decider
from runtime import sdnotify

__all__ = ["Gateway", "GatewayError", "build_drivers", "credential_path", "validate"]

log = structlog.get_logger(__name__)

#: SIGTERM must be done within this; systemd's TimeoutStopSec is a little longer.
STOP_TIMEOUT_S = 8.0
#: Test mode (a walk test) ends by itself after this, whatever happened to the installer's CLI.
TEST_MODE_LIMIT_S = 3600.0
#: How often a gateway that is not enrolled yet looks for its credential.
ENROLLMENT_POLL_S = 2.0


class GatewayError(Exception):
    """The gateway cannot start: bad config, unusable state folder, ..."""


def credential_path(config: HomeConfig) -> Path:
    return config.gateway.state_dir / "credential.json"


def build_drivers(config: HomeConfig, *, observer: bool = False) -> dict[str, Driver]:
    """Every enabled driver of the config; raises GatewayError naming the problem."""
    try:
        return registry.build_drivers(config, observer=observer)
    except DriverConfigError as exc:
        raise GatewayError(str(exc)) from exc


def validate(config: HomeConfig, text: str | None = None, source: str = "<config>") -> None:
    """Everything a start or reload checks before touching a running gateway."""
    try:
        load_rules(config.rules, source=source, text=text, devices=config.devices)
    except RuleConfigError as exc:
        raise GatewayError(str(exc)) from exc
    build_drivers(config)


class DriverRunner:
    """Runs one driver's transport, restarting it with back-off when it fails."""

    def __init__(self, driver: Driver, submit: Callable[[RawFrame], Any]) -> None:
        self.driver = driver
        self._submit = submit
        self.state = "starting"
        self.detail = ""
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"driver:{self.driver.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "stopped"

    async def _loop(self) -> None:
        backoff = 1.0
        bound = log.bind(driver=self.driver.id)
        while True:
            started = time.monotonic()
            self.state, self.detail = "running", ""
            try:
                await self.driver.run(self._submit)
                raise DriverError("transport returned; it should run until cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                self.state, self.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
                bound.error("driver_failed", error=self.detail, restarts=self.restarts)
                # The failure travels the data path, so the rules raise a driver_fault trouble.
                await self._submit(self.driver.link_frame(False, self.detail))
            if time.monotonic() - started > 60:
                backoff = 1.0
            delay = backoff * random.uniform(0.5, 1.0)
            backoff = min(backoff * 2, 60.0)
            await asyncio.sleep(delay)

    def health(self) -> DriverHealth:
        state = (
            self.state if self.state in ("starting", "running", "failed", "stopped") else "degraded"
        )
        return DriverHealth(
            name=self.driver.id,
            state=state,
            detail=self.detail,
            restarts=self.restarts,
        )


class Gateway:
    """One home's gateway. ``await Gateway(config).run()`` until stopped."""

    def __init__(
        self,
        config: HomeConfig,
        *,
        config_path: Path | None = None,
        drivers: dict[str, Driver] | None = None,
        recorder: TraceSink | None = None,
        tick_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._drivers_override = drivers
        self._recorder_given = recorder
        self.recorder: TraceSink | None = recorder
        self._tick_interval = tick_interval
        self.started_mono = time.monotonic()
        self.log = log.bind(gateway=config.gateway.id)
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.hub = WatchHub()
        self._test_mode_timer: asyncio.TimerHandle | None = None
        self.buffer: AsyncEventBuffer | None = None
        self.pipeline: Pipeline | None = None
        self.runners: dict[str, DriverRunner] = {}
        self.forwarder: Forwarder | None = None
        self.heartbeats: HeartbeatSender | None = None
        self.client: DispatchClient | None = None
        self.devices = DeviceStates(config.devices)

    # -- lifecycle ------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self._start()
            sdnotify.ready(
                f"running: {len(self.runners)} drivers, {len(self.config.devices)} devices"
            )
            self._ready.set()
            self.log.info("gateway_ready", drivers=list(self.runners), version=__version__)
            await self._stop.wait()
        finally:
            sdnotify.stopping()
            await asyncio.wait_for(self._shutdown(), STOP_TIMEOUT_S + 2)

    async def _start(self) -> None:
        cfg = self.config
        state_dir = cfg.gateway.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GatewayError(f"state folder {state_dir} is not usable: {exc}") from exc
        rules = load_rules(cfg.rules, source=str(self.config_path or "<config>"))
        drivers = (
            self._drivers_override if self._drivers_override is not None else build_drivers(cfg)
        )
        if self.recorder is None:
            self.recorder = Recorder.from_config(cfg)
        raw = EventBuffer.open(
            state_dir / "buffer.db",
            gateway_id=cfg.gateway.id,
            disk_budget_bytes=int(cfg.buffer.disk_budget_mib * 2**20),
        )
        self.buffer = AsyncEventBuffer(raw)
        await self.buffer.start()
        engine = RuleEngine(rules, cfg.devices, timezone=cfg.gateway.timezone)
        engine.seed_active(raw.active_conditions())
        self.pipeline = Pipeline(
            engine=engine,
            buffer=self.buffer,
            parsers={driver_id: d.create_parser() for driver_id, d in drivers.items()},
            send_command=self._send_command,
            devices=self.devices,
            recorder=self.recorder,
            tick_interval=self._tick_interval,
            stall_after=cfg.gateway.stall_after_s,
        )
        self.pipeline.add_listener(self._on_event)
        self._spawn(self.pipeline.run(), "pipeline")
        for driver_id, driver in drivers.items():
            runner = DriverRunner(driver, self.pipeline.submit)
            self.runners[driver_id] = runner
            runner.start()
        problem = ""
        try:
            enrolled = await self._start_forwarding()
        except CredentialError as exc:
            # Local alarms still work without dispatch; a good credential is picked up later.
            problem = str(exc)
            self.log.error("credential_unreadable", error=problem)
            enrolled = False
        if not enrolled:
            self._spawn(self._await_enrollment(problem), "enrollment")
        await self._start_control()
        interval = sdnotify.watchdog_interval()
        if interval:
            self._spawn(sdnotify.run_watchdog(self.healthy, interval), "watchdog")
        self._spawn(self._status_loop(), "status")

    async def _await_enrollment(self, last_problem: str = "") -> None:
        """Start forwarding as soon as `gatewayd enroll` has stored a credential: an installer
        enrolls a running gateway, and nothing buffered meanwhile is lost. A credential that
        cannot be used (unreadable by this user, incomplete) is logged once per new problem and
        looked at again, until `gatewayd enroll --force` or a fix of its owner makes it good."""
        path = credential_path(self.config)
        while self.forwarder is None:
            await asyncio.sleep(ENROLLMENT_POLL_S)
            if path.exists():
                try:
                    await self._start_forwarding()
                except (OSError, ValueError, CredentialError) as exc:
                    if str(exc) != last_problem:
                        self.log.error("credential_unreadable", path=str(path), error=str(exc))
                    last_problem = str(exc)

    async def _start_forwarding(self) -> bool:
        cfg = self.config
        path = credential_path(cfg)
        if self.forwarder is not None:
            return True
        if not path.exists():
            self.log.warning(
                "not_enrolled",
                detail="events are kept in the buffer until `gatewayd enroll` is run",
            )
            return False
        assert self.buffer is not None
        assert self.pipeline is not None
        credential = Credential.load(path)
        url = cfg.dispatch.url or credential.dispatch_url
        self.client = DispatchClient(
            url, credential=credential, ca_file=cfg.dispatch.ca_file, timeout=cfg.dispatch.timeout
        )
        pipeline = self.pipeline
        self.forwarder = Forwarder(
            self.buffer,
            self.client,
            max_events=cfg.dispatch.batch_max_events,
            max_bytes=cfg.dispatch.batch_max_bytes,
            backoff_max=cfg.dispatch.backoff_max,
            on_acks=lambda acks: pipeline.acknowledged(
                event.id for event, ack in acks if ack.incident and ack.incident.acknowledged
            ),
        )
        self.heartbeats = HeartbeatSender(
            self.client,
            make_heartbeat=self.make_heartbeat,
            interval=cfg.dispatch.heartbeat_interval,
            on_acknowledged=pipeline.acknowledged,
        )
        self._spawn(self.forwarder.run(), "forwarder")
        self._spawn(self.heartbeats.run(), "heartbeat")
        self.log.info("forwarding", dispatch=url)
        return True

    async def _start_control(self) -> None:
        self.control = ControlServer(self.config.status_socket, self)
        try:
            await self.control.start()
        except OSError as exc:
            # Status is for people; the alarm path does not depend on it.
            self.log.error(
                "control_socket_failed", path=str(self.config.status_socket), error=str(exc)
            )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("task_failed", task=task.get_name(), error=repr(exc))
            # The pipeline and forwarder are essential: without them, stop and let systemd
            # restart us rather than run on silently broken.
            if task.get_name() in ("pipeline", "forwarder"):
                self.request_stop()

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for runner in self.runners.values():
            await runner.stop()
        if self.pipeline is not None:
            try:
                await asyncio.wait_for(self.pipeline.drain(), max(0.5, deadline - time.monotonic()))
            except Exception as exc:
                self.log.error("drain_failed", error=repr(exc))
        if self.recorder is not None and self._recorder_given is None:
            close = getattr(self.recorder, "close", None)
            if callable(close):
                await asyncio.to_thread(close)
        if self.heartbeats is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.heartbeats.send_now(), max(0.2, min(2.0, deadline - time.monotonic()))
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.hub.close()
        control = getattr(self, "control", None)
        if control is not None:
            with contextlib.suppress(Exception):
                await control.aclose()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()
        if self.buffer is not None:
            await self.buffer.aclose()
        self.log.info("gateway_stopped")

    async def reload(self) -> bool:
        """Re-read the config; keep the running one if the new one is bad, and say why."""
        if self.config_path is None:
            return False
        sdnotify.reloading()
        try:
            new = load_config(self.config_path)
            validate(new, self.config_path.read_text(encoding="utf-8"), str(self.config_path))
        except (ConfigError, GatewayError, OSError) as exc:
            self.log.error("reload_refused", path=str(self.config_path), problems=str(exc))
            sdnotify.status(f"reload refused, running on the previous config: {str(exc)[:200]}")
            sdnotify.notify(READY="1")
            return False
        assert self.pipeline is not None
        assert self.buffer is not None
        old_ids = set(self.runners)
        for runner in self.runners.values():
            await runner.stop()
        self.runners.clear()
        drivers = build_drivers(new)
        rules = load_rules(new.rules, source=str(self.config_path))
        engine = RuleEngine(rules, new.devices, timezone=new.gateway.timezone)
        engine.seed_active(self.buffer.buffer.active_conditions())
        self.devices = DeviceStates(new.devices)
        self.pipeline.decider = Decider(
            engine, {driver_id: d.create_parser() for driver_id, d in drivers.items()}, self.devices
        )
        self.config = new
        for driver_id, driver in drivers.items():
            runner = DriverRunner(driver, self.pipeline.submit)
            self.runners[driver_id] = runner
            runner.start()
        self.log.info("reloaded", drivers=sorted(self.runners), previous=sorted(old_ids))
        sdnotify.notify(READY="1", STATUS="running (reloaded)")
        return True

    # -- local actions --------------------------------------------------------------------

    async def _send_command(self, command: LocalCommand) -> None:
        if command.action == "notify":
            await self._notify_secondary(command)
            return
        device = self.config.device(command.device)
        runner = self.runners.get(device.driver) if device else None
        if runner is None:
            self.log.warning("no_driver_for_command", device=command.device, action=command.action)
            return
        done = await runner.driver.send(command)
        self.log.info("local_action", device=command.device, action=command.action, done=done)

    async def _notify_secondary(self, command: LocalCommand) -> None:
        argv = self.config.actions.notify_command
        if not argv:
            self.log.warning("secondary_channel_unconfigured", params=command.params)
            return
        import json

        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
            )
            await asyncio.wait_for(
                proc.communicate(json.dumps(command.params, default=str).encode()), 30
            )
            self.log.info("secondary_channel_notified", returncode=proc.returncode)
        except (OSError, TimeoutError) as exc:
            self.log.error("secondary_channel_failed", error=repr(exc))

    # -- health, status and watchers ------------------------------------------------------

    def healthy(self) -> bool:
        return self.pipeline is not None and self.pipeline.healthy()

    def _on_event(self, event: Event) -> None:
        self.hub.publish(event.model_dump(mode="json"))

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        return self.hub.subscribe()

    async def set_mode(self, mode: str) -> None:
        if self.pipeline is None:
            raise ValueError("the gateway is still starting")
        await self.pipeline.set_mode(mode)
        self.log.info("mode_changed", mode=mode)
        if self._test_mode_timer is not None:
            self._test_mode_timer.cancel()
            self._test_mode_timer = None
        if mode == "test":
            # A walk test killed mid-way must not leave the home without alarms for good.
            self._test_mode_timer = asyncio.get_running_loop().call_later(
                TEST_MODE_LIMIT_S, lambda: asyncio.ensure_future(self._end_test_mode())
            )

    async def _end_test_mode(self) -> None:
        if self.pipeline is not None and self.pipeline.mode == "test":
            self.log.warning("test_mode_expired", after_s=TEST_MODE_LIMIT_S)
            await self.set_mode("normal")

    def make_heartbeat(self) -> Heartbeat:
        now = datetime.now(UTC)
        stats = self.buffer.stats(now) if self.buffer else None
        return Heartbeat(
            gateway_id=self.config.gateway.id,
            sent_at=now,
            uptime_s=time.monotonic() - self.started_mono,
            version=__version__,
            interval_s=self.config.dispatch.heartbeat_interval,
            buffer_depth=dict(stats.depth) if stats else {},
            oldest_unsent_age_s=stats.oldest_unsent_age_s if stats else None,
            evicted_total=stats.evicted_total if stats else 0,
            drivers=[r.health() for r in self.runners.values()],
            devices=[d.health() for d in self.devices.all()[:512]],
        )

    def status(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        stats = self.buffer.stats(now) if self.buffer else None
        fwd = self.forwarder
        return {
            "gateway_id": self.config.gateway.id,
            "household": self.config.gateway.household,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "mode": self.pipeline.mode if self.pipeline else "starting",
            "healthy": self.healthy(),
            "drivers": [
                {
                    "id": r.driver.id,
                    "type": r.driver.type_name,
                    "state": r.state,
                    "detail": r.detail,
                    "restarts": r.restarts,
                    **_driver_extra(r.driver),
                }
                for r in self.runners.values()
            ],
            "devices": [d.as_dict() for d in self.devices.all()],
            "buffer": {
                "depth": {lane.value: (stats.depth.get(lane, 0) if stats else 0) for lane in Lane},
                "oldest_unsent_age_s": stats.oldest_unsent_age_s if stats else None,
                "evicted_total": stats.evicted_total if stats else 0,
                "size_bytes": stats.size_bytes if stats else 0,
            },
            "forwarder": (
                {
                    "enrolled": True,
                    "last_success_at": fwd.status.last_success_at.isoformat()
                    if fwd.status.last_success_at
                    else None,
                    "reachable": fwd.status.reachable,
                    "consecutive_failures": fwd.status.consecutive_failures,
                    "last_error": fwd.status.last_error,
                    "sent_total": fwd.status.sent_total,
                }
                if fwd
                else {
                    "enrolled": False,
                    "reachable": None,
                    "last_success_at": None,
                    "consecutive_failures": 0,
                    "last_error": "not enrolled",
                }
            ),
            "troubles": self._open_troubles(),
            "pipeline": describe_status(self.pipeline) if self.pipeline else {},
        }

    def _open_troubles(self) -> list[dict[str, Any]]:
        if self.pipeline is None:
            return []
        snapshot = self.pipeline.engine.snapshot()
        active = snapshot.get("active", [])
        return [a for a in active if isinstance(a, dict)][:50]

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            try:
                sdnotify.status(one_line_summary(self.status()))
            except Exception:
                self.log.exception("status_summary_failed")


def _driver_extra(driver: Driver) -> dict[str, Any]:
    status = getattr(driver, "status", None)
    if callable(status):
        try:
            extra = status()
            return {"driver_status": extra} if isinstance(extra, dict) else {}
        except Exception:
            return {}
    return {}
