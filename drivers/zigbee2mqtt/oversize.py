"""A Zigbee2MQTT state too large for a frame keeps what the parser needs.

A converter may add a large field (a debug dump, a firmware blob) to a device's state; the whole
message then passes the frame size limit, and dropping it would drop the ``smoke: true`` in it.
The state is a flat JSON object of small values, so the largest fields are dropped, one at a
time, until the rest fits; which ones is logged by the transport.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["shrink_state"]


def shrink_state(payload: bytes, limit: int) -> tuple[bytes, list[str]] | None:
    """The state in ``payload`` without its largest fields, at most ``limit`` bytes of compact
    JSON, and the names of the fields dropped (largest first); None if it is not a JSON object
    or no choice of fields fits."""
    try:
        data: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    sizes = {
        key: len(json.dumps(key)) + len(json.dumps(value, separators=(",", ":"))) + 1
        for key, value in data.items()
    }
    total = sum(sizes.values()) + 2
    dropped: list[str] = []
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if total <= limit:
            break
        dropped.append(key)
        total -= sizes[key]
    kept = {key: value for key, value in data.items() if key not in dropped}
    if not kept:
        return None
    text = json.dumps(kept, separators=(",", ":")).encode()
    return (text, dropped) if len(text) <= limit else None
