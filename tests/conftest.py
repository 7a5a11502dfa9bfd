"""Shared fixtures; each area keeps its own in tests/fixtures/."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from argon2 import PasswordHasher
from hypothesis import HealthCheck, settings

import runtime.logs
from tests.fixtures.hostconfig import guard as host_config_guard

# Hypothesis's per-example deadline (200 ms) and its too-slow check are wall-clock limits: on a
# busy machine they fail property tests that are right. Those tests assert behaviour, not speed.
settings.register_profile("house", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("house")

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.postgres",
    "tests.fixtures.netfault",
    "tests.fixtures.zigbee",
    "tests.fixtures.gateway",
    "tests.fixtures.dispatch",
    "tests.fixtures.dispatch_thread",
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


@pytest.fixture(autouse=True)
def _no_host_config() -> Iterator[None]:
    """No test touches the host's /etc/gatewayd: it would pass or fail by what the machine has."""
    host_config_guard.take()
    host_config_guard.active = True
    try:
        yield
    finally:
        host_config_guard.active = False
    if touched := host_config_guard.take():
        pytest.fail(f"the test touched the host's gateway config: {touched}", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """Passwords hashed in this process (in-process dispatch, fixtures' operators) use argon2's
    cheapest parameters: the hash records them, so every check of it, in any process, is as
    cheap. The production parameters cost ~0.15 s of a core per hash or login; tests make
    thousands. Nothing here asserts the parameters (argon2-cffi's defaults)."""
    import dispatch.operators

    saved = dispatch.operators._hasher
    dispatch.operators._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    dispatch.operators._hasher = saved


#: The files that take longest (30 s or more of the two cores the suite runs on, measured with
#: ``--durations=0``). pytest-xdist hands whole files to the workers (``--dist loadfile``), in
#: the order collected (``--no-loadscope-reorder``; its default puts files with many tests
#: first, which left these, with few tests each, to run alone at the end): these go first.
LONGEST_FIRST = (
    "tests/dispatch/test_openapi_conformance.py",
    "tests/faults/test_dispatch_kills.py",
    "tests/faults/test_broker_restart.py",
    "tests/e2e/test_demo_stops.py",
    "tests/console/test_rescuer_phone.py",
    "tests/console/test_console_access.py",
    "tests/console/test_console_honest.py",
    "tests/dispatch/test_sealed_secrets.py",
    "tests/faults/test_gateway_kills.py",
    "tests/dispatch/test_stream_payload.py",
    "tests/console/test_console.py",
    "tests/dispatch/test_supervision.py",
    "tests/e2e/test_demo.py",
    "tests/dispatch/test_cli.py",
    "tests/test_bench_smoke.py",
    "tests/console/test_console_shift.py",
    "tests/dispatch/test_presence.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: place for place, path in enumerate(LONGEST_FIRST)}
    # A stable sort: the tests of a file keep their order, the other files theirs.
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
