"""Property-based fuzzing of the served API, driven by its own OpenAPI document.

Hypothesis generates requests for every operation from /openapi.json: schema-shaped bodies with
junk mixed in, random query values, real and random path ids, with and without a session; gateway
bodies are signed so they reach the parser. No answer may be a 5xx; every error must be a problem
document; every success must validate against the operation's declared response model.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contract.wire import EventKind, IngestReply
from dispatch.api.app import create_app
from dispatch.db import Database
from dispatch.settings import Settings
from tests.dispatch.conftest import unique
from tests.dispatch.wire import batch, event
from tests.fixtures.dispatch import EnrolledGateway
from tests.fixtures.dispatch_app import DispatchApp

SKIP = {("GET", "/api/v1/stream"), ("POST", "/api/v1/auth/logout")}  # long-lived / ends session
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def response_models() -> dict[tuple[str, str], Any]:
    """(method, path template) -> the declared response model, from the application itself."""
    app = create_app(Database("sqlite:///unused-fuzz.db"), Settings(), supervise=False)
    models: dict[tuple[str, str], Any] = {}
    for route in app.routes:
        model = getattr(route, "response_model", None)
        for method in getattr(route, "methods", ()) or ():
            if model is not None:
                models[(method, route.path)] = TypeAdapter(model)  # type: ignore[attr-defined]
    return models


def from_schema(
    schema: dict[str, Any], components: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values shaped like the schema, often valid, sometimes not."""
    if depth > 4:
        return JSON
    if "$ref" in schema:
        return from_schema(components[schema["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, components, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=12)
    if "const" in schema:
        return st.just(schema["const"]) | JSON
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, components, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, components, depth + 1)
                for k, v in props.items()
                if k not in required
            },
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components, depth + 1), max_size=3)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return st.datetimes().map(lambda d: d.isoformat() + "Z") | st.text(max_size=10)
        return st.text(max_size=schema.get("maxLength", 40) + 2)
    if kind == "integer":
        return st.integers(min_value=-5, max_value=10**12)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return JSON


def check_response(
    method: str, template: str, reply: httpx.Response, models: dict[Any, Any]
) -> None:
    assert reply.status_code < 500, (method, template, reply.status_code, reply.text)
    content_type = reply.headers.get("content-type", "")
    if reply.status_code >= 400:
        assert content_type == "application/problem+json", (method, template, reply.text)
        problem = reply.json()
        assert problem["status"] == reply.status_code
        assert isinstance(problem["title"], str)
        assert problem["title"]
        assert isinstance(problem["type"], str)
        return
    if reply.status_code == 204:
        return
    model = models.get((method, template))
    if model is not None:
        try:
            model.validate_json(reply.content)
        except ValidationError as exc:
            raise AssertionError(f"{method} {template}: response breaks its schema: {exc}") from exc


@pytest.fixture(scope="module")
def world(server: DispatchApp) -> dict[str, Any]:
    spec = server.http().get("/openapi.json").json()
    household = unique("hh-fuzz")
    gw = server.enroll(household)
    reply = gw.send_events(
        batch(
            gw.gateway_id,
            event(gw.gateway_id, EventKind.SOS),
            event(gw.gateway_id, EventKind.TAMPER),
        )
    )
    incidents = [
        a.incident.id for a in IngestReply.model_validate_json(reply.content).acks if a.incident
    ]
    operations = [
        (method.upper(), path, op)
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
        if (method.upper(), path) not in SKIP
    ]
    return {
        "spec": spec,
        "operations": operations,
        "ids": [household, gw.gateway_id, *incidents, "admin"],
        "gateway": gw,
        "models": response_models(),
    }


def test_operator_api_never_fails_and_keeps_its_schema(
    server: DispatchApp, world: dict[str, Any]
) -> None:
    admin = server.operator_client()
    components = world["spec"]["components"]["schemas"]
    operations = [op for op in world["operations"] if not op[1].startswith("/api/v1/gateway/")]

    @settings(FUZZ, max_examples=200)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, template, op = data.draw(st.sampled_from(operations))
        path = re.sub(
            r"\{[^}]+\}",
            lambda _m: quote(
                data.draw(st.sampled_from(world["ids"]) | st.text(min_size=1, max_size=20)), safe=""
            ),
            template,
        )
        params = {}
        for param in op.get("parameters", []):
            if param["in"] == "query" and data.draw(st.booleans()):
                value = data.draw(
                    from_schema(param.get("schema", {}), components) | st.text(max_size=10)
                )
                params[param["name"]] = value if isinstance(value, str) else json.dumps(value)
        kwargs: dict[str, Any] = {"params": params}
        body_schema = (
            op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        )
        if body_schema is not None or data.draw(st.booleans()):
            body = data.draw(from_schema(body_schema or {}, components) | JSON)
            kwargs["content"] = json.dumps(body).encode()
            kwargs["headers"] = {"content-type": "application/json"}
        client = admin if data.draw(st.integers(0, 9)) else server.http()
        reply = client.request(method, path, **kwargs)
        if client is not admin:
            client.close()
            if template != "/api/v1/auth/login":
                assert reply.status_code in (401, 422) or reply.status_code < 500
        check_response(method, template, reply, world["models"])

    run()


def test_gateway_api_never_fails_on_signed_junk(server: DispatchApp, world: dict[str, Any]) -> None:
    gw: EnrolledGateway = world["gateway"]
    components = world["spec"]["components"]["schemas"]
    valid = json.loads(batch(gw.gateway_id, event(gw.gateway_id, EventKind.FALL)).model_dump_json())

    def mutate(data: st.DataObject) -> Any:
        body = json.loads(json.dumps(valid))
        ev = body["events"][0]
        ev["id"] = data.draw(
            st.sampled_from([ev["id"], str(uuid.uuid4())[:26].upper()]) | st.text(max_size=30)
        )
        key = data.draw(st.sampled_from(sorted(ev)))
        ev[key] = data.draw(JSON)
        return body

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(["/api/v1/gateway/events", "/api/v1/gateway/heartbeat"]))
        name = "IngestBatch" if path.endswith("events") else "Heartbeat"
        body = data.draw(
            st.one_of(
                from_schema(components[name], components),
                st.builds(lambda: None).flatmap(lambda _: st.just(mutate(data))),
                JSON,
            )
        )
        reply = gw.post(path, json.dumps(body).encode())
        check_response("POST", path, reply, world["models"])

    run()


def test_enroll_never_fails(server: DispatchApp, world: dict[str, Any]) -> None:
    components = world["spec"]["components"]["schemas"]

    anonymous = server.http()

    @settings(FUZZ, max_examples=40)
    @given(body=from_schema(components["EnrollRequest"], components) | JSON)
    def run(body: Any) -> None:
        reply = anonymous.post("/api/v1/gateway/enroll", json=body)
        assert reply.status_code in (401, 409, 422), reply.text
        check_response("POST", "/api/v1/gateway/enroll", reply, world["models"])

    run()
