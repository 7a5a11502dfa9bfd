"""The ``driver_fault`` trouble a delivery channel raises about itself, and its restore.

Both channels to dispatch (the HTTP forwarder, whose credential dispatch may refuse, and the
DC-09 channel, whose receiver may not understand a message) report their own trouble the same
way, so dispatch and the operators see one shape whichever channel raised it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from buffer.store import EventDraft
from contract.wire import EventKind

__all__ = ["DETAIL_MAX", "driver_fault", "driver_fault_restore"]

#: A trouble's detail is a human sentence, not a dump: longer text is cut.
DETAIL_MAX = 500


def driver_fault(
    at: datetime, *, condition: str, component: str, detail: str, **extra: Any
) -> EventDraft:
    """The trouble draft: ``condition`` pairs it with its restore; ``extra`` adds fields."""
    payload: dict[str, Any] = {"condition": condition, "component": component, **extra}
    payload["detail"] = detail[:DETAIL_MAX]
    return EventDraft(kind=EventKind.DRIVER_FAULT, at=at, payload=payload)


def driver_fault_restore(at: datetime, *, condition: str, component: str) -> EventDraft:
    return EventDraft(
        kind=EventKind.DRIVER_FAULT_RESTORE,
        at=at,
        payload={"condition": condition, "component": component},
    )
