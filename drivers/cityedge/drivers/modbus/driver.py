"""The Modbus driver: polls devices by their profile's plan, writes points,
keeps per-device health and turns alarm bits into events.

One bus, one owner: every device reached through the same TCP endpoint shares
one connection and one lock, so transactions never interleave on it.

* TCP: each device polls in its own task, so a device that is down (and waits
  out its timeouts) does not slow the others; while down it is retried with a
  backoff.
* RTU: the devices of a serial line take turns in one task, by `Rota` (the
  device due earliest goes next), so a fast-polled device cannot starve the
  others and a dead one, backed off, does not eat the line. A lost port (USB
  adapter unplugged) puts every device DOWN and is reopened with a backoff;
  the line's own health entry (`<driver>:bus`) reports its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from cityedge.drivers.modbus.answers import BadAnswers
from cityedge.drivers.modbus.budget import LineReport
from cityedge.drivers.modbus.buses import Bus, SerialBus, tcp_buses
from cityedge.drivers.modbus.codec import DecodeError, decode, encode
from cityedge.drivers.modbus.config import RtuDevice, RtuSection, Section, TcpDevice, TcpSection
from cityedge.drivers.modbus.errors import BadReply, ExceptionReply, WriteUnconfirmed, reason_of
from cityedge.drivers.modbus.link import Link
from cityedge.drivers.modbus.planner import ReadRequest, plan
from cityedge.drivers.modbus.points import Point
from cityedge.drivers.modbus.profile import Profile
from cityedge.drivers.modbus.rota import Rota
from cityedge.drivers.modbus.writes import settle_unconfirmed
from cityedge.drivers.serialline.port import PortError
from cityedge.sdk.backoff import Backoff, next_due
from cityedge.sdk.health import HealthTracker, unreachable_event
from cityedge.sdk.model import (
    DeviceHealth,
    DeviceInfo,
    DeviceRejected,
    DeviceState,
    DeviceUnreachable,
    Emit,
    Event,
    PointNotWritable,
    Reading,
    Severity,
    UnknownDevice,
    UnknownPoint,
    Value,
    now_wall,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Device:
    config: TcpDevice | RtuDevice
    profile: Profile
    bus: Bus
    tracker: HealthTracker
    timeout: float  # per request
    answers: BadAnswers
    alarms: dict[str, bool] = field(default_factory=dict)  # last state of alarm points

    @property
    def name(self) -> str:
        return self.config.name


class ModbusDriver:
    """The `cityedge.sdk.driver.Driver` of one `[[drivers.modbus]]` table."""

    def __init__(self, section: Section) -> None:
        self.name = section.name
        self._devices: dict[str, _Device] = {}
        self._line: SerialBus | None = None
        if isinstance(section, RtuSection):
            self._line = SerialBus.of(section, self.name)
            bus = Bus(self._line.link)
            self._buses = [bus]
            for rtu in section.devices:
                where = f"{section.port} unit {rtu.unit}"
                tracker = HealthTracker("modbus", rtu.name, self.name, where, where_key="endpoint")
                timeout = rtu.timeout or section.timeout
                self._devices[rtu.name] = _Device(rtu, rtu.profile, bus, tracker, timeout,
                                                  BadAnswers(rtu.name, self.name))  # fmt: skip
        elif isinstance(section, TcpSection):
            buses = tcp_buses(section.devices)
            self._buses = list(buses.values())
            for tcp in section.devices:
                bus = buses[tcp.endpoint]
                where = bus.link.endpoint
                tracker = HealthTracker("modbus", tcp.name, self.name, where, where_key="endpoint")
                self._devices[tcp.name] = _Device(tcp, tcp.profile, bus, tracker, tcp.timeout,
                                                  BadAnswers(tcp.name, self.name))  # fmt: skip
        else:
            raise TypeError(f"not a Modbus section: {type(section).__name__}")
        self._catalogue = {
            d.name: DeviceInfo(
                name=d.name,
                device_type=d.profile.type,
                driver=self.name,
                points={p.name: p.info() for p in d.profile.points.values()},
            )
            for d in self._devices.values()
        }

    # --- the Driver protocol --------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        log.info("modbus.start", driver=self.name, devices=len(self._devices),
                 buses=len(self._buses))  # fmt: skip
        try:
            if self._line is not None:
                await self._run_line(self._line, emit)
                return
            async with asyncio.TaskGroup() as group:
                for device in self._devices.values():
                    group.create_task(self._poll_loop(device, emit), name=f"modbus:{device.name}")
        finally:
            await self.aclose()

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """A live read of `points` (all when None); raises instead of counting failures."""
        dev = self._device(device)
        if points is None:
            requests: Sequence[ReadRequest] = dev.profile.requests
        else:
            chosen = [self._point(dev, name) for name in dict.fromkeys(points)]
            requests = plan(chosen, dev.profile.limits)
        readings: list[Reading] = []
        for request in requests:
            words = await self._read(dev, request)
            ts = now_wall()
            for point in self._points_of(dev, request):
                try:
                    value = self._decode(point, request, words)
                except DecodeError as exc:
                    dev.tracker.failed("decode", str(exc))
                    raise DeviceRejected(f"{device}: {exc}") from None
                readings.append(Reading(device, point.name, value, ts, point.unit))
        return readings

    async def write(self, device: str, point: str, value: Value) -> None:
        dev = self._device(device)
        target = self._point(dev, point)
        if not target.writable:
            raise PointNotWritable(f"{device}.{point} is read-only")
        words = encode(target, value)  # InvalidValue names the point and why
        multiple = dev.profile.write_multiple
        try:
            await self._transact(
                dev,
                lambda link: link.write(target.register, target.address, words,
                                        unit=dev.config.unit, timeout=dev.timeout,
                                        multiple=multiple),
                resend=False,  # a write may have been applied even if its answer was lost
            )  # fmt: skip
        except WriteUnconfirmed as exc:
            read = ReadRequest(target.register, target.address, target.size, (target.name,))
            await settle_unconfirmed(device, target, words, exc, lambda: self._read(dev, read))
        log.info("modbus.write", device=device, point=point, value=value, registers=words)

    def health(self) -> list[DeviceHealth]:
        devices = [d.tracker.snapshot() for d in self._devices.values()]
        if self._line is None:
            return devices
        seen = [d.tracker.health.last_seen for d in self._devices.values()]
        return [*devices, self._line.entry(max((t for t in seen if t is not None), default=None))]

    def line_report(self) -> LineReport | None:
        """An RTU line's budget and use over the last minute (None for TCP)."""
        if self._line is None:
            return None
        return self._line.report()

    def catalogue(self) -> dict[str, DeviceInfo]:
        return dict(self._catalogue)

    # --- polling --------------------------------------------------------------------

    async def poll(self, device: str) -> list[Reading | Event]:
        """One poll of one device by its plan: readings, alarm and reachability events.

        Failures are counted in health, never raised.
        """
        dev = self._device(device)
        items: list[Reading | Event] = []
        answered = 0
        trouble: str | None = None
        down: DeviceUnreachable | None = None
        faults: dict[str, str] = {}  # bad answers, by reason (device.bad_answer)
        for request in dev.profile.requests:
            try:
                words = await self._read(dev, request)
            except (BadReply, ExceptionReply) as exc:  # it answered, but not well
                answered += 1
                trouble = str(exc)
                faults.setdefault(exc.reason, trouble)
                continue
            except DeviceUnreachable as exc:
                down = exc
                break  # the rest would only wait out the same timeouts
            answered += 1
            ts = now_wall()
            for point in self._points_of(dev, request):
                try:
                    value = self._decode(point, request, words)
                except DecodeError as exc:
                    dev.tracker.failed("decode", str(exc))
                    trouble = str(exc)
                    faults.setdefault("decode", trouble)
                    continue
                items.append(Reading(dev.name, point.name, value, ts, point.unit))
                if point.alarm is not None:
                    items += self._alarm(dev, point, point.alarm, bool(value), ts)

        if down is not None and answered == 0:
            state, detail = DeviceState.DOWN, str(down)
        elif down is not None or trouble is not None:
            state, detail = DeviceState.DEGRADED, str(down or trouble)
        else:
            state, detail = DeviceState.UP, None
        items += self._settle(dev, state, detail, down)
        return items + dev.answers.after_poll(faults, answered=down is None)

    def _settle(
        self, dev: _Device, state: DeviceState, detail: str | None, down: DeviceUnreachable | None
    ) -> list[Event]:
        """Record a poll's outcome; a device going down or coming back is an event."""
        previous = dev.tracker.settle(state, detail)
        data: dict[str, object] = {"driver": self.name}
        if down is not None:
            data |= {"reason": reason_of(down), "detail": str(down)}
        event = unreachable_event(dev.name, state, previous, data)
        return [] if event is None else [event]

    async def _poll_safely(self, dev: _Device) -> list[Reading | Event]:
        try:
            return await self.poll(dev.name)
        except Exception as exc:  # a bug must not stop the street's other devices
            log.exception("modbus.poll_crashed", device=dev.name)
            dev.tracker.failed("internal", repr(exc))
            return []

    async def _poll_loop(self, dev: _Device, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            items = await self._poll_safely(dev)
            if items:
                await emit(items)
            now = loop.time()
            tick = next_due(
                tick,
                now,
                dev.config.poll_interval,
                down_polls=dev.tracker.down_polls,
                backoff_max=dev.config.backoff_max,
            )
            await asyncio.sleep(tick - now)

    # --- a serial line --------------------------------------------------------------

    async def _run_line(self, line: SerialBus, emit: Emit) -> None:
        """Poll the devices of one serial line in turn, for as long as the driver runs.

        The port is (re)opened here: while it cannot be used every device is DOWN,
        and reopening waits a backoff (doubling up to `reopen_max`) that resets
        once the line carries an answer again.
        """
        loop = asyncio.get_running_loop()
        link = line.link
        budget = line.budget
        log.info("modbus.line", driver=self.name, port=link.endpoint, line=str(link.line),
                 gap_ms=round(link.gap * 1000, 3), max_tx_s=round(budget.max_transactions_per_s, 1),
                 asked_tx_s=round(line.demand, 1))  # fmt: skip
        if line.demand > budget.max_transactions_per_s:
            log.warning("modbus.line_oversubscribed", driver=self.name, port=link.endpoint,
                        asked_tx_s=round(line.demand, 1),
                        max_tx_s=round(budget.max_transactions_per_s, 1))  # fmt: skip
        rota = Rota(self._devices, loop.time())
        # no jitter: one gateway owns this port, nobody to fall out of step with
        backoff = Backoff(min(0.5, line.reopen_max), line.reopen_max, jitter=0.0)
        while True:
            if not link.is_open:
                lost = link.port.lost
                if lost is not None:  # it died under us: say so, give it time, then reopen
                    await link.close()
                    await self._line_down(line, lost, emit)
                    await asyncio.sleep(backoff.next())
                try:
                    await link.open(0)
                except PortError as exc:
                    await self._line_down(line, exc, emit)
                    await asyncio.sleep(backoff.next())
                    continue
            if line.health.state is not DeviceState.UP:
                line.came_up(self.name)
                rota.everyone_now(loop.time())
            name, due = rota.next()
            wait = due - loop.time()
            if wait > 0:  # idle until the next device is due, unless the line dies first
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await link.port.lost_event.wait()
                continue
            dev = self._devices[name]
            items = await self._poll_safely(dev)
            rota.served(name, loop.time(), dev.config.poll_interval,
                        down_polls=dev.tracker.down_polls,
                        backoff_max=dev.config.backoff_max)  # fmt: skip
            if dev.tracker.health.state is not DeviceState.DOWN:
                backoff.reset()  # the line carries answers again
            if items:
                await emit(items)

    async def _line_down(self, line: SerialBus, exc: PortError, emit: Emit) -> None:
        """The port is lost or will not open: every device on it is DOWN."""
        line.went_down(exc, self.name)
        for dev in self._devices.values():
            events = self._settle(dev, DeviceState.DOWN, str(exc), exc)
            if events:
                await emit(events)

    def _alarm(self, dev: _Device, point: Point, kind: str, on: bool, ts: float) -> list[Event]:
        before = dev.alarms.get(point.name)
        dev.alarms[point.name] = on
        if on is before or (before is None and not on):
            return []  # no change, or first seen quiet: nothing to raise or clear
        log.info("modbus.alarm", device=dev.name, kind=kind, active=on)
        return [
            Event(
                kind,
                source=dev.name,
                ts=ts,
                severity=Severity.ALARM,
                active=on,
                data={"point": point.name},
            )
        ]

    # --- transactions ---------------------------------------------------------------

    async def _read(self, dev: _Device, request: ReadRequest) -> list[int]:
        return await self._transact(
            dev,
            lambda link: link.read(
                request.kind,
                request.address,
                request.count,
                unit=dev.config.unit,
                timeout=dev.timeout,
            ),
        )

    async def _transact(
        self, dev: _Device, op: Callable[[Link], Awaitable[T]], *, resend: bool = True
    ) -> T:
        """One request under the bus lock, retried on timeouts and bad replies;
        every attempt and every failure counted. With `resend` False (writes) only a
        failure to connect is retried (nothing was sent); once the request went out,
        a missing or garbled answer is `WriteUnconfirmed`, never a second send."""
        attempts = dev.config.retries + 1
        pause = dev.profile.request_pause
        for attempt in range(1, attempts + 1):
            async with dev.bus.lock:
                dev.tracker.sent()
                started = time.perf_counter()
                sent = False
                try:
                    await dev.bus.link.open(dev.timeout)
                    started = time.perf_counter()  # connecting is not part of the latency
                    sent = True
                    result = await op(dev.bus.link)
                except (ExceptionReply, BadReply) as exc:  # it answered, just not well
                    dev.tracker.answered((time.perf_counter() - started) * 1000)
                    dev.tracker.failed(exc.reason, str(exc))
                    if isinstance(exc, BadReply) and not resend:
                        raise WriteUnconfirmed(str(exc)) from exc
                    if isinstance(exc, ExceptionReply) or attempt == attempts:
                        raise  # an exception reply is the device's last word: no retry
                    continue
                except DeviceUnreachable as exc:
                    # the device's health counts a port failure as "port"; the line's
                    # health counts it by its own reason (absent, hangup, …)
                    reason = "port" if isinstance(exc, PortError) else reason_of(exc)
                    dev.tracker.failed(reason, str(exc))
                    if sent and not resend:
                        raise WriteUnconfirmed(str(exc)) from exc
                    if attempt == attempts or isinstance(exc, PortError):
                        raise  # a lost port is the line's to reopen, not this request's
                    continue
                finally:
                    if pause:
                        await asyncio.sleep(pause)
                dev.tracker.answered((time.perf_counter() - started) * 1000)
                return result
        raise AssertionError("retry loop exits by return or raise")

    # --- lookups --------------------------------------------------------------------

    def _device(self, name: str) -> _Device:
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDevice(f"no device {name!r} in modbus driver {self.name!r}") from None

    def _point(self, dev: _Device, name: str) -> Point:
        try:
            return dev.profile.points[name]
        except KeyError:
            raise UnknownPoint(
                f"{dev.name}: no point {name!r} in profile {dev.profile.type!r}"
            ) from None

    @staticmethod
    def _points_of(dev: _Device, request: ReadRequest) -> list[Point]:
        return [dev.profile.points[name] for name in request.points]

    @staticmethod
    def _decode(point: Point, request: ReadRequest, words: Sequence[int]) -> Value:
        start = point.address - request.address
        return decode(point, words[start : start + point.size])

    async def aclose(self) -> None:
        """Close every connection (run() does it when it stops)."""
        for bus in self._buses:
            await bus.link.close()
