"""The lighting controller: runs the programs at the edge, uplink or not.

It evaluates each group's program against the sun at the gateway's place,
writes levels through the drivers' write path (the one commands use), and
re-sends a level when a controller reports something else (it rebooted). A
level set by hand (a command, a technician's override) is held until the
program's next step; then the program takes over and says so. It watches the
lampposts' own readings for faults and proves the energy saved, night by
night. It never touches MQTT: events go out through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cityedge.gateway.lighting.energy import Saving, baseline_kwh, consumed_kwh, report
from cityedge.gateway.lighting.program import Group, Lighting, load_lighting
from cityedge.gateway.lighting.schedule import Sky, check_order, level_at
from cityedge.sdk.atomic import write_atomic
from cityedge.sdk.model import (
    Command,
    CommandResult,
    DeviceError,
    Emit,
    Event,
    Reading,
    ResultCode,
    Severity,
    Value,
)
from cityedge.sdk.problems import FileProblems

log = structlog.get_logger(__name__)

Write = Callable[[str, str, Value], Awaitable[None]]
# (device, point, what took over) -> whether someone (the overrides) reported it
Superseded = Callable[[str, str, dict[str, Any]], bool]


@dataclass(slots=True)
class Hold:
    """A value set by hand on a point the programs drive: kept until `until`, the
    program's next step after it was set."""

    value: Value
    until: dt.datetime


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds


class ScaledClock:
    """A clock that starts at `start` and runs `speed` times faster than real time:
    a night in seconds, for tests and demos."""

    def __init__(self, start: dt.datetime, speed: float) -> None:
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds / self.speed


class LightingController:
    def __init__(
        self,
        lighting: Lighting,
        sky: Sky,
        *,
        write: Write,
        emit: Emit,
        state_dir: Path,
        clock: SystemClock | ScaledClock | None = None,
        known_devices: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.sky = sky
        self._write = write
        self._emit = emit
        self.clock = clock or SystemClock()
        self._known = known_devices
        self.path = state_dir / "lighting" / "program.json"
        self.lighting = self._restore(lighting)
        self.commanded: dict[str, int] = {}
        self.reported: dict[str, tuple[Value, dt.datetime]] = {}
        self.power: dict[str, float] = {}
        self.faulty: dict[str, bool] = {}
        self.energy: dict[str, list[float]] = {}
        self.levels: dict[str, tuple[int, dt.datetime, str]] = {}
        self._since: dict[tuple[str, str], dt.datetime] = {}  # condition first seen
        self.alarms: set[tuple[str, str]] = set()
        self._resend: set[str] = set()
        self._night_open: dict[str, dt.datetime] = {}
        self._wake = asyncio.Event()
        self.holds: dict[tuple[str, str], Hold] = {}
        self.on_superseded: Superseded | None = None

    # --- program ---------------------------------------------------------------------

    def _restore(self, configured: Lighting) -> Lighting:
        """A program pushed earlier (and newer than the config's) survives restarts."""
        try:
            stored = load_lighting(json.loads(self.path.read_text()), str(self.path))
        except FileNotFoundError:
            return configured
        except (ValueError, FileProblems) as exc:
            log.error("lighting.stored_program_unreadable", path=str(self.path), error=str(exc))
            return configured
        return stored if stored.version > configured.version else configured

    def _store(self, raw: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(raw))  # the old program or the new one, never half

    async def push(self, cmd: Command) -> CommandResult:
        """The `lighting.program` operation: validate, store, apply — or keep the old."""
        raw = cmd.args.get("lighting")
        if not isinstance(raw, dict):
            return CommandResult(cmd.id, ResultCode.MALFORMED, "args.lighting must be a table")
        try:
            new = load_lighting(raw, "lighting.program")
            for name, program in new.programs.items():
                try:
                    check_order(program, self.sky, self.clock.now().year)
                except ValueError as exc:
                    raise FileProblems("lighting.program", [f"programs.{name}: {exc}"]) from None
        except FileProblems as err:
            return CommandResult(cmd.id, ResultCode.REJECTED, "; ".join(err.problems))
        if new.version <= self.lighting.version:
            stale = f"stale version {new.version}: running {self.lighting.version}"
            return CommandResult(cmd.id, ResultCode.REJECTED, stale)
        if self._known is not None:
            unknown = sorted({d for g in new.groups for d in g.devices} - set(self._known()))
            if unknown:
                return CommandResult(cmd.id, ResultCode.REJECTED, f"unknown devices {unknown}")
        self._store(new.dump())
        self.lighting = new
        self._wake.set()
        log.info("lighting.program_applied", version=new.version)
        applied = f"program version {new.version} applied"
        return CommandResult(cmd.id, ResultCode.DONE, applied, data={"version": new.version})

    def status(self) -> dict[str, Any]:
        return {
            "version": self.lighting.version,
            "groups": {
                name: {"level": level, "program": program, "next": nxt.isoformat()}
                for name, (level, nxt, program) in self.levels.items()
            },
            "alarms": sorted(f"{kind}:{device}" for kind, device in self.alarms),
            "holds": [
                {"device": d, "point": p, "value": h.value, "until": h.until.isoformat()}
                for (d, p), h in sorted(self.holds.items())
            ],
        }

    # --- readings from the street ----------------------------------------------------

    def observe(self, items: Sequence[Reading | Event]) -> None:
        cfg = self.lighting
        now = self.clock.now()
        for item in items:
            if not isinstance(item, Reading) or item.device not in self._devices():
                continue
            if item.point == cfg.dimming_point:
                self.reported[item.device] = (item.value, now)
                commanded = self.commanded.get(item.device)
                if commanded is not None and item.value != commanded:
                    self._resend.add(item.device)  # the controller lost its level (reboot?)
                    self._wake.set()
            elif item.point == cfg.power_point and isinstance(item.value, int | float):
                self.power[item.device] = float(item.value)
            elif item.point == cfg.fault_point:
                self.faulty[item.device] = bool(item.value)
            elif item.point == cfg.energy_point and isinstance(item.value, int | float):
                self.energy.setdefault(item.device, []).append(float(item.value))

    def external_write(
        self, device: str, point: str, value: Value, *, since: dt.datetime | None = None
    ) -> None:
        """A command or a technician set a level (or the switch) by hand: it holds until
        the program's next step after `since` (default now), instead of being
        "corrected" at the next check. A value equal to the program's is no hold."""
        cfg = self.lighting
        group = next((g for g in cfg.groups if device in g.devices), None)
        dimming = point == cfg.dimming_point
        if group is None or not (dimming or point == cfg.switch_point):
            return
        if dimming and not (isinstance(value, int | float) and not isinstance(value, bool)):
            return
        level, nxt, _ = level_at(cfg, group, since or self.clock.now(), self.sky)
        if since is None and value == (level if dimming else level > 0):
            self.holds.pop((device, point), None)  # an override ended: back to the program
        else:
            self.holds[(device, point)] = Hold(value, nxt)
        if dimming:
            self.commanded[device] = int(value)
            self._resend.discard(device)
            self._since.pop(("not_following", device), None)

    def _devices(self) -> set[str]:
        return {d for g in self.lighting.groups for d in g.devices}

    # --- running ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            now = self.clock.now()
            upcoming = now + dt.timedelta(seconds=self.lighting.recheck_s)
            for group in self.lighting.groups:
                level, nxt, program = level_at(self.lighting, group, now, self.sky)
                previous = self.levels.get(group.name)
                self.levels[group.name] = (level, nxt, program)
                if previous and previous[0] > 0 and level == 0:
                    await self._energy_report(group, now)
                if level > 0 and group.name not in self._night_open:
                    self._night_open[group.name] = now
                await self._supersede(group, level, program, now)
                await self._apply(group, level)
                upcoming = min(upcoming, nxt)
            await self._check_faults(now)
            wait = max(0.0, (upcoming - self.clock.now()).total_seconds())
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the stop's cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, self.clock.real_seconds(wait) + 0.001)):
                    await self._wake.wait()

    async def _supersede(self, group: Group, level: int, program: str, now: dt.datetime) -> None:
        """Holds whose program step has come end: the program's level is the normal now.
        The overrides report their own end; any other hand-set level is reported here."""
        events: list[Event] = []
        for (device, point), hold in list(self.holds.items()):
            if device not in group.devices or now < hold.until:
                continue
            del self.holds[(device, point)]
            data = {"point": point, "held": hold.value, "level": level, "program": program}
            log.info("lighting.hold_superseded", device=device, **data)
            if self.on_superseded is None or not self.on_superseded(device, point, data):
                events.append(Event("lighting.manual_superseded", device, time.time(),
                                    Severity.INFO, None, data))  # fmt: skip
        if events:
            await self._emit(events)

    async def _apply(self, group: Group, level: int) -> None:
        cfg = self.lighting
        for device in group.devices:
            held = self.holds.get((device, cfg.dimming_point))
            target = int(held.value) if held is not None else level
            if self.commanded.get(device) == target and device not in self._resend:
                continue
            try:
                await self._write(device, cfg.dimming_point, target)
                if cfg.switch_point and (device, cfg.switch_point) not in self.holds:
                    await self._write(device, cfg.switch_point, target > 0)
            except DeviceError as exc:  # retried at the next check
                log.warning("lighting.write_failed", device=device, percent=target, error=str(exc))
                continue
            self.commanded[device] = target
            self._resend.discard(device)
            self._since.pop(("not_following", device), None)
            log.info("lighting.level", group=group.name, device=device, percent=target)

    async def _check_faults(self, now: dt.datetime) -> None:
        cfg = self.lighting
        grace = dt.timedelta(seconds=cfg.grace_s)
        events: list[Event] = []
        for device in self._devices():
            commanded = self.commanded.get(device)
            power = self.power.get(device)
            reported = self.reported.get(device)
            conditions = {
                "lamp_failure": commanded is not None and commanded > 0 and power is not None
                and power < cfg.failure_watts,
                "day_burner": commanded == 0 and power is not None and power >= cfg.failure_watts,
                "driver_fault": self.faulty.get(device, False),
                "not_following": commanded is not None and reported is not None
                and reported[0] != commanded,
            }  # fmt: skip
            for kind, present in conditions.items():
                key = (kind, device)
                if present:
                    first = self._since.setdefault(key, now)
                    due = kind == "driver_fault" or now - first >= grace
                    if due and key not in self.alarms:
                        self.alarms.add(key)
                        events.append(self._alarm(kind, device, True, commanded, power))
                else:
                    self._since.pop(key, None)
                    if key in self.alarms:
                        self.alarms.discard(key)
                        events.append(self._alarm(kind, device, False, commanded, power))
        if events:
            await self._emit(events)

    def _alarm(
        self, kind: str, device: str, active: bool, commanded: int | None, power: float | None
    ) -> Event:
        return Event(f"lighting.{kind}", device, time.time(), Severity.ALARM, active,
                     {"commanded": commanded, "power_w": power})  # fmt: skip

    async def _energy_report(self, group: Group, now: dt.datetime) -> None:
        opened = self._night_open.pop(group.name, None)
        hours = (now - opened).total_seconds() / 3600 if opened else 0.0
        savings = [
            Saving(
                d, consumed_kwh(self.energy.pop(d, [])), baseline_kwh(group.baseline_watts, hours)
            )
            for d in group.devices
        ]
        data = {"group": group.name, "night_hours": round(hours, 2), **report(savings)}
        await self._emit([Event("lighting.energy_report", group.name, time.time(), data=data)])
        log.info("lighting.energy_report", group=group.name, saving=data["saving_percent"])
