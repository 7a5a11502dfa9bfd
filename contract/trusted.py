"""Building contract models without pydantic's second look, where every field is already known good.

Pydantic validation of a small model costs microseconds; the gateway makes a :class:`Reading` per
reading and an :class:`Event` per event, thousands a second, from values it made itself or
checked at the edge. :func:`make_reading` and :func:`make_event` check the fields in plain Python
for the common case (exact built-in types, UTC times) and build the model directly; anything else
takes pydantic's validation, so the result and the errors are what validation gives. Property
tests (tests/test_trusted.py) hold both paths to agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from contract.wire import (
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    Event,
    EventKind,
    Priority,
    RawFrame,
    Reading,
    _size_bound,
)

__all__ = ["constructor", "is_identifier", "make_event", "make_frame", "make_reading"]

M = TypeVar("M", bound=BaseModel)

#: The ``Identifier`` pattern of :mod:`contract.wire` (pydantic's ``^...$`` is a whole match).
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9_.:@\-]+")
_EVENT_ID: Final = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_SCALARS: Final = (str, int, float, bool, type(None))
_set = object.__setattr__


def is_identifier(value: object) -> bool:
    """What the contract's ``Identifier`` accepts unchanged: 1 to 128 characters of a set."""
    return type(value) is str and 0 < len(value) <= 128 and _IDENTIFIER.fullmatch(value) is not None


def constructor(model: type[M], sample: dict[str, Any]) -> Callable[[dict[str, Any], Any], M]:
    """``build(fields, fields_set)``: what ``model.model_construct`` does for a complete set of
    fields in field order, in a fraction of its time; checked once against validation of
    ``sample`` (a pydantic whose internals moved gets ``model_construct`` itself)."""
    new = model.__new__

    def fast(fields: dict[str, Any], fields_set: Any) -> M:
        made = new(model)
        _set(made, "__dict__", fields)
        _set(made, "__pydantic_fields_set__", set(fields_set))
        _set(made, "__pydantic_extra__", None)
        _set(made, "__pydantic_private__", None)
        return made

    def public(fields: dict[str, Any], fields_set: Any) -> M:
        return model.model_construct(set(fields_set), **fields)

    try:
        real = model(**sample)
        made = fast(dict(real.__dict__), real.model_fields_set)
        if (
            made == real
            and made.model_dump() == real.model_dump()
            and made.model_dump_json() == real.model_dump_json()
            and made.model_fields_set == real.model_fields_set
            and _same_hash(made, real)
        ):
            return fast
    except Exception:  # pragma: no cover - a pydantic whose internals moved
        pass
    return public  # pragma: no cover


def _same_hash(made: BaseModel, real: BaseModel) -> bool:
    try:
        expected = hash(real)
    except TypeError:  # a frozen model with a dict field has no hash: neither must this
        try:
            hash(made)
        except TypeError:
            return True
        return False  # pragma: no cover
    return hash(made) == expected


_SAMPLE_AT: Final = datetime(2026, 1, 1, tzinfo=UTC)
_new_reading = constructor(
    Reading,
    {
        "driver": "d",
        "device": "x",
        "property": "p",
        "value": 1.5,
        "at": _SAMPLE_AT,
        "retained": True,
        "extra": {"k": "v"},
    },
)
_READING_SET: Final = frozenset(Reading.model_fields)


def _text(value: str) -> bool:
    """A str pydantic takes as it is: one that UTF-8 can encode (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_extra(extra: dict[str, Any]) -> bool:
    for key, value in extra.items():
        kind = type(value)
        if type(key) is not str or not _text(key) or kind not in _SCALARS:
            return False
        if kind is str and not _text(value):
            return False
    return True


def make_reading(
    driver: str,
    device: str,
    prop: str,
    value: Any,
    at: datetime,
    retained: bool = False,
    extra: dict[str, Any] | None = None,
) -> Reading:
    """``Reading(driver=..., ...)``, without validation when the fields need none; raises
    pydantic's ``ValidationError`` for what validation refuses."""
    if extra is None:
        extra = {}
    if (
        is_identifier(driver)
        and type(device) is str
        and 0 < len(device) <= 128
        and _text(device)
        and type(prop) is str
        and 0 < len(prop) <= 64
        and _text(prop)
        and type(value) in _SCALARS
        and (type(value) is not str or _text(value))
        and type(at) is datetime
        and at.tzinfo is UTC
        and type(retained) is bool
        and type(extra) is dict
        and _plain_extra(extra)
    ):
        fields = {
            "driver": driver,
            "device": device,
            "property": prop,
            "value": value,
            "at": at,
            "retained": retained,
            "extra": dict(extra),  # validation copies it too
        }
        return _new_reading(fields, _READING_SET)
    return Reading(
        driver=driver,
        device=device,
        property=prop,
        value=value,
        at=at,
        retained=retained,
        extra=extra,
    )


_new_event = constructor(
    Event,
    {
        "id": "01KBQ0000000000000000000AB",
        "gateway_id": "gw",
        "seq": 1,
        "kind": EventKind.SMOKE,
        "priority": Priority.LIFE_SAFETY,
        "device_id": "dev",
        "at": _SAMPLE_AT,
        "test": False,
        "payload": {"condition": "smoke:dev", "n": [1, {"a": None}]},
    },
)
_EVENT_SET: Final = frozenset(Event.model_fields) - {"v"}


def make_event(
    *,
    id: str,
    gateway_id: str,
    seq: int,
    kind: EventKind,
    priority: Priority,
    device_id: str | None,
    at: datetime,
    test: bool,
    payload: dict[str, Any],
    payload_size: int | None = None,
) -> Event:
    """``Event(id=..., ...)`` (every field but ``v`` given), without validation when the fields
    need none; raises pydantic's ``ValidationError`` for what validation refuses.

    ``payload_size``: the length of the payload's compact JSON (``default=str``) when the caller
    has it; else a bound of it is computed, and a payload it cannot prove small is validated."""
    if (
        type(id) is str
        and _EVENT_ID.fullmatch(id) is not None
        and is_identifier(gateway_id)
        and type(seq) is int
        and seq >= 0
        and type(kind) is EventKind
        and type(priority) is Priority
        and (device_id is None or is_identifier(device_id))
        and type(at) is datetime
        and at.tzinfo is UTC
        and type(test) is bool
        and type(payload) is dict
        and all(type(key) is str and _text(key) for key in payload)
    ):
        if payload_size is None:
            bound = _size_bound(payload)
            payload_size = MAX_PAYLOAD_BYTES + 1 if bound is None else bound
        if payload_size <= MAX_PAYLOAD_BYTES:
            fields = {
                "v": 1,
                "id": id,
                "gateway_id": gateway_id,
                "seq": seq,
                "kind": kind,
                "priority": priority,
                "device_id": device_id,
                "at": at,
                "test": test,
                "payload": dict(payload),  # validation copies it too
            }
            return _new_event(fields, _EVENT_SET)
    return Event(
        id=id,
        gateway_id=gateway_id,
        seq=seq,
        kind=kind,
        priority=priority,
        device_id=device_id,
        at=at,
        test=test,
        payload=payload,
    )


_new_frame = constructor(
    RawFrame,
    {
        "driver": "d",
        "source": "s",
        "payload": b"p",
        "kind": "link",
        "retained": True,
        "wall_time": _SAMPLE_AT,
        "mono_time": 1.5,
    },
)
_FRAME_SET: Final = frozenset(RawFrame.model_fields)


def make_frame(
    driver: str,
    source: str,
    payload: bytes,
    *,
    kind: str = "data",
    retained: bool = False,
    wall_time: datetime,
    mono_time: float,
) -> RawFrame:
    """``RawFrame(driver=..., ...)`` (every field given), without validation when the fields
    need none; raises pydantic's ``ValidationError`` for what validation refuses. The payload's
    content is the parser's to check, not the frame's."""
    if (
        is_identifier(driver)
        and type(source) is str
        and len(source) <= 512
        and _text(source)
        and type(payload) is bytes
        and len(payload) <= MAX_FRAME_BYTES
        and (kind == "data" or kind == "link")
        and type(kind) is str
        and type(retained) is bool
        and type(wall_time) is datetime
        and wall_time.tzinfo is UTC
        and type(mono_time) is float
    ):
        fields = {
            "driver": driver,
            "source": source,
            "payload": payload,
            "kind": kind,
            "retained": retained,
            "wall_time": wall_time,
            "mono_time": mono_time,
        }
        return _new_frame(fields, _FRAME_SET)
    return RawFrame(
        driver=driver,
        source=source,
        payload=payload,
        kind=kind,  # validation refuses any other
        retained=retained,
        wall_time=wall_time,
        mono_time=mono_time,
    )
