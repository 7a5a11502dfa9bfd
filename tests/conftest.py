"""Shared fixtures; each area keeps its own in tests/fixtures/."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

import runtime.logs

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.postgres",
    "tests.fixtures.netfault",
    "tests.fixtures.zigbee",
    "tests.fixtures.gateway",
    "tests.fixtures.dispatch",
]


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """A test that configures logging (a command run in-process) must not change what the
    next test's ``capture_logs`` sees, such as a level that filters INFO out."""
    runtime.logs.CACHE_LOGGERS = False
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
