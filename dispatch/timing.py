"""Where a request's time went, stage by stage, as an HTTP ``Server-Timing`` header (W3C)."""

from __future__ import annotations

import time

__all__ = ["Stages", "parse_server_timing"]


class Stages:
    """Marks the end of each stage; the time since the previous mark is that stage's."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.spent: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.spent.append((name, now - self._last))
        self._last = now

    def header(self) -> str:
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.spent)


def parse_server_timing(value: str) -> dict[str, float]:
    """Milliseconds by stage name, from a ``Server-Timing`` header's value."""
    spent: dict[str, float] = {}
    for metric in value.split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key == "dur" and name:
                try:
                    spent[name] = spent.get(name, 0.0) + float(number)
                except ValueError:
                    continue
    return spent
