"""The JT/T 808 port over real TCP: one test per message type, and what goes wrong on the wire."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import jt808
from contract.jt808 import AlarmBit, MsgId, Result
from firmware_sim.wristband import Wristband
from tests.dispatch.conftest import unique
from tests.fixtures.dispatch_app import DispatchApp
from tests.fixtures.waiting import wait_until
from tests.wristbands.conftest import (
    band,
    bound_household,
    incidents_of,
    new_terminal,
    run,
    supervisor,
)


def wristband(centre: DispatchApp, terminal: str) -> dict[str, object]:
    reply = supervisor(centre).get("/api/v1/wristbands")
    assert reply.status_code == 200, reply.text
    found = [w for w in reply.json() if w["terminal"] == terminal]
    return found[0] if found else {}


def test_registration_answers_an_auth_code_and_lists_an_unknown_terminal(
    centre: DispatchApp,
) -> None:
    async def go(w: Wristband) -> tuple[str, str]:
        async with w:
            first = await w.register()
            again = await w.register()
            return first, again

    w = band(centre)
    first, again = run(go(w))
    assert len(first) == 16
    assert again == first  # re-registration keeps the code the terminal may have stored
    unbound = supervisor(centre).get("/api/v1/wristbands", params={"bound": False}).json()
    listed = [u for u in unbound if u["terminal"] == w.terminal]
    assert listed, "an unknown terminal that registered is listed for a supervisor to bind"
    assert listed[0]["household_id"] is None
    assert listed[0]["model"] == "WB-1"


def test_authentication_checks_the_code(centre: DispatchApp) -> None:
    async def go(w: Wristband) -> tuple[int, int]:
        async with w:
            await w.register()
            wrong = await w.authenticate("not-the-code")
            right = await w.authenticate()
            return wrong, right

    assert run(go(band(centre))) == (Result.FAILURE, Result.SUCCESS)


def test_heartbeat_is_answered_and_marks_the_wristband_seen(centre: DispatchApp) -> None:
    terminal = new_terminal()
    bound_household(centre, terminal)

    async def go(w: Wristband) -> int:
        async with w:
            return await w.heartbeat()

    assert run(go(band(centre, terminal))) == Result.SUCCESS
    seen = wait_until(lambda: wristband(centre, terminal).get("last_seen_at"), what="seen")
    assert datetime.fromisoformat(str(seen)) > datetime.now(UTC) - timedelta(minutes=1)


def test_location_report_stores_position_battery_signal_satellites(centre: DispatchApp) -> None:
    terminal = new_terminal()
    bound_household(centre, terminal)
    w = band(centre, terminal, lat=30.5, lon=114.25, battery=64, signal=21, satellites=7)

    async def go() -> int:
        async with w:
            return await w.report()

    assert run(go()) == Result.SUCCESS
    got = wait_until(lambda: wristband(centre, terminal), check=lambda r: r.get("lat") is not None)
    assert got["lat"] == pytest.approx(30.5)
    assert got["lon"] == pytest.approx(114.25)
    assert (got["battery"], got["signal"], got["satellites"], got["fix"]) == (64, 21, 7, True)


def test_batch_upload_stores_the_newest_position(centre: DispatchApp) -> None:
    terminal = new_terminal()
    bound_household(centre, terminal)
    w = band(centre, terminal)
    now = datetime.now(UTC).replace(microsecond=0)
    locations = []
    for n in range(3):
        w.lat = 31.0 + n / 100
        locations.append(w.location(now - timedelta(seconds=30 * (2 - n))))

    async def go() -> int:
        async with w:
            return await w.batch(locations)

    assert run(go()) == Result.SUCCESS
    got = wait_until(lambda: wristband(centre, terminal), check=lambda r: r.get("lat") is not None)
    assert got["lat"] == pytest.approx(31.02)


def test_sub_packages_are_answered_each_and_put_together(centre: DispatchApp) -> None:
    terminal = new_terminal()
    bound_household(centre, terminal)
    w = band(centre, terminal, lat=29.75)
    body = jt808.encode_batch([w.location()])
    halves = [body[:10], body[10:]]

    async def go() -> list[int]:
        results = []
        async with w:
            for index, part in enumerate(halves, start=1):
                await w.send_raw(w.frame(MsgId.BATCH_LOCATION, part, packages=2, index=index))
                answer = await w.reply()
                assert answer.general is not None
                results.append(answer.general[2])
        return results

    assert run(go()) == [Result.SUCCESS, Result.SUCCESS]
    got = wait_until(lambda: wristband(centre, terminal), check=lambda r: r.get("lat") is not None)
    assert got["lat"] == pytest.approx(29.75)


def test_unknown_message_is_answered_unsupported(centre: DispatchApp) -> None:
    async def go(w: Wristband) -> tuple[int, int, int] | None:
        async with w:
            return (await w.request(0x0900, b"\x01\x02")).general

    general = run(go(band(centre)))
    assert general is not None
    assert general[1:] == (0x0900, Result.UNSUPPORTED)
    counters = supervisor(centre).get("/api/v1/wristbands-port").json()
    assert counters["unknown"] >= 1


def test_noise_and_a_bad_frame_do_not_end_the_link(centre: DispatchApp) -> None:
    async def go(w: Wristband) -> tuple[int, int]:
        async with w:
            await w.send_raw(b"garbage\x7e\x7d\x7e\x7e\x00\x01\x7e")
            bad = await w.request(MsgId.HEARTBEAT, corrupt_check=True)
            assert bad.general is not None
            return bad.general[2], await w.heartbeat()

    assert run(go(band(centre))) == (Result.MESSAGE_ERROR, Result.SUCCESS)
    counters = supervisor(centre).get("/api/v1/wristbands-port").json()
    assert counters["bad_check"] >= 1


def test_2019_header_terminal_is_answered_in_its_own_header(centre: DispatchApp) -> None:
    terminal = new_terminal()
    bound_household(centre, terminal)
    w = band(centre, terminal, version=1, lat=22.5)

    async def go() -> tuple[int, int, int]:
        async with w:
            await w.register()
            auth = await w.authenticate()
            answer = await w.request(MsgId.LOCATION, jt808.encode_location(w.location()))
            assert answer.is_2019
            assert answer.general is not None
            return auth, answer.msg_id, answer.general[2]

    assert run(go()) == (Result.SUCCESS, MsgId.PLATFORM_RESPONSE, Result.SUCCESS)
    got = wait_until(lambda: wristband(centre, terminal), check=lambda r: r.get("lat") is not None)
    assert got["protocol"] == "2019"


def counters(centre: DispatchApp) -> dict[str, Any]:
    reply = supervisor(centre).get("/api/v1/wristbands-port")
    assert reply.status_code == 200, reply.text
    got: dict[str, Any] = reply.json()
    return got


@pytest.mark.parametrize("version", [None, 1], ids=["2013", "2019"])
def test_an_authenticated_terminal_is_told_its_heartbeat_interval_and_keeps_it(
    centre: DispatchApp, version: int | None
) -> None:
    before = counters(centre).get("heartbeat_set", 0)

    async def go(w: Wristband) -> tuple[list[int | None], bool]:
        async with w:
            await w.register()
            assert await w.authenticate() == Result.SUCCESS
            command = await w.command()
            assert w.heartbeat_s == 1  # FAST: the centre supervises a 1 s heartbeat
            beats = [await w.heartbeat_if_due(), await w.heartbeat_if_due()]
            await asyncio.sleep(w.heartbeat_s)  # the interval itself is what is tested
            beats.append(await w.heartbeat_if_due())
            return beats, command.is_2019

    beats, is_2019 = run(go(band(centre, version=version)))
    # Due at once (none sent yet), not again within the interval, due once it has passed.
    assert beats == [Result.SUCCESS, None, Result.SUCCESS]
    assert is_2019 is (version is not None)  # told in the terminal's own header
    wait_until(lambda: counters(centre).get("heartbeat_set", 0) == before + 1, what="answer seen")


def test_an_unanswered_heartbeat_interval_is_sent_again_a_bounded_number_of_times(
    centre: DispatchApp,
) -> None:
    before = counters(centre)

    def gave_up() -> bool:
        return bool(
            counters(centre).get("heartbeat_unanswered", 0) > before.get("heartbeat_unanswered", 0)
        )

    async def go(w: Wristband) -> list[int]:
        async with w:
            await w.register()
            await w.authenticate()
            while not await asyncio.to_thread(gave_up):
                # The terminal's own heartbeats keep the link up meanwhile; each round trip
                # takes in whatever the centre sent before its answer.
                await w.heartbeat()
                await asyncio.sleep(0.2)
            await w.heartbeat()  # one more round trip: nothing was left in flight
            return [c.serial for c in w.commands]

    serials = run(go(band(centre, answer_commands=False)))
    assert len(serials) == 3  # sent once, then resent twice (FAST: jt808_resends=2)
    assert len(set(serials)) == 3
    after = counters(centre)
    assert after["heartbeat_sent"] - before.get("heartbeat_sent", 0) == 3
    assert after.get("heartbeat_set", 0) == before.get("heartbeat_set", 0)


def test_sos_opens_a_life_safety_incident_with_its_position(centre: DispatchApp) -> None:
    terminal = new_terminal()
    household = bound_household(centre, terminal)
    client = supervisor(centre)
    place = {"lat": 31.2304, "lon": 121.4737}
    assert client.put(f"/api/v1/households/{household}/place", json=place).status_code == 200
    w = band(centre, terminal, lat=31.2404, lon=121.4737)

    async def go() -> list[int]:
        async with w:
            await w.register()
            await w.authenticate()
            first = await w.report()
            w.set_alarm(AlarmBit.EMERGENCY)
            sos = await w.report()
            held = await w.report()  # the bit stays set: the same alarm, not a new one
            return [first, sos, held]

    assert run(go()) == [Result.SUCCESS] * 3
    # Answered only once durable: the incident is there without waiting.
    sos = [i for i in incidents_of(centre, household) if i["kind"] == "sos"]
    assert len(sos) == 1
    assert sos[0]["priority"] == 1
    assert sos[0]["event_count"] == 1
    position = sos[0]["position"]
    assert position["terminal"] == terminal
    assert position["lat"] == pytest.approx(31.2404)
    assert position["fix"] is True
    assert position["verified"] is True
    assert position["fix_at"]
    where = wait_until(
        lambda: client.get(f"/api/v1/incidents/{sos[0]['id']}/location").json(),
        what="the three reports on the track",
        check=lambda body: len(body["track"]) == 3,
    )
    assert where["resident"] == "Li Wei"
    assert where["distance_m"] == pytest.approx(1112, abs=5)
    assert where["latest"]["fix"] is True
    assert where["map_url"] is None  # none configured: nothing points outside the centre


def test_sos_in_a_frame_with_a_bad_check_code_is_raised_unverified(centre: DispatchApp) -> None:
    terminal = new_terminal()
    household = bound_household(centre, terminal)
    w = band(centre, terminal, lat=23.1)
    w.set_alarm(AlarmBit.EMERGENCY)

    async def go() -> int:
        async with w:
            await w.heartbeat()
            return await w.report(corrupt_check=True)

    assert run(go()) == Result.MESSAGE_ERROR  # so that the terminal sends it again
    sos = [i for i in incidents_of(centre, household) if i["kind"] == "sos"]
    assert len(sos) == 1
    assert sos[0]["position"]["verified"] is False
    assert sos[0]["position"]["lat"] == pytest.approx(23.1)


def test_fall_and_low_battery(centre: DispatchApp) -> None:
    terminal = new_terminal()
    household = bound_household(centre, terminal)
    w = band(centre, terminal)

    async def go() -> None:
        async with w:
            w.set_alarm(AlarmBit.COLLISION)
            w.set_alarm(AlarmBit.UNDERVOLTAGE)
            assert await w.report() == Result.SUCCESS

    run(go())
    found = {i["kind"]: i for i in incidents_of(centre, household)}
    assert found["fall"]["category"] == "alarm"
    assert found["fall"]["position"] is not None
    trouble = found["device_trouble"]
    assert trouble["summary"]["troubles"] == {f"low_battery:wristband-{terminal}": True}


def test_power_off_is_a_trouble_restored_when_it_comes_back(centre: DispatchApp) -> None:
    terminal = new_terminal()
    household = bound_household(centre, terminal)
    w = band(centre, terminal)

    async def go() -> None:
        async with w:
            w.set_alarm(AlarmBit.POWER_OFF)
            assert await w.report() == Result.SUCCESS
            w.set_alarm(AlarmBit.POWER_OFF, on=False)
            assert await w.report() == Result.SUCCESS

    run(go())
    trouble = [i for i in incidents_of(centre, household) if i["category"] == "trouble"]
    assert trouble[0]["summary"]["troubles"] == {f"device_offline:wristband-{terminal}": False}
    assert trouble[0]["state"] == "resolved"


def test_sos_from_an_unbound_wristband_is_not_dropped(centre: DispatchApp) -> None:
    w = band(centre)
    w.set_alarm(AlarmBit.EMERGENCY)

    async def go() -> int:
        async with w:
            return await w.report()

    assert run(go()) == Result.SUCCESS
    listed = wristband(centre, w.terminal)
    assert listed["household_id"] is None
    assert listed["last_alarm_at"] is not None  # listed with its alarm, for binding at once


def test_silent_wristband_is_offline_then_restored(centre: DispatchApp) -> None:
    terminal = new_terminal()
    household = bound_household(centre, terminal)

    async def beat() -> None:
        async with band(centre, terminal) as w:
            assert await w.heartbeat() == Result.SUCCESS

    run(beat())

    def trouble() -> dict[str, Any]:
        found = [i for i in incidents_of(centre, household) if i["category"] == "trouble"]
        return found[0] if found else {}

    offline = wait_until(trouble, within=15, what="a wristband offline trouble")
    key = f"device_offline:wristband-{terminal}"
    assert offline["summary"]["troubles"] == {key: True}
    run(beat())
    wait_until(
        trouble,
        within=10,
        what="the offline trouble restored",
        check=lambda t: t.get("state") == "resolved",
    )


def test_binding_refuses_an_unknown_household_and_a_double_binding(centre: DispatchApp) -> None:
    client = supervisor(centre)
    terminal = new_terminal()
    missing = client.post(
        "/api/v1/wristbands", json={"terminal": terminal, "household_id": unique("nope")}
    )
    assert missing.status_code == 404
    bound_household(centre, terminal)
    other = unique("hh-other")
    centre.ensure_household(other)
    twice = client.post("/api/v1/wristbands", json={"terminal": terminal, "household_id": other})
    assert twice.status_code == 409
    assert client.delete(f"/api/v1/wristbands/{terminal}").status_code == 204
    assert client.delete(f"/api/v1/wristbands/{terminal}").status_code == 404


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    junk=st.lists(
        st.one_of(
            st.binary(max_size=120),
            st.builds(
                lambda msg_id, body, bad: jt808.encode_frame(
                    msg_id, "13700000000", 1, body, corrupt_check=bad
                ),
                st.sampled_from([0x0001, 0x0100, 0x0102, 0x0200, 0x0704, 0x0900, 0x8001]),
                st.binary(max_size=80),
                st.booleans(),
            ),
        ),
        max_size=6,
    )
)
def test_whatever_a_terminal_sends_the_port_keeps_answering(
    centre: DispatchApp, junk: list[bytes]
) -> None:
    async def go() -> int:
        async with band(centre) as w:
            for piece in junk:
                await w.send_raw(piece)
            # An unclosed frame in the junk swallows the next frame's opening flag (the
            # framing has no other way to resynchronise), so a terminal's next message may be
            # lost, never the one after it; answers to the junk may come first.
            serials = set()
            for _ in range(2):
                await w.send_raw(w.frame(MsgId.HEARTBEAT))
                serials.add(w.serial)
            while True:
                answer = await w.reply()
                general = answer.general
                if general is not None and general[0] in serials and general[1] == 0x0002:
                    return general[2]

    assert run(go()) == Result.SUCCESS
