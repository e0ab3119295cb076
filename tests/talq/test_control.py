"""Groups, calendars and assign commands over the API, onto the lighting document:
a calendar assigned to a group follows the group's members as they change; a
calendar or program in use cannot be deleted; a document the controller refuses
leaves the running one in place."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cityedge.gateway.lighting.schedule import program_for
from cityedge.gateway.talq.app import serve
from cityedge.street.modbus import ModbusStreet
from tests.talq.site import Site, free_port, sample_config

CMS = str(uuid.uuid4())


class Api:
    def __init__(
        self, http: aiohttp.ClientSession, base: str, site: Site, street: ModbusStreet
    ) -> None:
        self.http, self.base, self.site, self.street = http, base, site, street

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        params = {"clientAddress": CMS, "talqRequestId": str(uuid.uuid4())}
        headers = {"talq-api-version": "2.7.1"}
        async with self.http.request(
            method, self.base + path, params=params, json=body, headers=headers
        ) as response:
            raw = await response.read()
            return response.status, (await response.json()) if raw else None

    def lamps_of(self, group: str) -> list[str]:
        assert self.site.lighting is not None
        found = [g.devices for g in self.site.lighting.lighting.groups if g.name == group]
        return found[0] if found else []

    def address(self, device: str) -> str:
        return self.site.core.store.address_of(device)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with ModbusStreet(lampposts=3, meters=0) as street:
        port = free_port()
        site = Site(sample_config(tmp_path, street, port=port, cms_uri="http://127.0.0.1:9"))
        ready = asyncio.Event()
        task = asyncio.create_task(serve(site.core, ready))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            async with aiohttp.ClientSession() as http:
                yield Api(http, f"http://127.0.0.1:{port}", site, street)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def program(pid: str, level: int) -> dict[str, Any]:
    return {"id": pid, "ownerCMS": CMS, "type": "ControlProgramOne",
            "activePeriods": [{"name": "AstroClockActivePeriod", "sunsetOffset": 0,
                               "sunriseOffset": 0}],
            "astroClockTimeControls": [{"offset": 1200, "solarEventType": "sunset",
                                        "operation": "max",
                                        "command": {"state": {"name": "LevelState",
                                                              "value": level}}}],
            "fixedTimeControls": []}  # fmt: skip


async def test_a_group_calendar_follows_the_groups_members(api: Api) -> None:
    group = str(uuid.uuid4())
    one, two = api.address("lamppost-001"), api.address("lamppost-002")
    assert (await api("POST", "/groups", [{"address": group, "ownerCMS": CMS,
                                           "members": [{"resource": "devices",
                                                        "address": one}]}]))[0] == 201  # fmt: skip
    assert (await api("POST", "/control-programs", [program("low", 20)]))[0] == 201
    assert (await api("POST", "/calendars", [{"id": "quiet", "ownerCMS": CMS,
                                              "defaultProgram": "low"}]))[0] == 201  # fmt: skip
    status, _ = await api("POST", "/assign-commands", {
        "addresses": [{"resource": "groups", "address": group}],
        "entity": {"resource": "calendars", "address": "quiet"}})  # fmt: skip
    assert status == 201
    assert api.lamps_of("talq-quiet") == ["lamppost-001"]
    assert api.site.lighting is not None
    running = api.site.lighting.lighting.programs["talq-low"]
    # the active period opens at sunset: full light until the first switch point
    assert [(s.at, s.level) for s in running.steps] == [("sunset", 100), ("sunset+20", 20)]
    # a new member follows the group's calendar; a removed one goes back to the config's
    assert (await api("PUT", f"/groups/{group}/members",
                      [{"resource": "devices", "address": two}]))[0] == 200  # fmt: skip
    assert api.lamps_of("talq-quiet") == ["lamppost-001", "lamppost-002"]
    assert (await api("DELETE", f"/groups/{group}/members/devices/{one}"))[0] == 200
    assert api.lamps_of("talq-quiet") == ["lamppost-002"]
    assert "lamppost-001" in api.lamps_of("street")
    status, attr = await api("GET", f"/devices/{two}/lampActuator/calendarID")
    assert status == 200 and attr["value"] == "quiet"
    # in use: neither the calendar nor its program can go
    status, body = await api("DELETE", "/calendars/quiet")
    assert status == 422 and body[0]["key"] == "deletingResourceIsReferred"
    status, body = await api("DELETE", "/control-programs/low")
    assert status == 422 and body[0]["key"] == "deletingResourceIsReferred"
    # the group goes, and its calendar with it: every lamp back on the configured program
    assert (await api("DELETE", f"/groups/{group}"))[0] == 200
    assert api.lamps_of("talq-quiet") == []
    assert (await api("DELETE", "/calendars/quiet"))[0] == 200
    version = api.site.lighting.lighting.version
    assert version >= 4  # each change was a new document, stored and applied


async def test_a_program_the_lamps_cannot_run_is_refused_and_the_old_one_stays(api: Api) -> None:
    assert (await api("POST", "/control-programs", [program("ok", 30)]))[0] == 201
    assert (await api("POST", "/calendars", [{"id": "c", "ownerCMS": CMS,
                                              "defaultProgram": "ok"}]))[0] == 201  # fmt: skip
    status, _ = await api("PATCH", f"/devices/{api.address('lamppost-003')}/lampActuator/"
                          "calendarID", {"type": "AttributeString", "value": "c"})  # fmt: skip
    assert status == 200
    assert api.site.lighting is not None
    version = api.site.lighting.lighting.version
    # 23:00 then 21:00: steps out of order on every night, refused by the controller
    bad = {**program("ok", 30), "astroClockTimeControls": [], "fixedTimeControls": [
        {"startTime": "23:00:00", "command": {"state": {"name": "LevelState", "value": 50}}},
        {"startTime": "01:00:00", "command": {"state": {"name": "LevelState", "value": 40}}},
        {"startTime": "00:30:00", "command": {"state": {"name": "LevelState", "value": 40}}}],
        "activePeriods": [{"name": "AbsoluteActivePeriod", "startTime": "00:45:00",
                           "endTime": "05:00:00"}]}  # fmt: skip
    status, body = await api("PUT", "/control-programs/ok", bad)
    assert status == 422, body
    assert api.site.lighting.lighting.version == version
    assert (await api("GET", "/control-programs/ok"))[1]["astroClockTimeControls"]


async def test_a_target_light_command_is_an_override_until_its_expiration(api: Api) -> None:
    lamp = api.address("lamppost-001")
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    command = {"state": {"name": "LevelState", "value": 60},
               "expiration": expiration.isoformat()}  # fmt: skip
    status, body = await api("PATCH", f"/devices/{lamp}/lampActuator/targetLightCommand",
                             {"type": "AttributeCommand", "value": command})  # fmt: skip
    assert status == 200, body
    assert int(api.street.register("lamppost-001", "dimming")) == 60
    (override,) = api.site.overrides.active()
    assert (override.device, override.point, override.value) == ("lamppost-001", "dimming", 60)
    assert abs(override.until - expiration.timestamp()) < 5
    status, attr = await api("GET", f"/devices/{lamp}/lampActuator/targetLightCommand")
    assert attr["value"]["state"]["value"] == 60 and attr["value"]["reason"] == "override"
    status, attr = await api("GET", f"/devices/{lamp}/lampActuator/actualLightState")
    assert attr["value"] == {"name": "LevelState", "value": 60}
    # out of the local policy's range: refused, nothing written
    status, body = await api("POST", "/override-commands", {
        "addresses": [{"resource": "devices", "address": lamp}],
        "targetCommand": {"state": {"name": "LevelState", "value": 101}}})  # fmt: skip
    assert status == 422 and body[0]["key"] == "overrideCommandNotValid"
    assert int(api.street.register("lamppost-001", "dimming")) == 60


async def test_a_cms_may_echo_the_gateways_configuration_but_not_change_it(api: Api) -> None:
    gateway = api.site.core.store.gateway_address
    section = api.site.core.section
    path = f"/devices/{gateway}/gateway"
    same = {"type": "AttributeUri", "value": section.cms_uri}
    assert (await api("PATCH", f"{path}/cmsUri", same))[0] == 200
    elsewhere = {"type": "AttributeUri", "value": "http://elsewhere.example"}
    status, body = await api("PATCH", f"{path}/cmsUri", elsewhere)
    assert status == 422 and "configuration" in body[0]["description"]
    crl = {"type": "AttributeUri", "value": "urn:city:crl:7"}
    function = {"id": "gateway", "type": "GatewayFunction", "crlUrn": crl}
    assert (await api("PATCH", path, function))[0] == 200
    status, attr = await api("GET", f"{path}/crlUrn")
    assert attr["value"] == "urn:city:crl:7"


async def test_calendar_rules_over_date_ranges_become_ranged_exceptions(api: Api) -> None:
    for pid, level in (("low", 20), ("festive", 100), ("weekend", 80), ("xmas", 90)):
        assert (await api("POST", "/control-programs", [program(pid, level)]))[0] == 201
    rules = [
        {"startDate": "2026-12-08", "endDate": "2027-01-06", "program": "festive"},
        {"startDate": "2026-06-01", "endDate": "2026-08-31", "program": "weekend",
         "condition": {"type": "ccDay", "days": [{"start": 6, "end": 7}]}},
        {"startDate": "2027-01-01", "endDate": "2028-12-31", "program": "xmas",
         "condition": {"type": "ccDate", "dates": [{"start": "--12-24", "end": "--12-26"}]}},
    ]  # fmt: skip
    calendar = {"id": "seasons", "ownerCMS": CMS, "defaultProgram": "low", "rules": rules}
    assert (await api("POST", "/calendars", [calendar]))[0] == 201
    lamp = api.address("lamppost-001")
    status, _ = await api("PATCH", f"/devices/{lamp}/lampActuator/calendarID",
                          {"type": "AttributeString", "value": "seasons"})  # fmt: skip
    assert status == 200
    assert api.site.lighting is not None
    lit = api.site.lighting.lighting
    mine = [e.dump() for e in lit.exceptions if e.groups == ["talq-seasons"]]
    assert [{k: v for k, v in e.items() if v not in (None, [])} for e in mine] == [
        {"from": "2026-12-08", "until": "2027-01-06", "program": "talq-festive",
         "groups": ["talq-seasons"]},
        {"from": "2026-06-01", "until": "2026-08-31", "weekdays": ["sat", "sun"],
         "program": "talq-weekend", "groups": ["talq-seasons"]},
        {"from": "2027-12-24", "until": "2027-12-26", "program": "talq-xmas",
         "groups": ["talq-seasons"]},
        {"from": "2028-12-24", "until": "2028-12-26", "program": "talq-xmas",
         "groups": ["talq-seasons"]},
    ]  # fmt: skip
    (group,) = [g for g in lit.groups if g.name == "talq-seasons"]
    assert program_for(lit, group, dt.date(2027, 1, 6)) == "talq-festive"
    assert program_for(lit, group, dt.date(2026, 7, 4)) == "talq-weekend"  # a summer Saturday
    # the ccDay rule's dates hold: a Saturday in autumn is the calendar's default
    assert program_for(lit, group, dt.date(2026, 10, 3)) == "talq-low"
    assert program_for(lit, group, dt.date(2028, 12, 25)) == "talq-xmas"
    assert program_for(lit, group, dt.date(2029, 12, 25)) == "talq-low"
    # what cannot be run is refused with the reason, and the running document stays
    version = lit.version
    for rule, says in (
        ({"startDate": "--12-08", "endDate": "2027-01-06", "program": "festive"},
         "a range every year (--MM-DD) or between dates, not both"),
        ({"program": "xmas", "condition": {"type": "ccDate", "dates": [{"start": "--12-25"}]}},
         "within a rule's full startDate and endDate"),
    ):  # fmt: skip
        status, body = await api("PUT", "/calendars/seasons", {**calendar, "rules": [rule]})
        assert status == 422 and body[0]["key"] == "serviceConstraintExceeded", body
        assert says in body[0]["description"]
        assert api.site.lighting.lighting.version == version


async def test_yearly_rules_and_occurrences_run_every_year(api: Api) -> None:
    for pid, level in (("low", 20), ("festive", 100), ("market", 80)):
        assert (await api("POST", "/control-programs", [program(pid, level)]))[0] == 201
    rules = [
        {"startDate": "--12-08", "endDate": "--01-06", "program": "festive"},
        {"startDate": "--04-01", "endDate": "--10-31", "program": "market",
         "condition": {"type": "ccDay", "days": [{"start": 6}], "occurrences": ["1", "L"]}},
    ]  # fmt: skip
    calendar = {"id": "years", "ownerCMS": CMS, "defaultProgram": "low", "rules": rules}
    assert (await api("POST", "/calendars", [calendar]))[0] == 201
    lamp = api.address("lamppost-002")
    status, _ = await api("PATCH", f"/devices/{lamp}/lampActuator/calendarID",
                          {"type": "AttributeString", "value": "years"})  # fmt: skip
    assert status == 200
    assert api.site.lighting is not None
    lit = api.site.lighting.lighting
    mine = [e.dump() for e in lit.exceptions if e.groups == ["talq-years"]]
    assert [{k: v for k, v in e.items() if v not in (None, [])} for e in mine] == [
        {"from": "12-08", "until": "01-06", "program": "talq-festive", "groups": ["talq-years"]},
        {"from": "04-01", "until": "10-31", "weekdays": ["sat"], "occurrences": [1, -1],
         "program": "talq-market", "groups": ["talq-years"]},
    ]  # fmt: skip
    (group,) = [g for g in lit.groups if g.name == "talq-years"]
    for year in (2026, 2031):  # the same nights, years apart, with no new calendar
        assert program_for(lit, group, dt.date(year, 12, 8)) == "talq-festive"
        assert program_for(lit, group, dt.date(year + 1, 1, 6)) == "talq-festive"
        assert program_for(lit, group, dt.date(year + 1, 1, 7)) == "talq-low"
    assert program_for(lit, group, dt.date(2027, 5, 1)) == "talq-market"  # the first Saturday
    assert program_for(lit, group, dt.date(2027, 5, 8)) == "talq-low"  # the second
    assert program_for(lit, group, dt.date(2027, 5, 29)) == "talq-market"  # the last
    assert program_for(lit, group, dt.date(2027, 11, 6)) == "talq-low"  # out of season
    # the gateway says it runs occurrences
    status, services = await api("GET", "/services")
    assert status == 200, services
    (control,) = [s for s in services if s.get("name") == "ControlService"]
    assert control["ccDaySupport"] == "full"
