"""The CMS client against a CMS simulated on the official CMS OpenAPI file: the
bootstrap in the specification's order, the device announcement and the log
reports all validate against the file (0 invalid); a CMS outage loses no report
and they arrive in the order they were made."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cityedge.gateway.talq.cms import NIL, CmsClient
from cityedge.street.modbus import ModbusStreet
from tests.talq.cms_sim import SimulatedCms
from tests.talq.site import Site, free_port, needs_spec, sample_config, wait_for

pytestmark = needs_spec

LOGGER: dict[str, Any] = {
    "address": "lamp-logger",
    "ownerCMS": "cms",
    "recordingMode": {"type": "PeriodicRecordingMode",
                      "content": [{"function": {"functionType": "LampMonitorFunction",
                                                "attributes": [{"name": "activePower"}]}},
                                  {"function": {"functionId": "lampActuator"}}],
                      "samplingProfiles": [{"samplingStartTime": "2026-01-01T00:00:00Z",
                                            "samplingPeriod": "PT1S"}]},
    "reportingMode": {"type": "ImmediateReportingMode", "delay": 0},
}  # fmt: skip


class Running:
    def __init__(
        self, site: Site, client: CmsClient, cms: SimulatedCms, street: ModbusStreet
    ) -> None:
        self.site, self.client, self.cms, self.street = site, client, cms, street
        self.made: list[dict[str, Any]] = []  # every report, in the order it was queued
        put = client.queue.put

        def tap(method: str, path: str, body: Any) -> None:
            if path == "/log-reports":
                self.made.append(body)
            put(method, path, body)

        client.queue.put = tap  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, *, lighting: bool = False) -> AsyncIterator[Running]:
    cms = SimulatedCms(free_port())
    await cms.start()
    async with ModbusStreet(lampposts=3, meters=1) as street:
        config = sample_config(tmp_path, street, port=free_port(), cms_uri=cms.base,
                               recheck_s=1.0)  # fmt: skip
        site = Site(config)
        client = CmsClient(site.core, tmp_path / "talq" / "queue.db")
        site.observers.append(client.observe)
        run = Running(site, client, cms, street)
        tasks = [asyncio.create_task(site.driver.run(site.emit)),
                 asyncio.create_task(client.run())]  # fmt: skip
        if lighting and site.lighting is not None:
            tasks.append(asyncio.create_task(site.lighting.run()))
        try:
            yield run
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await cms.stop()


def entries(reports: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["data"]["srcAddress"], e["data"]["attributeName"], e["data"]["timestamp"])
            for r in reports for e in r["entries"]]  # fmt: skip


async def test_bootstrap_announcement_and_reports_validate_against_the_cms_file(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as run:
        cms, site = run.cms, run.site
        assert await wait_for(lambda: cms.bootstrapped and len(cms.devices) >= 4, 30)
        steps = [(s.method, s.path) for s in cms.seen[:6]]
        assert steps[:5] == [("POST", "/devices"), ("POST", "/device-classes"),
                             ("PATCH", f"/devices/{cms.gateway_address}"), ("POST", "/services"),
                             ("POST", "/device-classes")], steps  # fmt: skip
        assert cms.seen[0].query["clientAddress"] == NIL
        assert all(s.query["clientAddress"] == cms.gateway_address for s in cms.seen[1:])
        assert site.core.store.gateway_address == cms.gateway_address
        assert site.core.store.cms_address == cms.address
        names = {d["name"] for d in cms.devices}
        assert names == {"lamppost-001", "lamppost-002", "lamppost-003", "meter-01"} or \
            {n for n in names if n.startswith("lamppost")} == {"lamppost-001", "lamppost-002",
                                                              "lamppost-003"}  # fmt: skip
        profiles = next(s for s in cms.services if s["name"] == "ConfigurationService")
        assert "lighting" in profiles["supportedProfiles"]
        # a CMS's logger configuration: reports of power and lamp state follow
        site.core.store.loggers[LOGGER["address"]] = LOGGER
        assert await wait_for(lambda: len(entries(cms.reports)) >= 12, 30)
        names_seen = {name for _, name, _ in entries(cms.reports)}
        assert {"activePower", "actualLightState", "feedbackLightCommand"} <= names_seen
        assert cms.invalid == [], [(s.method, s.path, s.errors) for s in cms.invalid][:3]
        assert sum(s.path == "/log-reports" for s in cms.seen) == len(cms.reports) >= 1


async def test_a_cms_outage_loses_no_report_and_keeps_their_order(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        cms, site, client = run.cms, run.site, run.client
        assert await wait_for(lambda: cms.bootstrapped and len(cms.devices) >= 4, 30)
        site.core.store.loggers[LOGGER["address"]] = LOGGER
        assert await wait_for(lambda: len(cms.reports) >= 2, 30)
        await cms.stop()  # the CMS is unreachable: reports wait in the queue
        made_before = len(run.made)
        assert await wait_for(lambda: len(run.made) >= made_before + 4, 30)
        assert client.queue.waiting() > 0
        await cms.start()
        assert await wait_for(lambda: client.queue.waiting() == 0 and
                              len(cms.reports) == len(run.made), 60)  # fmt: skip
        await asyncio.sleep(0)
        made, received = entries(run.made[: len(cms.reports)]), entries(cms.reports)
        assert received == made  # every entry, in order: 0 lost, 0 reordered
        assert client.refused == 0
        assert cms.invalid == [], [(s.method, s.path, s.errors) for s in cms.invalid][:3]


async def test_a_cms_that_answers_500_gets_the_report_again(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        cms = run.cms
        assert await wait_for(lambda: cms.bootstrapped, 30)
        cms.fail_reports = 3
        run.site.core.store.loggers[LOGGER["address"]] = LOGGER
        assert await wait_for(lambda: cms.fail_reports == 0 and len(cms.reports) >= 3, 60)
        refused = [s for s in cms.seen if s.path == "/log-reports"][:3]
        # the first report was offered three times, then taken: same request id each time
        assert len({s.query["talqRequestId"] for s in refused}) == 1
        assert entries(cms.reports) == entries(run.made[: len(cms.reports)])
        assert run.client.refused == 0


async def test_lighting_alarms_reach_the_cms_as_events(tmp_path: Path) -> None:
    logger: dict[str, Any] = {"address": "alarms", "ownerCMS": "cms",
              "recordingMode": {"type": "EventRecordingMode",
                                "sourceEvents": {"whiteList": ["controlGearFailure"]}},
              "reportingMode": {"type": "ImmediateReportingMode", "delay": 0}}  # fmt: skip
    async with running(tmp_path, lighting=True) as run:
        cms, site = run.cms, run.site
        street = run.street
        assert await wait_for(lambda: cms.bootstrapped, 30)
        site.core.store.loggers[logger["address"]] = logger
        lamp = street.lamppost("lamppost-002")
        lamp.driver_fault = True
        lamp.update()

        def events() -> list[dict[str, Any]]:
            return [e["data"] for r in cms.reports for e in r["entries"]
                    if e["data"]["type"] == "EventLogData"]  # fmt: skip

        assert await wait_for(lambda: len(events()) >= 1, 30)
        lamp.driver_fault = False
        lamp.update()
        assert await wait_for(lambda: len(events()) >= 2, 30)
        address = site.core.store.address_of("lamppost-002")
        assert [(e["eventType"], e["startEndFlag"], e["srcAddress"]) for e in events()[:2]] == [
            ("controlGearFailure", True, f"{address}/lampMonitor"),
            ("controlGearFailure", False, f"{address}/lampMonitor"),
        ]
        assert cms.invalid == [], [(s.method, s.path, s.errors) for s in cms.invalid][:3]


async def test_reports_queued_while_the_cms_is_away_survive_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        cms, site, client = run.cms, run.site, run.client
        assert await wait_for(lambda: cms.bootstrapped, 30)
        await cms.stop()
        site.core.store.loggers[LOGGER["address"]] = LOGGER
        assert await wait_for(lambda: len(run.made) >= 3, 30)
        site.observers.remove(client.observe)
        runner = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__  # type: ignore[union-attr]
                      == "CmsClient.run")  # fmt: skip
        runner.cancel()  # the agent stops with reports queued
        await asyncio.gather(runner, return_exceptions=True)
        queued = entries(run.made)
        assert queued
        # the agent starts again: a new client on the same queue file
        again = CmsClient(site.core, tmp_path / "talq" / "queue.db")
        assert again.queue.waiting() >= len(run.made)  # (and the announcement, if it waited)
        await cms.start()
        task = asyncio.create_task(again.run())
        try:
            assert await wait_for(lambda: len(cms.reports) >= len(run.made), 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert entries(cms.reports)[: len(queued)] == queued
        assert cms.invalid == []
