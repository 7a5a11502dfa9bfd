"""Pairing: how a driver finds a new device and says what it is, before the home config names it.

Pairing belongs to the driver, as a config flow belongs to a Home Assistant integration, so
``gatewayd devices pair`` runs the same steps for every driver, built-in or plug-in:

1. **discover** (drivers that can): ``pairing.discover(seconds, progress)`` yields the devices
   that joined the driver's network (``discovery = "join"``: Zigbee permit-join; it yields the
   one device that joined, then ends) or were heard (``"scan"``: a BLE scan; the installer
   picks one). A candidate says what the device reports, a suggested role, and what else the
   installer must supply (:class:`Needed`, such as a bind key).
2. **identify**: ``await pairing.identify(candidate or address, options)`` checks the address and
   options as the daemon will, contacts the device where the driver can, and returns what the
   device's ``[[devices]]`` entry gets from the driver (:class:`Identified`). Nothing is written
   before it succeeded.
3. The installer's answers (role, room, id) complete the entry: the same prompts for every driver.

A :class:`Pairing` comes from :meth:`drivers.base.Driver.pairing` (None: the driver pairs
nothing) and is an async context manager that may be entered again after it exits, one session
per step, so that no connection is held open while the installer is typing. Drivers that keep a
network of their own (``has_network``: a Zigbee coordinator) also list what it knows, and
remove and rename devices in it.

Exceptions (a driver's own errors subclass these, so the CLI maps any driver's failure to the
same exit codes)::

    DriverError
     └── PairingError             pairing cannot go on; the message says why and what to do
          ├── DeviceRefused       the device or its bridge refused, or identification failed
          ├── PairingUnreachable  the bridge, receiver or radio cannot be reached
          ├── NothingFound        nothing joined or was heard in time
          └── InvalidDevice       an address or option the driver does not accept
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import ValidationError

from contract.devices import ROLES, DeviceSpec
from drivers.base import DriverConfigError, DriverError

if TYPE_CHECKING:
    from drivers.base import Driver

__all__ = [
    "AddressPairing",
    "Candidate",
    "DeviceRefused",
    "Discovery",
    "Identified",
    "InvalidDevice",
    "KnownDevice",
    "Needed",
    "NothingFound",
    "Pairing",
    "PairingError",
    "PairingUnreachable",
    "ProgressSink",
    "address_of",
]

#: How a driver finds new devices: they join its network, or they are heard and one is picked.
Discovery = Literal["join", "scan"]

#: Where a driver reports what is happening while it discovers (one short line each).
ProgressSink = Callable[[str], None]


class PairingError(DriverError):
    """Pairing cannot go on; the message says why and what to do."""


class DeviceRefused(PairingError):
    """The device or its bridge refused, or the device could not be identified."""


class PairingUnreachable(PairingError):
    """The bridge, receiver or radio the driver pairs through cannot be reached."""


class NothingFound(PairingError):
    """Nothing joined or was heard before discovery ended."""


class InvalidDevice(PairingError):
    """An address or device option that the driver does not accept."""


def _check_role(role_guess: str) -> None:
    if role_guess not in ROLES:
        raise ValueError(f"role_guess {role_guess!r} is not one of {', '.join(ROLES)}")


@dataclass(frozen=True, slots=True)
class Needed:
    """Something the installer must supply that the device cannot tell, such as a bind key."""

    #: The device option the answer becomes (``bind_key``).
    option: str
    #: Why it is needed, shown beside the device (``encrypted``).
    reason: str
    #: The question to ask.
    prompt: str
    #: The answer → the option's value; raises ValueError naming what is wrong with it.
    check: Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device found by discovery, not yet in the home config."""

    #: The native address the config will name it by (IEEE address, MAC, ...).
    address: str
    #: What it calls itself (a friendly name, an advertised local name).
    name: str = ""
    model: str = ""
    vendor: str = ""
    description: str = ""
    #: What it reports or exposes, in the driver's words (``smoke``, ``battery``, ``action``).
    reports: tuple[str, ...] = ()
    #: How well it was heard, as shown to the installer (``-42 dBm``); empty if unknown.
    signal: str = ""
    #: False when the driver does not know the device's model (it may report nothing useful).
    supported: bool = True
    #: The role it most likely plays (one of :data:`contract.devices.ROLES`).
    role_guess: str = "other"
    needs: tuple[Needed, ...] = ()
    #: Other addresses the config may already name it by (a Zigbee friendly name).
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ValueError("a candidate needs its address")
        _check_role(self.role_guess)


def address_of(target: Candidate | str) -> str:
    """The address of what is being identified: a candidate's, or the one typed (stripped)."""
    return target.address if isinstance(target, Candidate) else target.strip()


@dataclass(frozen=True, slots=True)
class Identified:
    """What identification established: the driver's part of the device's ``[[devices]]`` entry."""

    #: The address as the driver will look for it (normalised: upper-case MAC, ...).
    address: str
    model: str = ""
    #: The device's ``options`` table (a Modbus profile, a BLE bind key).
    options: Mapping[str, Any] = field(default_factory=dict)
    role_guess: str = "other"
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ValueError("an identified device needs its address")
        _check_role(self.role_guess)


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """A device that the driver's own network knows (paired with its bridge)."""

    address: str
    name: str = ""
    model: str = ""
    vendor: str = ""
    #: False when the network holds the device but could not identify it (a failed interview).
    identified: bool = True
    #: Everything else the driver knows, in its own words, for ``--json``.
    details: Mapping[str, Any] = field(default_factory=dict)


class Pairing(abc.ABC):
    """A driver's pairing; see the module docstring. Subclasses implement :meth:`identify`, and
    :meth:`discover` when they set :attr:`discovery`."""

    #: How new devices are found; None: only by the address the installer types.
    discovery: ClassVar[Discovery | None] = None
    #: Whether a device can be given by its address (False: it must join).
    by_address: ClassVar[bool] = True
    #: What an address looks like, for the prompt and for errors.
    address_example: ClassVar[str] = "the device's address"
    #: What the address is called (``IEEE address``, ``MAC``).
    address_kind: ClassVar[str] = "address"
    #: How long discovery lasts unless the installer says otherwise, and at most (seconds).
    discovery_seconds: ClassVar[float] = 10.0
    max_discovery_seconds: ClassVar[float] = 300.0
    #: Whether the driver keeps a network of its own (:meth:`inventory`, :meth:`unpair`,
    #: :meth:`rename` do something).
    has_network: ClassVar[bool] = False

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the session opened (connections, a scanner); it may be entered again."""
        return None

    def announce(self, seconds: float) -> str:
        """What the installer is told (and asked to do) as discovery starts."""
        return f"Looking for new devices through {self.driver.id!r} for {seconds:g} s."

    async def discover(self, seconds: float, progress: ProgressSink) -> AsyncIterator[Candidate]:
        """The devices found within ``seconds``; raises :class:`NothingFound` if there are none.

        ``progress`` takes one short line about what is happening (a device joined, ...).
        """
        raise InvalidDevice(
            f"driver {self.driver.id!r} does not discover devices; give the device's address"
        )
        yield  # an async generator, as the overrides are

    @abc.abstractmethod
    async def identify(self, target: Candidate | str, options: Mapping[str, Any]) -> Identified:
        """Check the device (a candidate, or an address the installer typed) with its ``options``;
        contact it where the driver can. Raises a :class:`PairingError` naming the problem."""

    async def inventory(self) -> list[KnownDevice]:
        """What the driver's own network knows (``has_network`` drivers)."""
        return []

    async def unpair(self, address: str, *, force: bool = False) -> None:
        """Remove the device from the driver's own network (``has_network`` drivers)."""
        return None

    async def rename(self, address: str, new_name: str) -> str:
        """Rename the device in the driver's own network; the address it is known by now."""
        return address


class AddressPairing(Pairing):
    """Pairing for devices that join no network and are only listened to or polled (an RF
    receiver's sensors, a Modbus unit): the typed address and options are checked by the
    driver's own device check, exactly as the daemon will check them."""

    @abc.abstractmethod
    def check(self, spec: DeviceSpec, where: str) -> None:
        """Raise :class:`DriverConfigError` (its message starting with ``where``) if the driver
        would refuse this device."""

    async def identify(self, target: Candidate | str, options: Mapping[str, Any]) -> Identified:
        address = address_of(target)
        where = f"driver {self.driver.id!r}: address {address!r}"
        try:
            # The role is the installer's to choose later; the check does not depend on it.
            spec = DeviceSpec(
                id="new", driver=self.driver.id, address=address, role="other",
                options=dict(options),
            )  # fmt: skip
            self.check(spec, where)
        except ValidationError as exc:
            raise InvalidDevice(f"{where}: {exc.errors()[0]['msg']}") from exc
        except DriverConfigError as exc:
            raise InvalidDevice(str(exc)) from exc
        role_guess = target.role_guess if isinstance(target, Candidate) else "other"
        return Identified(address=address, options=dict(options), role_guess=role_guess)
