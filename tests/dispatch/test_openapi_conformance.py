"""The OpenAPI document says what the server really answers: schemathesis generates requests
for every operation (valid and invalid ones, with and without a session) and checks each answer
against the document (status codes, content types, headers, bodies, the ``Allow`` header).

A server of its own: the generated requests log out, disable operators and guess passwords.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.dispatch.conftest import module_server
from tests.fixtures.dispatch import DispatchServer

#: Examples per operation and mode: ~33 operations in well under a minute on two cores.
EXAMPLES = 8


#: Rules between fields that a JSON schema cannot state: valid-looking input may be refused.
CANNOT_SAY = {
    # 'from' must be before 'to'.
    "GET /api/v1/reports/response-times": [positive_data_acceptance],
    "GET /api/v1/reports/response-times.csv": [positive_data_acceptance],
    # A take-over needs a reason (``takeover: true`` with a non-empty ``reason``).
    "POST /api/v1/incidents/{incident_id}/acknowledge": [positive_data_acceptance],
    # The body's id must be the URL's; a resident's birth_date must agree with birth_year.
    "PUT /api/v1/households/{household_id}": [positive_data_acceptance],
    "POST /api/v1/households": [positive_data_acceptance],
    # An absence ends in the future, within a year of now.
    "PUT /api/v1/households/{household_id}/away": [positive_data_acceptance],
}


#: Operations that may end the session they are called with.
ENDS_SESSIONS = {"/api/v1/auth/logout", "/api/v1/operators/{username}"}


@pytest.fixture(scope="module")
def conformance_server() -> Iterator[DispatchServer]:
    yield from module_server("sqlite")


def test_every_answer_matches_the_openapi_document(conformance_server: DispatchServer) -> None:
    server = conformance_server
    spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    sessions = Sessions(server)
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no input)
                check_operation(server, operation, mode, sessions, failures)
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


class Sessions:
    """An admin's bearer token, renewed when a generated logout or disable has ended it."""

    def __init__(self, server: DispatchServer) -> None:
        self.server = server
        self.headers = self._fresh()
        self.maybe_ended = False

    def _fresh(self) -> dict[str, str]:
        token = self.server.operator_client().cookies["dispatch_session"]
        return {"Authorization": f"Bearer {token}"}

    def valid(self) -> dict[str, str]:
        if self.maybe_ended:
            me = httpx.get(self.server.url + "/api/v1/auth/me", headers=self.headers, timeout=10)
            if me.is_error:
                self.headers = self._fresh()
            self.maybe_ended = False
        return self.headers


def check_operation(
    server: DispatchServer,
    operation: Any,
    mode: GenerationMode,
    sessions: Sessions,
    failures: dict[str, str],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    # The live stream never ends while its session lasts: only its refusals are checked here.
    may_use_session = operation.path != "/api/v1/stream"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), with_session=st.booleans())
    def check(case: Any, with_session: bool) -> None:
        if label in failures:
            return
        headers = sessions.valid() if with_session and may_use_session else None
        try:
            case.call_and_validate(
                base_url=server.url,
                headers=headers,
                timeout=10,
                excluded_checks=CANNOT_SAY.get(label, []),
            )
        except (AssertionError, FailureGroup) as exc:
            failures[label] = str(exc)[:1500]
        finally:
            sessions.maybe_ended |= headers is not None and operation.path in ENDS_SESSIONS

    check()


def test_method_not_allowed_names_every_method_of_the_path(
    conformance_server: DispatchServer,
) -> None:
    for method in ("OPTIONS", "DELETE"):
        reply = httpx.request(method, conformance_server.url + "/api/v1/operators", timeout=10)
        assert reply.status_code == 405
        assert reply.headers["content-type"] == "application/problem+json"
        assert sorted(m.strip() for m in reply.headers["allow"].split(",")) == ["GET", "POST"]
