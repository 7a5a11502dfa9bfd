"""Fault scenarios: each one drives real processes (gatewayd, dispatchd, mosquitto, simulators)
through a failure and then checks, by event id, that every alarm reached dispatch exactly once.

``FAULTS_SCALE=10`` makes every scenario ten times bigger (more events, more kills, longer
outages); the default is sized for CI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.gateway import GatewayProcess, home_toml


@pytest.fixture
def faults_gateway(
    gateway_factory: Callable[..., GatewayProcess],
) -> Callable[..., GatewayProcess]:
    """A gateway process whose config is ``home_toml`` plus an optional ``[buffer]`` table."""

    def make(
        *,
        dispatch_url: str,
        timeout: float = 3.0,
        buffer: str = "",
        dispatch_extra: str = "",
        **kwargs: object,
    ) -> GatewayProcess:
        extra = str(kwargs.pop("extra", ""))
        if buffer:
            extra += f"\n[buffer]\n{buffer}\n"
        gw = gateway_factory(
            home_toml(Path("{STATE}"), dispatch_url=dispatch_url, extra=extra, **kwargs).replace(  # type: ignore[arg-type]
                "backoff_max = 2\n", f"backoff_max = 2\ntimeout = {timeout}\n{dispatch_extra}\n"
            )
        )
        return gw

    return make
