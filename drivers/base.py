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

A driver may also pair devices (:meth:`Driver.pairing`, see :mod:`drivers.pairing`): find a new
device and say what it is, so ``gatewayd devices pair`` needs to know nothing of the driver.

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
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from contract.devices import DeviceSpec, LocalCommand
from contract.parsing import FrameParser, FrameRejected, ParseStats
from contract.trusted import make_frame, make_reading
from contract.wire import RawFrame, Reading

if TYPE_CHECKING:
    from drivers.pairing import Pairing

__all__ = [
    "DeviceSpec",
    "Driver",
    "DriverConfigError",
    "DriverError",
    "DriverOptions",
    "Durable",
    "FrameParser",
    "FrameRejected",
    "FrameSink",
    "LocalCommand",
    "ParseStats",
    "ParserBase",
    "TransportError",
    "link_frame",
]


log = structlog.get_logger(__name__)


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

    def _ensure_not_above(self, lower: str, upper: str) -> None:
        """Raise ValueError naming both options when ``lower`` exceeds ``upper``."""
        low, high = getattr(self, lower), getattr(self, upper)
        if low > high:
            raise ValueError(f"{lower} ({low}) must not exceed {upper} ({high})")


class ParserBase(abc.ABC):
    """What every parser does around its own decoding: count frames and readings, turn a link
    frame into a ``link`` reading, build readings, and refuse a bad frame with a reason that is
    counted always and logged the first time it is seen. A subclass decodes data frames in
    :meth:`parse_data` and raises :class:`FrameRejected` (or a subclass) for what it refuses.
    """

    #: The log event of a refused frame (``<driver>_frame_rejected``).
    rejected_event: ClassVar[str]

    def __init__(self, driver_id: str) -> None:
        self.driver_id = driver_id
        self.stats = ParseStats()

    def parse(self, frame: RawFrame) -> list[Reading]:
        self.stats.frames += 1
        try:
            readings = self.parse_link(frame) if frame.kind == "link" else self.parse_data(frame)
        except FrameRejected as exc:
            self.reject(exc.reason, frame)
            return []
        except Exception as exc:  # the parser must never take the pipeline down
            self.reject(f"internal_error_{type(exc).__name__}", frame, error=repr(exc))
            return []
        self.stats.readings += len(readings)
        return readings

    @abc.abstractmethod
    def parse_data(self, frame: RawFrame) -> list[Reading]:
        """The readings of one data frame; raise FrameRejected for a frame to refuse."""

    def parse_link(self, frame: RawFrame) -> list[Reading]:
        """``up`` or ``down:reason`` (see :func:`link_frame`) as a ``link`` reading."""
        text = frame.payload.decode("utf-8", "replace")
        up = text == "up"
        if not up and not text.startswith("down"):
            raise FrameRejected("bad_link_payload")
        extra: dict[str, Any] = {} if up else {"reason": text.partition(":")[2][:200]}
        return [self.reading(frame, self.driver_id, "link", up, extra)]

    def reading(
        self,
        frame: RawFrame,
        device: str,
        prop: str,
        value: Any,
        extra: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> Reading:
        """A reading of this frame (its time unless ``at``); an invalid one refuses the frame."""
        try:
            # Checked as validation would, without pydantic when every field is plain.
            return make_reading(
                self.driver_id, device, prop, value, at or frame.wall_time, frame.retained, extra
            )
        except ValidationError as exc:
            raise FrameRejected("invalid_reading") from exc

    def reject(self, reason: str, frame: RawFrame, **context: Any) -> None:
        if self.stats.reject(reason):
            log.warning(
                self.rejected_event,
                driver=self.driver_id,
                reason=reason,
                **self.reject_context(frame),
                **context,
            )

    def reject_context(self, frame: RawFrame) -> dict[str, Any]:
        """What a refused frame's log line shows of the frame."""
        return {"source": frame.source[:200]}


class Driver(abc.ABC):
    """Base class of a driver plug-in.

    Subclasses set :attr:`type_name` and :attr:`options_model`, and implement
    :meth:`create_parser` and :meth:`run`. The constructor validates the options; it must not
    do I/O.
    """

    #: The ``type`` of a ``[[drivers]]`` entry that selects this driver.
    type_name: ClassVar[str]
    options_model: ClassVar[type[DriverOptions]] = DriverOptions
    #: A ``[[drivers]]`` table for this driver, shown when one is missing; empty: just the type.
    example_table: ClassVar[str] = ""

    @classmethod
    def example(cls, driver_id: str) -> str:
        """A ``[[drivers]]`` table that selects this driver, for an installer who lacks one."""
        return cls.example_table or f'[[drivers]]\nid = "{driver_id}"\ntype = "{cls.type_name}"'

    @classmethod
    def initial_options(cls, *, gateway_id: str, driver_id: str) -> dict[str, tuple[Any, str]]:
        """Options `gatewayd init` writes into a new ``[[drivers]]`` table: name → (value, why)."""
        return {}

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

    def pairing(self) -> Pairing | None:
        """How new devices of this driver are found and checked; None if it pairs nothing.

        Called on a driver built with no devices; must not do I/O (the pairing does, when
        entered).
        """
        return None

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
    return make_frame(
        driver,
        source,
        payload,
        kind="link",
        wall_time=datetime.now(UTC),
        mono_time=time.monotonic(),
    )


def data_frame(driver: str, source: str, payload: bytes, *, retained: bool = False) -> RawFrame:
    """A frame of device data, stamped with the wall clock and the monotonic clock now.

    Raises ValueError (pydantic's ``ValidationError``) for a frame the contract refuses."""
    return make_frame(
        driver,
        source,
        payload,
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
