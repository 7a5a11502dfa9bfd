"""The gateway daemon: wires drivers, rules, buffer, forwarder and the control socket together.

Start-up order matters: the buffer opens first (so nothing can be lost), the rule engine resumes
from the conditions the buffer says are still open and its memory (see :mod:`gatewayd.memory`),
then the drivers start, and only then does
systemd hear ``READY=1``. Shutdown runs the other way round and is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from buffer.aio import AsyncEventBuffer
from buffer.store import BufferStats, EventBuffer
from contract import __version__
from contract.home import INSECURE_KEY, ConfigError, HomeConfig, insecure_url_problem
from contract.wire import Event, Heartbeat, Lane, Reading
from drivers import registry
from drivers.base import Driver, DriverConfigError, LocalCommand
from forwarder.client import Credential, CredentialError, DispatchClient
from forwarder.dc09 import Dc09Channel
from forwarder.delivery import Forwarder, HeartbeatSender
from gatewayd.config_check import checked_config
from gatewayd.control import ControlServer, WatchHub
from gatewayd.dc09_wiring import (
    DISPATCH_CHANNEL,
    buffer_channels,
    dc09_status,
    make_dc09_channel,
    reports_to_dispatchd,
)
from gatewayd.devicestate import DeviceStates
from gatewayd.memory import MemoryKeeper, resume_engine
from gatewayd.pipeline import Pipeline, TraceSink, describe_status
from gatewayd.status import (
    BufferDepth,
    BufferStatus,
    DriverStatus,
    ForwarderStatus,
    GatewayStatus,
    Trouble,
    describe_detail,
    one_line_summary,
)
from gatewayd.supervisor import DriverRunner
from rules import RuleConfigError, RuleEngine, load_rules
from rules.decider import Decider
from runtime import sdnotify
from runtime.timeouts import within

__all__ = ["Gateway", "GatewayError", "build_drivers", "credential_path"]

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
        self.test_mode_limit_s = TEST_MODE_LIMIT_S
        self.log = log.bind(gateway=config.gateway.id)
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        #: Every task the gateway started, until it ends: none is left to run unobserved.
        self._tasks: set[asyncio.Task[Any]] = set()
        #: One reload at a time: a second one clearing the runners while the first starts new
        #: ones would leave a transport running that nobody stops.
        self._reload_lock = asyncio.Lock()
        self._reload_waiting = False
        self.hub = WatchHub()
        self._test_mode_expiry: asyncio.Task[None] | None = None
        self.buffer: AsyncEventBuffer | None = None
        self.pipeline: Pipeline | None = None
        self.runners: dict[str, DriverRunner] = {}
        self.forwarder: Forwarder | None = None
        self.heartbeats: HeartbeatSender | None = None
        self.client: DispatchClient | None = None
        self.dc09: Dc09Channel | None = None
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
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
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
            await within(self._shutdown(), STOP_TIMEOUT_S + 2)

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
        if self.recorder is None and cfg.record.enabled:
            # Imported only when recording is on: an idle gateway does without it (1 MiB).
            from replay.recorder import Recorder

            self.recorder = Recorder.from_config(cfg)
        raw = EventBuffer.open(
            state_dir / "buffer.db",
            gateway_id=cfg.gateway.id,
            disk_budget_bytes=int(cfg.buffer.disk_budget_mib * 2**20),
        )
        raw.set_channels(buffer_channels(cfg))
        self.buffer = AsyncEventBuffer(raw)
        await self.buffer.start()
        engine = RuleEngine(rules, cfg.devices, timezone=cfg.gateway.timezone)
        resume_engine(engine, raw)
        self.pipeline = Pipeline(
            engine=engine,
            buffer=self.buffer,
            parsers={driver_id: d.create_parser() for driver_id, d in drivers.items()},
            send_command=self._send_command,
            devices=self.devices,
            recorder=self.recorder,
            tick_interval=self._tick_interval,
            stall_after=cfg.gateway.stall_after_s,
            memory=MemoryKeeper(self.buffer),
        )
        self.pipeline.add_caused_listener(self._on_event)
        self._spawn(self.pipeline.run(), "pipeline")
        for driver_id, driver in drivers.items():
            runner = DriverRunner(driver, self.pipeline.submit)
            self.runners[driver_id] = runner
            runner.start()
        self.dc09 = make_dc09_channel(cfg, self.buffer)
        if self.dc09 is not None:
            self._spawn(self.dc09.run(), "dc09")
        problem = ""
        try:
            enrolled = not reports_to_dispatchd(cfg) or await self._start_forwarding()
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
        credential = Credential.load(path)
        url = cfg.dispatch.url or credential.dispatch_url
        # The credential's URL is checked as the config's is: plain http needs the config's word.
        refused = insecure_url_problem(url, allowed=cfg.dispatch.insecure_http, option=INSECURE_KEY)
        if refused:
            raise CredentialError(refused)
        assert self.buffer is not None
        assert self.pipeline is not None
        self.client = DispatchClient(
            url,
            credential=credential,
            ca_file=cfg.dispatch.ca_file,
            timeout=cfg.dispatch.timeout,
            insecure_http=cfg.dispatch.insecure_http,
        )
        pipeline = self.pipeline
        self.forwarder = Forwarder(
            self.buffer,
            self.client,
            max_events=cfg.dispatch.batch_max_events,
            max_bytes=cfg.dispatch.batch_max_bytes,
            backoff_max=cfg.dispatch.backoff_max,
            channel=DISPATCH_CHANNEL,
            on_acks=lambda acks: pipeline.acknowledged(
                event.id for event, ack in acks if ack.incident and ack.incident.acknowledged
            ),
        )
        self.heartbeats = HeartbeatSender(
            self.client,
            make_heartbeat=self.make_heartbeat,
            interval=cfg.dispatch.heartbeat_interval,
            on_acknowledged=pipeline.acknowledged,
            on_away=pipeline.absence,
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

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("task_failed", task=task.get_name(), error=repr(exc))
            # The pipeline and forwarder are essential: without them, stop and let systemd
            # restart us rather than run on silently broken.
            if task.get_name() in ("pipeline", "forwarder", "dc09"):
                self.request_stop()

    async def _shutdown(self) -> None:
        """Stop in the reverse order of the start. Each step is on its own, so one that fails
        is logged and the next still runs; the buffer is closed whatever happened before."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        try:
            # A reload or test-mode expiry finishing now would start what is being stopped.
            await _cancel_all(
                t for t in self._tasks if t.get_name() in ("reload", "test_mode_expiry")
            )
            await self._stopping("drivers", _stop_all(self.runners.values()))
            if self.pipeline is not None:
                budget = max(0.5, deadline - time.monotonic())
                await self._stopping("drain", within(self.pipeline.drain(), budget))
            if self.recorder is not None and self._recorder_given is None:
                close = getattr(self.recorder, "close", None)
                if callable(close):
                    await self._stopping("recorder", asyncio.to_thread(close))
            if self.heartbeats is not None:
                budget = max(0.2, min(2.0, deadline - time.monotonic()))
                await self._stopping("last_heartbeat", within(self.heartbeats.send_now(), budget))
            await _cancel_all(self._tasks)
            self.hub.close()
            control = getattr(self, "control", None)
            if control is not None:
                await self._stopping("control_socket", control.aclose())
            if self.client is not None:
                await self._stopping("dispatch_client", self.client.aclose())
        finally:
            if self.buffer is not None:
                await self.buffer.aclose()
            self.log.info("gateway_stopped")

    async def _stopping(self, step: str, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception as exc:
            self.log.error("shutdown_step_failed", step=step, error=repr(exc))

    def request_reload(self) -> None:
        """SIGHUP: reload once no other reload runs. Signals while one waits are taken into
        that one, which reads the config when its turn comes, so it sees every edit before."""
        if self._stop.is_set() or self._reload_waiting:
            return
        self._reload_waiting = True
        self._spawn(self._reload_in_turn(), "reload")

    async def _reload_in_turn(self) -> None:
        await self._ready.wait()  # a SIGHUP during the start reloads once it is done
        async with self._reload_lock:
            self._reload_waiting = False
            await self._reload()

    async def reload(self) -> bool:
        """Re-read the config; keep the running one if the new one is bad, and say why."""
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        if self.config_path is None:
            return False
        sdnotify.reloading()
        source = str(self.config_path)
        try:
            new = checked_config(self.config_path)
            # Everything is built before anything running is touched: a failure here leaves
            # the home on its running drivers, never on none.
            drivers = build_drivers(new)
            rules = load_rules(new.rules, source=source)
        except (ConfigError, GatewayError, RuleConfigError, OSError) as exc:
            self.log.error("reload_refused", path=source, problems=str(exc))
            sdnotify.status(f"reload refused, running on the previous config: {str(exc)[:200]}")
            sdnotify.notify(READY="1")
            return False
        assert self.pipeline is not None
        assert self.buffer is not None
        engine = RuleEngine(rules, new.devices, timezone=new.gateway.timezone)
        devices = DeviceStates(new.devices)
        decider = Decider(
            engine, {driver_id: d.create_parser() for driver_id, d in drivers.items()}, devices
        )
        previous = sorted(self.runners)
        await _stop_all(self.runners.values())
        self.runners = {}
        self.devices = devices
        # The new rules go on from what the old ones knew (clocks, states, timers), taken with
        # no await before the swap, so no reading falls between the two engines.
        engine.resume(self.buffer.buffer.active_conditions(), self.pipeline.decider.engine.memory())
        self.pipeline.decider = decider
        if new.dc09 != self.config.dc09:
            self.log.warning("dc09_change_needs_restart", detail="[dc09] is read at start")
        self.config = new
        for driver_id, driver in drivers.items():
            runner = DriverRunner(driver, self.pipeline.submit)
            self.runners[driver_id] = runner
            runner.start()
        self.log.info("reloaded", drivers=sorted(self.runners), previous=previous)
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
            await within(proc.communicate(json.dumps(command.params, default=str).encode()), 30)
            self.log.info("secondary_channel_notified", returncode=proc.returncode)
        except (OSError, TimeoutError) as exc:
            self.log.error("secondary_channel_failed", error=repr(exc))

    # -- health, status and watchers ------------------------------------------------------

    def healthy(self) -> bool:
        return self.pipeline is not None and self.pipeline.healthy()

    def _on_event(self, event: Event, reading: Reading | None) -> None:
        if not self.hub.watchers:
            return  # telemetry flows at thousands a second; nobody to tell
        item = event.model_dump(mode="json")
        if reading is not None:
            # The walk test shows the signal and battery a device reported with its event.
            item["reading"] = reading.model_dump(mode="json")
        self.hub.publish(item)

    def watch(self) -> AsyncIterator[dict[str, Any]]:
        return self.hub.subscribe()

    async def set_mode(self, mode: str) -> None:
        if self.pipeline is None:
            raise ValueError("the gateway is still starting")
        await self.pipeline.set_mode(mode)
        self.log.info("mode_changed", mode=mode)
        expiry = self._test_mode_expiry
        if expiry is not None and expiry is not asyncio.current_task():
            expiry.cancel()
        self._test_mode_expiry = None
        if mode == "test" and not self._stop.is_set():
            # A walk test killed mid-way must not leave the home without alarms for good.
            self._test_mode_expiry = self._spawn(self._end_test_mode(), "test_mode_expiry")

    async def _end_test_mode(self) -> None:
        await asyncio.sleep(self.test_mode_limit_s)
        if self.pipeline is not None and self.pipeline.mode == "test":
            self.log.warning("test_mode_expired", after_s=self.test_mode_limit_s)
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
            buffer_full=stats.disk_full if stats else False,
            drivers=[r.health() for r in self.runners.values()],
            devices=[d.health() for d in self.devices.all()[:512]],
        )

    def status(self) -> GatewayStatus:
        now = datetime.now(UTC)
        stats = self.buffer.stats(now) if self.buffer else None
        return GatewayStatus(
            gateway_id=self.config.gateway.id,
            household=self.config.gateway.household,
            version=__version__,
            uptime_s=round(time.monotonic() - self.started_mono, 1),
            mode=self.pipeline.mode if self.pipeline else "starting",
            healthy=self.healthy(),
            drivers=[_runner_status(r) for r in self.runners.values()],
            devices=[d.status() for d in self.devices.all()],
            buffer=BufferStatus(
                depth=BufferDepth(**{lane.value: stats.depth.get(lane, 0) for lane in Lane})
                if stats
                else BufferDepth(),
                oldest_unsent_age_s=stats.oldest_unsent_age_s if stats else None,
                evicted_total=stats.evicted_total if stats else 0,
                size_bytes=stats.size_bytes if stats else 0,
                full=stats.disk_full if stats else None,
                not_durable=stats.not_durable if stats else None,
            ),
            forwarder=self._forwarder_status(),
            dc09=dc09_status(self.dc09),
            troubles=self._open_troubles(stats),
            pipeline=describe_status(self.pipeline) if self.pipeline else None,
        )

    def _forwarder_status(self) -> ForwarderStatus:
        if self.forwarder is None:
            return ForwarderStatus(
                enrolled=False,
                reachable=None,
                last_success_at=None,
                consecutive_failures=0,
                last_error="not enrolled",
            )
        status = self.forwarder.status
        return ForwarderStatus(
            enrolled=True,
            last_success_at=status.last_success_at,
            reachable=status.reachable,
            consecutive_failures=status.consecutive_failures,
            last_error=status.last_error,
            sent_total=status.sent_total,
        )

    def _open_troubles(self, stats: BufferStats | None) -> list[Trouble]:
        troubles: list[Trouble] = []
        if stats is not None and stats.disk_full:
            troubles.append(
                Trouble(
                    kind="buffer_full",
                    detail={
                        "not_durable": stats.not_durable,
                        "telemetry_dropped": self.pipeline.stats.telemetry_dropped
                        if self.pipeline
                        else 0,
                    },
                )
            )
        if self.pipeline is None:
            return troubles
        active = self.pipeline.engine.snapshot().get("active", [])
        troubles += [
            Trouble.model_validate({**a, "detail": _detail_text(a.get("detail"))})
            for a in active
            if isinstance(a, dict)
        ]
        return troubles[:50]

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            try:
                sdnotify.status(one_line_summary(self.status()))
            except Exception:
                self.log.exception("status_summary_failed")


def _detail_text(detail: Any) -> str | None:
    if isinstance(detail, dict):
        return describe_detail(detail) or None
    return detail if isinstance(detail, str) else None


def _runner_status(runner: DriverRunner) -> DriverStatus:
    return DriverStatus(
        id=runner.driver.id,
        type=runner.driver.type_name,
        state=runner.effective_state,
        detail=runner.effective_detail,
        restarts=runner.restarts,
        link_down_since=runner.link_down_since,
        driver_status=_driver_extra(runner.driver),
    )


def _driver_extra(driver: Driver) -> dict[str, Any] | None:
    """What the driver reports of itself, if it does; a failing report is no reason to fail."""
    status = getattr(driver, "status", None)
    if callable(status):
        try:
            extra = status()
            return extra if isinstance(extra, dict) else None
        except Exception:
            return None
    return None


async def _stop_all(runners: Iterable[DriverRunner]) -> None:
    """Stop drivers side by side: a stop takes as long as the slowest, not the sum."""
    async with asyncio.TaskGroup() as group:
        for runner in list(runners):
            group.create_task(runner.stop(), name=f"stop:{runner.driver.id}")


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they are done; their failures were logged as they ended."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
