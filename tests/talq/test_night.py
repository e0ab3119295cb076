"""Lighting end to end over TALQ, on an accelerated night (1,200x) at the city's
coordinates (Milan, 21 June): a CMS (simulated on the CMS OpenAPI file) creates a
corridor group, two control programs (dusk on at 100 %, 50 % from 23:00; the
corridor at 20 %), two calendars, and assigns them; simulated lampposts (pymodbus
servers) follow across sunset, 23:00 and sunrise. An override command holds its
lamp for its hour, then the program's level comes back. The CMS is unreachable
from 01:00 to 03:00: every log report made meanwhile arrives afterwards, in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from cityedge.gateway.lighting import ScaledClock
from cityedge.gateway.talq.app import serve
from cityedge.gateway.talq.cms import CmsClient
from cityedge.street.modbus import ModbusStreet
from tests.talq.cms_sim import SimulatedCms
from tests.talq.site import Site, free_port, needs_spec, sample_config, wait_for

pytestmark = needs_spec

SPEED = 1200.0
STREET = ["lamppost-001", "lamppost-002"]
CORRIDOR = "lamppost-003"
CONFIGURED = {"standard": {"steps": [{"at": "sunset", "level": 70}]}}  # until the CMS speaks


def level(value: int) -> dict[str, Any]:
    return {"state": {"name": "LevelState", "value": value}}


def programs(owner: str) -> list[dict[str, Any]]:
    night = [{"name": "AstroClockActivePeriod", "sunsetOffset": 0, "sunriseOffset": 0}]
    return [
        {"id": "dusk-50", "ownerCMS": owner, "type": "ControlProgramOne",
         "activePeriods": night,
         "astroClockTimeControls": [{"offset": 0, "solarEventType": "sunset",
                                     "operation": "max", "command": level(100)}],
         "fixedTimeControls": [{"startTime": "23:00:00", "command": level(50)}]},
        {"id": "corridor-20", "ownerCMS": owner, "type": "ControlProgramOne",
         "activePeriods": night,
         "astroClockTimeControls": [{"offset": 0, "solarEventType": "sunset",
                                     "operation": "max", "command": level(20)}],
         "fixedTimeControls": []},
    ]  # fmt: skip


class Cms:
    """The CMS's side of the gateway API: a client with the TALQ headers."""

    def __init__(self, http: aiohttp.ClientSession, base: str, address: str) -> None:
        self.http, self.base, self.address = http, base, address

    async def send(self, method: str, path: str, body: Any = None) -> int:
        params = {"clientAddress": self.address, "talqRequestId": str(uuid.uuid4())}
        headers = {"talq-api-version": "2.7.1"}
        async with self.http.request(
            method, self.base + path, params=params, json=body, headers=headers
        ) as response:
            text = await response.text()
            assert response.status < 300, f"{method} {path}: {response.status} {text}"
            return response.status


async def test_a_night_driven_over_talq(tmp_path: Path) -> None:
    cms_sim = SimulatedCms(free_port())
    await cms_sim.start()
    async with ModbusStreet(lampposts=3, meters=0) as street:
        port = free_port()
        config = sample_config(tmp_path, street, port=port, cms_uri=cms_sim.base,
                               programs=CONFIGURED)  # fmt: skip
        gw = config.gateway
        assert gw.latitude is not None and gw.longitude is not None
        start = dt.datetime(2026, 6, 21, 16, 30, tzinfo=dt.UTC)  # 18:30 in Milan
        # the clock stands (nearly) still while the CMS configures, then the night runs
        site = Site(config, clock=ScaledClock(start, 1.0))
        clock = site.clock
        assert site.lighting is not None
        sky = site.lighting.sky
        client = CmsClient(site.core, tmp_path / "talq" / "queue.db")
        site.observers.append(client.observe)
        made: list[dict[str, Any]] = []
        put = client.queue.put

        def tap(method: str, path: str, body: Any) -> None:
            if path == "/log-reports":
                made.append(body)
            put(method, path, body)

        client.queue.put = tap  # type: ignore[method-assign]
        ready = asyncio.Event()
        tasks = [asyncio.create_task(serve(site.core, ready)),
                 asyncio.create_task(site.driver.run(site.emit)),
                 asyncio.create_task(client.run())]  # fmt: skip
        seen: dict[str, list[tuple[dt.datetime, int]]] = {d.name: [] for d in street.devices}
        try:
            await asyncio.wait_for(ready.wait(), 10)
            assert await wait_for(lambda: cms_sim.bootstrapped, 20)
            async with aiohttp.ClientSession() as http:
                cms = Cms(http, f"http://127.0.0.1:{port}", cms_sim.address)
                addresses = {n: a for a, (n, _, _) in site.core.catalogue().items()}
                group = str(uuid.uuid4())
                await cms.send(
                    "POST",
                    "/groups",
                    [
                        {
                            "address": group,
                            "ownerCMS": cms.address,
                            "members": [{"resource": "devices", "address": addresses[CORRIDOR]}],
                        }
                    ],
                )
                await cms.send("POST", "/control-programs", programs(cms.address))
                await cms.send(
                    "POST",
                    "/calendars",
                    [
                        {"id": "city", "ownerCMS": cms.address, "defaultProgram": "dusk-50"},
                        {
                            "id": "corridor",
                            "ownerCMS": cms.address,
                            "defaultProgram": "corridor-20",
                        },
                    ],
                )
                for lamp in STREET:
                    await cms.send(
                        "PATCH",
                        f"/devices/{addresses[lamp]}/lampActuator/calendarID",
                        {"type": "AttributeString", "value": "city"},
                    )
                await cms.send(
                    "POST",
                    "/assign-commands",
                    {
                        "addresses": [{"resource": "groups", "address": group}],
                        "entity": {"resource": "calendars", "address": "corridor"},
                    },
                )
                await cms.send("POST", "/logger-configs", {
                    "address": "night-log", "ownerCMS": cms.address,
                    "recordingMode": {"type": "PeriodicRecordingMode",
                                      "content": [{"function": {"functionId": "lampActuator"}}],
                                      "samplingProfiles": [{"samplingStartTime":
                                                            "2026-06-21T00:00:00Z"}]},
                    "reportingMode": {"type": "ImmediateReportingMode", "delay": 0}})  # fmt: skip
                configured_at = clock.now()
                clock = site.clock = ScaledClock(configured_at, SPEED)
                site.lighting.clock = clock
                site.core.now = clock.now
                tasks += [asyncio.create_task(site.lighting.run()),
                          asyncio.create_task(site.overrides.run())]  # fmt: skip
                local = sky.tz
                override_at = dt.datetime(2026, 6, 22, 0, 30, tzinfo=local)
                outage = (dt.datetime(2026, 6, 22, 1, 0, tzinfo=local),
                          dt.datetime(2026, 6, 22, 3, 0, tzinfo=local))  # fmt: skip
                end = dt.datetime(2026, 6, 22, 6, 30, tzinfo=local)
                overridden = cms_down = cms_back = False
                made_while_down = 0
                for _ in range(4000):  # 0.02 s real each: the night takes ~36 s
                    now = clock.now()
                    for name, history in seen.items():
                        value = int(street.register(name, "dimming"))
                        if not history or history[-1][1] != value:
                            history.append((now, value))
                    if not overridden and now >= override_at:
                        overridden = True
                        expiration = (now + dt.timedelta(hours=1)).astimezone(dt.UTC)
                        await cms.send("POST", "/override-commands", {
                            "addresses": [{"resource": "devices",
                                           "address": addresses["lamppost-002"]}],
                            "targetCommand": {**level(80), "reason": "override",
                                              "expiration": expiration.isoformat()}})  # fmt: skip
                    if not cms_down and now >= outage[0]:
                        cms_down = True
                        await cms_sim.stop()
                        reports_before = len(cms_sim.reports)
                    if cms_down and not cms_back and now >= outage[1]:
                        cms_back = True
                        made_while_down = len(made) - reports_before
                        await cms_sim.start()
                    if now > end:
                        break
                    await asyncio.sleep(0.02)
                assert await wait_for(lambda: client.queue.waiting() == 0 and
                                      len(cms_sim.reports) == len(made), 60)  # fmt: skip
                delivered = list(made)  # (the stop may queue a last one, for the next start)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await cms_sim.stop()

    night = dt.date(2026, 6, 21)
    sunset = sky.sun(night)[1]
    sunrise = sky.sun(night + dt.timedelta(days=1))[0]
    tolerance = dt.timedelta(minutes=6)
    assert configured_at < sunset - dt.timedelta(minutes=30), "configured well before dusk"

    def first(name: str, value: int, after: dt.datetime) -> dt.datetime:
        return next(t for t, v in seen[name] if v == value and t >= after)

    # the street follows the CMS's program (100 at dusk, 50 from 23:00), not the config's 70
    for lamp in STREET:
        assert 70 not in [v for _, v in seen[lamp]], seen[lamp]
        assert abs(first(lamp, 100, configured_at) - sunset) < tolerance
        assert abs(first(lamp, 50, sunset) - dt.datetime(2026, 6, 21, 23, 0, tzinfo=sky.tz)) \
            < tolerance  # fmt: skip
        assert abs(first(lamp, 0, sunset + dt.timedelta(hours=2)) - sunrise) < tolerance
    # the corridor group at 20 %, from dusk to dawn
    assert [v for t, v in seen[CORRIDOR] if t > configured_at][-2:] == [20, 0]
    assert abs(first(CORRIDOR, 20, configured_at) - sunset) < tolerance
    # the override held lamppost-002 at 80 for its hour, then the program's 50 came back
    held = first("lamppost-002", 80, override_at)
    back = first("lamppost-002", 50, held)
    assert abs(held - override_at) < tolerance
    assert abs(back - (held + dt.timedelta(hours=1))) < dt.timedelta(minutes=40)
    assert [v for t, v in seen["lamppost-001"] if held <= t <= back] in ([], [50])
    # the outage: reports were made while the CMS was away, and every one arrived, in order
    assert made_while_down > 0
    assert cms_sim.reports == delivered
    assert cms_sim.invalid == [], [(s.method, s.path, s.errors) for s in cms_sim.invalid][:3]
    names = {e["data"]["attributeName"] for r in delivered for e in r["entries"]}
    assert {"actualLightState", "feedbackLightCommand"} <= names
