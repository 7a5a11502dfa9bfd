"""Shared fixtures; each area keeps its own in tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.postgres",
    "tests.fixtures.netfault",
    "tests.fixtures.zigbee",
    "tests.fixtures.gateway",
    "tests.fixtures.dispatch",
]
