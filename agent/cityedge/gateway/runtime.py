"""`cityedge run`: build every part from the config and keep it running.

Parts meet only here: drivers emit into the pipeline, the pipeline commits into
the outbox, the uplink drains the outbox and hands commands to the command
handler, which writes through the drivers. Each long-running task is
supervised (restart with jittered backoff); SIGTERM/SIGINT stop the agent
cleanly: the pipeline is drained into the outbox, the last commit is made, the
retained "offline" state is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cityedge.gateway.commands import CommandHandler, ReplayCache, SecurityThrottle
from cityedge.gateway.config import LoadedConfig
from cityedge.gateway.control import technician_tasks
from cityedge.gateway.control.overrides import FILE_NAME as OVERRIDES_FILE
from cityedge.gateway.control.overrides import Overrides
from cityedge.gateway.credentials import gateway_key_path
from cityedge.gateway.outbox import Entry, Outbox
from cityedge.gateway.pipeline import Pipeline
from cityedge.gateway.registry import build_driver
from cityedge.gateway.sdnotify import Notifier
from cityedge.gateway.supervisor import TaskHealth, supervise
from cityedge.gateway.uplink import Uplink
from cityedge.protocol.entries import event_entry
from cityedge.protocol.key_files import load_signing_key
from cityedge.protocol.keys import SigningKey
from cityedge.protocol.sealing import message_sealer
from cityedge.protocol.trust_store import STORE_FILE, TrustStore, announcements_for
from cityedge.sdk import __version__
from cityedge.sdk.driver import Driver
from cityedge.sdk.model import (
    Command,
    CommandResult,
    DeviceHealth,
    DeviceInfo,
    Event,
    PointInfo,
    ResultCode,
    Severity,
    UnknownDevice,
    Value,
)

if TYPE_CHECKING:
    from cityedge.gateway.diagnostics.clock import ClockState
    from cityedge.gateway.lighting import LightingController

log = structlog.get_logger(__name__)

ALARM_EVENTS = frozenset({"outbox.disk_full", "outbox.corrupt"})
# The `diagnostics` command runs the checks that need no network: the broker
# just delivered the command, and a field-device sweep would compete with polling.
REMOTE_CHECK_GROUPS = ("config", "keys", "clock", "disk", "outbox")


def outbox_event(kind: str, data: dict[str, Any]) -> bytes:
    """How the outbox reports on itself (evictions, disk full) without knowing the envelope."""
    severity = Severity.ALARM if kind in ALARM_EVENTS else Severity.WARNING
    active = data.get("active") if isinstance(data.get("active"), bool) else None
    return event_entry(Event(kind, "outbox", time.time(), severity, active, data))


class Agent:
    def __init__(self, loaded: LoadedConfig, *, key: SigningKey | None = None) -> None:
        self.loaded = loaded
        cfg = loaded.config
        self.config = cfg
        self.started = time.time()
        self.key = key or load_signing_key(gateway_key_path(cfg.signing_key_path))
        env = loaded.driver_env()
        self.drivers: dict[str, Driver] = {
            section.name: build_driver(kind, section, env)
            for kind, section in cfg.driver_sections()
            if section.enabled
        }
        self.outbox = Outbox.open(
            cfg.outbox_path,
            seal=message_sealer(self.key, gateway=cfg.gateway.id, site=cfg.gateway.site),
            max_bytes=cfg.outbox.max_bytes,
            max_age=cfg.outbox.max_age,
            synchronous=cfg.outbox.synchronous,
            event_encoder=outbox_event,
            chunk_entries=cfg.uplink.batch_max_readings,
        )
        self.commands = CommandHandler(
            gateway=cfg.gateway.id,
            trusted=TrustStore.open(cfg.gateway.state_dir / STORE_FILE, cfg.keys.trust),
            policy=cfg.policy,
            outbox=self.outbox,
            replay=ReplayCache(cfg.gateway.state_dir / "replay.db"),
            throttle=SecurityThrottle(cfg.keys.refusal_window, cfg.keys.refusal_answers),
            clock_allowance=cfg.keys.clock_allowance,
            catalogue=self.devices,
            write=self.write,
            read=self.read_point,
            operations={
                "ping": self._ping,
                "rebirth": self._rebirth,
                "diagnostics": self._diagnostics,
            },
            on_answer=self._wake_uplink,
        )
        self.uplink = Uplink(
            cfg.uplink,
            cfg.gateway,
            self.outbox,
            self.key,
            birth=self.birth,
            on_command=self.commands.handle,
            on_busy=self.commands.busy,
        )
        self.pipeline = Pipeline(
            self.outbox,
            self.point_table,
            full_report_interval=cfg.pipeline.full_report_interval,
            commit_interval=cfg.outbox.commit_interval,
            queue_size=cfg.pipeline.queue_size,
            on_commit=self.uplink.wake,
        )
        self.lighting = self._lighting()
        if self.lighting is not None:
            self.pipeline.observers.append(self.lighting.observe)
            self.commands.register("lighting.program", self.lighting.push)
        self._clock_at_start: ClockState | None = None  # asked in run(), before drivers poll
        # A rotated gateway key travels with the old key's word for it (docs/protocol.md §12).
        self.key_announcements = announcements_for(cfg.gateway.state_dir, self.key)
        # Technicians' local overrides: restored on time by their own supervised task.
        self.overrides = Overrides(self, cfg.gateway.state_dir / OVERRIDES_FILE)
        if self.lighting is not None:  # an override holds until the program's next step
            self.lighting.on_superseded = self.overrides.superseded
            for o in self.overrides.active():  # resumed after a restart: held since it began
                since = dt.datetime.fromtimestamp(o.started, dt.UTC)
                self.lighting.external_write(o.device, o.point, o.value, since=since)
        self.tasks: dict[str, TaskHealth] = {}
        self.notifier = Notifier()
        self._stop = asyncio.Event()

    def _lighting(self) -> LightingController | None:
        lighting = self.config.lighting
        gateway = self.config.gateway
        if lighting is None or gateway.latitude is None or gateway.longitude is None:
            return None
        # Imported here: sun times (astral, zoneinfo) cost a gateway without lampposts memory.
        from cityedge.gateway.lighting import LightingController, Sky

        sky = Sky(gateway.latitude, gateway.longitude, gateway.timezone)
        return LightingController(
            lighting, sky, write=self._write_device,
            emit=self.pipeline.emit, state_dir=gateway.state_dir,
            known_devices=lambda: self.devices().keys(),
        )  # fmt: skip

    # --- what the rest of the agent may ask (see control.view) ---------------------

    @property
    def config_digest(self) -> str:
        return self.loaded.digest

    def devices(self) -> dict[str, DeviceInfo]:
        out: dict[str, DeviceInfo] = {}
        for driver in self.drivers.values():
            out.update(driver.catalogue())
        return out

    def point_table(self) -> dict[tuple[str, str], PointInfo]:
        return {
            (device.name, point.name): point
            for device in self.devices().values()
            for point in device.points.values()
        }

    def device_health(self) -> list[DeviceHealth]:
        return [h for driver in self.drivers.values() for h in driver.health()]

    def driver_for(self, device: str) -> Driver | None:
        for driver in self.drivers.values():
            if device in driver.catalogue():
                return driver
        return None

    async def write(self, device: str, point: str, value: Value) -> None:
        """A write by hand (a command, a technician): the lighting programs hold it."""
        await self._write_device(device, point, value)
        if self.lighting is not None:
            self.lighting.external_write(device, point, value)

    async def _write_device(self, device: str, point: str, value: Value) -> None:
        driver = self.driver_for(device)
        if driver is None:
            raise UnknownDevice(device)
        await driver.write(device, point, value)

    async def read_point(self, device: str, point: str) -> Value | None:
        driver = self.driver_for(device)
        if driver is None:
            raise UnknownDevice(device)
        readings = await driver.read(device, [point])
        return readings[0].value if readings else None

    def check_write(self, device_type: str, point: PointInfo, value: Value) -> str | None:
        """The command post's policy, for writes that do not come from it."""
        return self.commands.policy.check_write(device_type, point, value)

    def report(self, event: Event) -> None:
        """An event the command post must hear of even if the agent stops now: committed
        to the outbox at once (accepted once committed, like a command's answer)."""
        self.outbox.add([Entry("event", int(event.priority), event.ts, event_entry(event))])
        self.outbox.commit()
        self.uplink.wake()

    def _wake_uplink(self) -> None:
        self.uplink.wake()

    async def _ping(self, cmd: Command) -> CommandResult:
        return CommandResult(
            cmd.id, ResultCode.DONE, "pong", data={"uptime": time.time() - self.started}
        )

    async def _rebirth(self, cmd: Command) -> CommandResult:
        await self.uplink.publish_state()
        return CommandResult(cmd.id, ResultCode.DONE, "state re-published")

    async def _diagnostics(self, cmd: Command) -> CommandResult:
        """The on-device checks that need no network (the broker answered this very
        command), plus each device's health: what a technician would run first."""
        from cityedge.gateway.diagnostics.context import CheckContext
        from cityedge.gateway.diagnostics.runner import run_checks
        from cityedge.sdk.checks import worst

        ctx = CheckContext(self.loaded.path, loaded=self.loaded)
        results = await run_checks(ctx, REMOTE_CHECK_GROUPS)
        status = worst(results)
        return CommandResult(
            cmd.id,
            ResultCode.DONE,
            f"{len(results)} checks, worst {status.label}",
            data={
                "status": status.label,
                "checks": [r.to_json() for r in results],
                "devices": [
                    {
                        "device": h.device,
                        "state": h.state.value,
                        "detail": h.detail or "",
                        "errors": dict(h.errors),
                    }
                    for h in self.device_health()
                ],
            },
        )

    def birth(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "config": self.loaded.digest,
            "started": self.started,
            "key_id": self.key.key_id,
            "devices": [
                {"name": d.name, "type": d.device_type, "driver": d.driver}
                for d in self.devices().values()
            ],
            **({"key_announcements": self.key_announcements} if self.key_announcements else {}),
        }

    def stop(self) -> None:
        self._stop.set()

    # --- running ------------------------------------------------------------------

    def _supervised(self, name: str, factory: Callable[[], Awaitable[None]]) -> Any:
        health = self.tasks.setdefault(name, TaskHealth(name))
        return supervise(name, factory, health)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        log.info(
            "agent.start",
            version=__version__,
            gateway=self.config.gateway.id,
            site=self.config.gateway.site,
            key_id=self.key.key_id,
            drivers=sorted(self.drivers),
            outbox=str(self.config.outbox_path),
            waiting=sum(self.outbox.stats().rows.values()),
        )
        # Readings taken before the first answer would go out unflagged on a machine
        # whose clock is not synchronised: ask before any driver polls.
        self._clock_at_start = await self._ask_clock()
        self.pipeline.clock_trusted = self._clock_at_start.synchronised is not False
        # Every long-running part is one supervised task, started here and stopped
        # together below (not an asyncio.TaskGroup: a driver that ignores
        # cancellation must not hold the stop for ever).
        workers: list[asyncio.Task[None]] = []
        try:
            workers += [
                asyncio.create_task(self._supervised(name, factory), name=name)
                for name, factory in self._parts().items()
            ]
            uplink_task = asyncio.create_task(self._supervised("uplink", self.uplink.run))
            # Not supervised: a watchdog that failed and came back would hide a stuck loop.
            workers.append(asyncio.create_task(self._watchdog(), name="watchdog"))
            self.notifier.ready(f"gateway {self.config.gateway.id}: running")
            await self._stop.wait()
            log.info("agent.stopping")
            self.notifier.stopping()
            for task in workers:
                task.cancel()
            _, stuck = await asyncio.wait(workers, timeout=5)
            for task in stuck:  # a driver that ignores cancellation must not block the stop
                log.error("agent.task_stuck", task=task.get_name())
            # Nothing produced before the stop is lost: queue -> buffer -> disk.
            self.commands.security_reports(everything=True)
            self.pipeline.drain()
            self.pipeline.commit()
            await self.uplink.stop()
            uplink_task.cancel()
            await asyncio.wait([uplink_task], timeout=5)
        finally:
            for task in workers:
                task.cancel()
            self.commands.replay.close()
            self.outbox.close()
            log.info("agent.stopped", last_seq=self.outbox.last_seq())
        return 0

    def _parts(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The supervised tasks besides the uplink (which is stopped last, on its own)."""
        parts: dict[str, Callable[[], Awaitable[None]]] = {
            f"driver:{name}": partial(driver.run, self.pipeline.emit)
            for name, driver in self.drivers.items()
        }
        parts |= {
            "pipeline": self.pipeline.run,
            "committer": self.pipeline.committer,
            "security": self.commands.report_security,
            "clock": self._watch_clock,
            "clock-steps": self._watch_clock_steps,
            "overrides": self.overrides.run,
        }
        if self.lighting is not None:
            parts["lighting"] = self.lighting.run
        # Technicians: the control socket, and the maintenance page when configured.
        parts |= technician_tasks(self)
        return parts

    async def _ask_clock(self) -> ClockState:
        from cityedge.gateway.diagnostics.clock import system_clock

        return await asyncio.to_thread(system_clock)

    async def _watch_clock(self, every: float = 60.0) -> None:
        """Ask the system whether the wall clock is synchronised; flag readings while not.

        The first round takes the answer asked at start-up; a restarted watch asks anew.
        """
        trusted: bool | None = None
        while True:
            state = self._clock_at_start or await self._ask_clock()
            self._clock_at_start = None
            now_trusted = state.synchronised is not False
            if now_trusted != trusted:
                self.pipeline.clock_trusted = now_trusted
                log.log(
                    20 if now_trusted else 30, "clock.state", synchronised=state.synchronised,
                    source=state.source, detail=state.detail,
                )  # fmt: skip
                if trusted is not None or not now_trusted:
                    event = Event("clock.unsynchronised", "clock", time.time(), Severity.WARNING,
                                  not now_trusted, {"source": state.source})  # fmt: skip
                    await self.pipeline.emit([event])
                trusted = now_trusted
            await asyncio.sleep(every)

    async def _watch_clock_steps(self, every: float = 1.0, tolerance: float = 2.0) -> None:
        """A step of the wall clock (NTP after a cold boot without RTC, a bad RTC, an
        operator) shows as a change of wall minus monotonic time. Readings taken before
        it are stamped on the old scale: `clock.stepped` says by how much and up to
        when, so the command post can correct those flagged clock-unsynced."""
        base = time.time() - time.monotonic()
        while True:
            await asyncio.sleep(every)
            wall = time.time()
            step = (wall - time.monotonic()) - base
            if abs(step) > tolerance:
                base += step
                log.warning("clock.stepped", offset_s=round(step, 3))
                data = {"offset": round(step, 3), "until": round(wall - step, 3)}
                await self.pipeline.emit(
                    [Event("clock.stepped", "clock", wall, Severity.WARNING, None, data)]
                )

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            # Pinged from the event loop itself: a blocked loop stops the pings.
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def run_agent(config_path: Path) -> int:
    from cityedge.gateway.validation import validate_file
    from cityedge.sdk.logs import configure_logging

    # The same validation as `cityedge config check`: what one accepts, the other runs.
    checked = validate_file(config_path)
    loaded = checked.loaded
    configure_logging(loaded.config.logging.level, loaded.config.logging.format)
    for warning in checked.warnings:
        log.warning("config.warning", config=str(loaded.path), problem=warning)
    agent = Agent(loaded)
    # What start-up built (modules, profiles, the config) lives as long as the agent:
    # out of the collector's sight, the periodic full collections stay short.
    gc.collect()
    gc.freeze()
    return asyncio.run(agent.run())
