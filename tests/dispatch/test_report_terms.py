"""Reports in the centre's terms: local days and hours, per community, operator and hour; an
alarm that never reached a step is a miss; "no data" is not 0 %; every report as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from contract.wire import new_event_id
from dispatch import schema
from dispatch.settings import Settings
from tests.dispatch.conftest import BACKENDS, app_server, new_operator, unique
from tests.fixtures.dispatch_app import DispatchApp

ZONE = ZoneInfo("Asia/Shanghai")  # UTC+8 all year: no summer time to blur the arithmetic
REPORT = "/api/v1/reports/response-times"


@pytest.fixture(scope="module", params=BACKENDS)
def centre(request: pytest.FixtureRequest) -> Iterator[DispatchApp]:
    """A centre of its own (its incidents alone in the period), in Shanghai."""
    yield from app_server(request.param, Settings(timezone="Asia/Shanghai"))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


def add_incident(
    server: DispatchApp,
    household: str,
    opened: datetime,
    *,
    state: str,
    ack_s: float | None = None,
    acked_by: int | None = None,
    callback_s: float | None = None,
    on_scene_s: float | None = None,
    outcome: str | None = None,
    category: str = "alarm",
) -> None:
    """An incident with a history (the API records only the present moment)."""

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else opened + timedelta(seconds=seconds)

    async def write() -> None:
        async with server.database.write() as conn:
            await conn.execute(
                insert(schema.incidents).values(
                    id=new_event_id(opened),
                    household_id=household,
                    kind="sos" if category == "alarm" else "gateway_offline",
                    category=category,
                    priority=1,
                    state=state,
                    opened_at=opened,
                    last_event_at=opened,
                    last_action_at=opened,
                    acknowledged_at=at(ack_s),
                    acknowledged_by=acked_by,
                    callback_at=at(callback_s),
                    on_scene_at=at(on_scene_s),
                    resolved_at=at(1500) if state == "resolved" else None,
                    outcome=outcome,
                    summary={},
                )
            )

    server.run(write())


def operator_id(server: DispatchApp, username: str) -> int:
    async def read() -> int:
        async with server.database.read() as conn:
            o = schema.operators
            return int(
                (await conn.execute(select(o.c.id).where(o.c.username == username))).scalar_one()
            )

    return server.run(read())


@pytest.fixture(scope="module")
def history(centre: DispatchApp) -> dict[str, Any]:
    """Four alarms around the centre's midnight of 10 March 2026:

    A 00:30 local (the UTC day before): everything in time, by op1.
    B 09:00: acknowledged after 2 min by op2, called after 400 s, resolved without anyone on scene.
    C 23:50: never acknowledged, still open.
    D 00:10 on the 11th local (the 10th in UTC): acknowledged in 10 s by op1, no call yet.
    And a gateway outage (not an alarm) on the 10th.
    """
    community = unique("East Lake")
    household = unique("hh")
    client = centre.operator_client()
    reply = client.post(
        "/api/v1/households", json={"id": household, "name": "Chen", "community": community}
    )
    assert reply.status_code == 201, reply.text
    op1, _ = new_operator(centre)
    op2, _ = new_operator(centre)
    id1, id2 = operator_id(centre, op1), operator_id(centre, op2)
    add_incident(
        centre, household, local("2026-03-10T00:30:00"), state="resolved",
        ack_s=30, acked_by=id1, callback_s=200, on_scene_s=900, outcome="real_emergency",
    )  # fmt: skip
    add_incident(
        centre, household, local("2026-03-10T09:00:00"), state="resolved",
        ack_s=120, acked_by=id2, callback_s=400, outcome="false_alarm",
    )  # fmt: skip
    add_incident(centre, household, local("2026-03-10T23:50:00"), state="new")
    add_incident(
        centre, household, local("2026-03-11T00:10:00"), state="acknowledged",
        ack_s=10, acked_by=id1,
    )  # fmt: skip
    add_incident(
        centre, household, local("2026-03-10T12:00:00"), state="new", category="gateway_offline"
    )
    return {"community": community, "op1": op1, "op2": op2}


def report(server: DispatchApp, group: str, **period: str) -> dict[str, Any]:
    params = {"from": "2026-03-10T00:00:00", "to": "2026-03-12T00:00:00", "group": group}
    reply = server.operator_client().get(REPORT, params={**params, **period})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def shares(stats: dict[str, Any]) -> list[tuple[str, float, int, int, float | None]]:
    return [
        (s["step"], s["within_s"], s["met"], s["due"], s["share"]) for s in stats["service_levels"]
    ]


def test_days_are_the_centres_days_and_misses_count(
    centre: DispatchApp, history: dict[str, Any]
) -> None:
    body = report(centre, "day")
    assert body["timezone"] == "Asia/Shanghai"
    # The naive period is the centre's: it starts at 16:00 UTC on the 9th.
    assert datetime.fromisoformat(body["period_from"]) == datetime(2026, 3, 9, 16, tzinfo=UTC)
    days = {g["group"]: g for g in body["groups"]}
    assert sorted(days) == ["2026-03-10", "2026-03-11"]
    tenth = days["2026-03-10"]
    assert tenth["incidents"] == 4  # A, B, C and the outage
    assert sum(tenth["alarms_by_kind"].values()) == 3
    assert shares(tenth) == [
        ("acknowledge", 60.0, 1, 3, 0.3333),  # B late, C never: both misses
        ("acknowledge", 180.0, 2, 3, 0.6667),
        ("callback", 300.0, 1, 3, 0.3333),
        ("on_scene", 1080.0, 1, 3, 0.3333),  # B resolved with nobody on scene; C never
    ]
    # The old figure (only those that reached the step) was 1 of 2.
    assert tenth["to_acknowledge"]["within_target"] == 0.3333
    assert tenth["to_acknowledge"]["count"] == 2
    eleventh = days["2026-03-11"]
    assert shares(eleventh) == [
        ("acknowledge", 60.0, 1, 1, 1.0),
        ("acknowledge", 180.0, 1, 1, 1.0),
        ("callback", 300.0, 0, 1, 0.0),  # acknowledged, never called: a miss
        ("on_scene", 1080.0, 0, 1, 0.0),
    ]


def test_per_operator_per_hour_per_community(centre: DispatchApp, history: dict[str, Any]) -> None:
    by_operator = {g["group"]: g for g in report(centre, "operator")["groups"]}
    assert sorted(by_operator) == sorted([history["op1"], history["op2"], "(unacknowledged)"])
    assert shares(by_operator[history["op1"]])[0] == ("acknowledge", 60.0, 2, 2, 1.0)
    assert shares(by_operator[history["op2"]])[:2] == [
        ("acknowledge", 60.0, 0, 1, 0.0),
        ("acknowledge", 180.0, 1, 1, 1.0),
    ]
    nobody = by_operator["(unacknowledged)"]
    assert [s[4] for s in shares(nobody)] == [0.0, 0.0, 0.0, 0.0]  # C, and the outage

    by_hour = {g["group"]: g["incidents"] for g in report(centre, "hour")["groups"]}
    assert by_hour == {"00:00": 2, "09:00": 1, "12:00": 1, "23:00": 1}

    [community] = report(centre, "community")["groups"]
    assert community["group"] == history["community"]
    assert shares(community)[0] == ("acknowledge", 60.0, 2, 4, 0.5)


def test_nothing_due_is_no_data_not_zero(centre: DispatchApp, history: dict[str, Any]) -> None:
    # Only the outage in this hour: no alarm, so no share at all.
    body = report(centre, "day", **{"from": "2026-03-10T12:00:00", "to": "2026-03-10T13:00:00"})
    [day] = body["groups"]
    assert day["incidents"] == 1
    assert [s[3:] for s in shares(day)] == [(0, None)] * 4
    assert day["to_acknowledge"]["within_target"] is None
    assert day["false_alarm_rate"] is None


def test_an_alarm_still_inside_its_time_is_not_yet_a_miss(centre: DispatchApp) -> None:
    household = unique("hh")
    client = centre.operator_client()
    assert (
        client.post("/api/v1/households", json={"id": household, "name": "Wu"}).status_code == 201
    )
    now = datetime.now(UTC)
    add_incident(centre, household, now - timedelta(seconds=100), state="acknowledged", ack_s=20)
    body = report(
        centre,
        "day",
        **{
            "from": (now - timedelta(minutes=3)).isoformat(),
            "to": (now + timedelta(minutes=1)).isoformat(),
        },
    )
    assert shares(body["total"]) == [
        ("acknowledge", 60.0, 1, 1, 1.0),
        ("acknowledge", 180.0, 1, 1, 1.0),
        ("callback", 300.0, 0, 0, None),  # 100 s in: the call may still come in time
        ("on_scene", 1080.0, 0, 0, None),
    ]


def test_every_grouping_exports_as_csv(centre: DispatchApp, history: dict[str, Any]) -> None:
    client = centre.operator_client()
    for group in ("day", "community", "operator", "hour"):
        reply = client.get(
            f"{REPORT}.csv",
            params={"from": "2026-03-10T00:00:00", "to": "2026-03-12T00:00:00", "group": group},
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/csv")
        assert "attachment" in reply.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(reply.text)))
        assert rows[-1][group] == "total"
        assert rows[-1]["incidents"] == "5"
        assert rows[-1]["acknowledge_within_60s_pct"] == "50.0"  # A and D of the four alarms
        assert rows[-1]["acknowledge_within_60s_due"] == "4"
    by_day = list(csv.DictReader(io.StringIO(client.get(f"{REPORT}.csv").text)))
    assert by_day[-1]["day"] == "total"
    outage_only = client.get(
        f"{REPORT}.csv", params={"from": "2026-03-10T12:00:00", "to": "2026-03-10T13:00:00"}
    )
    [day, total] = list(csv.DictReader(io.StringIO(outage_only.text)))
    assert day["callback_within_300s_pct"] == "no data"
    assert total["false_alarm_pct"] == "no data"
    refused = client.get(f"{REPORT}.csv", params={"group": "weekday"})
    assert refused.status_code == 422


@pytest.mark.parametrize("value", ["1.0", "-39500", " 17e3 "])
def test_a_number_is_not_a_date_in_a_report_query(centre: DispatchApp, value: str) -> None:
    """pydantic would read a bare number as seconds since 1970; the document says ISO 8601."""
    client = centre.operator_client()
    for path in (REPORT, "/api/v1/reports/rescue"):
        refused = client.get(path, params={"to": value})
        assert refused.status_code == 422, (path, refused.text)
        assert "not a number" in refused.text
    day_only = client.get(REPORT, params={"from": "2026-03-10", "to": "2026-03-11T00:00"})
    assert day_only.status_code == 200, day_only.text
