"""The driver plug-in contract.

A driver is two things:

- a **parser** (:class:`FrameParser`): pure and deterministic, frame in, readings out. It may keep
  state (Zigbee2MQTT sends merged state, so the parser turns state into changes), but it does no
  I/O and reads no clock: time comes from the frame. Replay, fuzzing and tests drive the parser.
- a **transport** (:meth:`Driver.run`): a thin async loop that receives raw frames from the
  wire and hands each one to ``emit``. ``emit`` returns a :data:`Durable` future that resolves
  once the frame's outcome is on disk (its events committed, or it decided nothing), so a
  transport whose wire acknowledges (MQTT's PUBACK) acknowledges only then; a sink that keeps
  nothing durable (a test's, a recorder's) returns None. It reports its own link going up or
  down as ``link`` frames (see :func:`link_frame`), so a broker loss travels the same path as
  data and replays the same way. It raises :class:`DriverError` (or anything) when it cannot go
  on; the daemon's supervisor restarts it with back-off and reports a ``driver_fault`` trouble.

A third-party driver registers a :class:`Driver` subclass under the ``gatewayd.drivers``
entry-point group; see :mod:`drivers.registry`.

Exceptions::

    DriverError
     ├── DriverConfigError    the driver's options in the home config are wrong
     └── TransportError       the wire failed (port gone, broker down, device not answering)
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.devices import DeviceSpec, LocalCommand
from contract.parsing import FrameParser, ParseStats
from contract.wire import RawFrame

__all__ = [
    "DeviceSpec",
    "Driver",
    "DriverConfigError",
    "DriverError",
    "DriverOptions",
    "Durable",
    "FrameParser",
    "FrameSink",
    "LocalCommand",
    "ParseStats",
    "TransportError",
    "link_frame",
]


class DriverError(Exception):
    """Base of every driver error."""


class DriverConfigError(DriverError):
    """The driver's options in the home config are wrong."""


class TransportError(DriverError):
    """The wire failed: the port is gone, the broker is down, the device does not answer."""


#: Resolves once the frame's outcome is durable; never fails (see :class:`FrameSink`).
Durable = asyncio.Future[None]
#: Where a transport hands its frames: ``durable = await emit(frame)``.
FrameSink = Callable[[RawFrame], Awaitable[Durable | None]]


class DriverOptions(BaseModel):
    """Base of a driver's own options model; the ``[[drivers]]`` table minus ``id``/``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Driver(abc.ABC):
    """Base class of a driver plug-in.

    Subclasses set :attr:`type_name` and :attr:`options_model`, and implement
    :meth:`create_parser` and :meth:`run`. The constructor validates the options; it must not
    do I/O.
    """

    #: The ``type`` of a ``[[drivers]]`` entry that selects this driver.
    type_name: ClassVar[str]
    options_model: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, driver_id: str, options: dict[str, Any], devices: Sequence[DeviceSpec]):
        self.id = driver_id
        try:
            self.options = self.options_model.model_validate(options)
        except ValidationError as exc:
            raise DriverConfigError(f"driver {driver_id!r}: {_describe(exc)}") from exc
        self.devices = [d for d in devices if d.driver == driver_id]
        self.gateway_id = ""

    @abc.abstractmethod
    def create_parser(self) -> FrameParser:
        """A fresh parser for this driver's frames, configured with its devices."""

    @abc.abstractmethod
    async def run(self, emit: FrameSink) -> None:
        """Receive frames forever and pass each to ``emit``; return only when cancelled.

        Raise on failure; the supervisor restarts the transport with back-off.
        """

    async def send(self, command: LocalCommand) -> bool:
        """Carry out a local output. Returns False when this driver cannot do it."""
        return False

    def bind(self, gateway_id: str, *, observer: bool = False) -> None:
        """Called by the registry before :meth:`run` with the gateway the driver serves.

        A driver whose wire keeps state per client (an MQTT session) derives its identity from
        ``gateway_id``. An ``observer`` (``gatewayd record`` beside the daemon) only watches: it
        must not take over that state. Raises DriverConfigError when the options cannot work.
        """
        self.gateway_id = gateway_id

    def link_frame(self, up: bool, reason: str = "", *, source: str = "") -> RawFrame:
        return link_frame(self.id, up, reason, source=source)


def link_frame(driver: str, up: bool, reason: str = "", *, source: str = "") -> RawFrame:
    """A frame saying the transport's link went up or down (payload ``up``/``down:reason``)."""
    payload = b"up" if up else b"down:" + reason.encode("utf-8", "replace")[:400]
    return RawFrame(
        driver=driver,
        source=source,
        payload=payload,
        kind="link",
        wall_time=datetime.now(UTC),
        mono_time=time.monotonic(),
    )


def data_frame(driver: str, source: str, payload: bytes, *, retained: bool = False) -> RawFrame:
    """A frame of device data, stamped with the wall clock and the monotonic clock now."""
    return RawFrame(
        driver=driver,
        source=source,
        payload=payload,
        retained=retained,
        wall_time=datetime.now(UTC),
        mono_time=time.monotonic(),
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(options)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
