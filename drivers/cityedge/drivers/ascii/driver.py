"""The ASCII driver: polls request/response devices by their profile, writes
points through templates, keeps per-device health.

One line, one owner: every exchange (request out, answer in) holds the line's
lock, so two devices on an RS-485 line, or a poll and a write, never
interleave. Lines left over from an earlier exchange (a late answer after a
timeout, a device's unsolicited chatter) are discarded before each request
and counted as `stray`. A lost port closes; the next exchange reopens it, no
sooner than the reopen backoff allows, so an unplugged adapter costs one
failed `open()` per backoff step, not one per poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import structlog

from cityedge.drivers.ascii.config import AsciiDevice, Section
from cityedge.drivers.ascii.points import Point
from cityedge.drivers.ascii.profile import Profile
from cityedge.drivers.ascii.reply import BadReply, Refused, check_write_answer, parse_reply, shown
from cityedge.drivers.serialline.line import SerialLine
from cityedge.drivers.serialline.port import PortError, PortLost, PortUnavailable
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
    InvalidValue,
    PointNotWritable,
    Reading,
    UnknownDevice,
    UnknownPoint,
    Value,
    now_wall,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Device:
    config: AsciiDevice
    profile: Profile
    tracker: HealthTracker
    polls: dict[str, str]  # request name → the text sent (templates filled in)

    @property
    def name(self) -> str:
        return self.config.name


class AsciiDriver:
    """The `cityedge.sdk.driver.Driver` of one `[[drivers.ascii]]` table: one line, its devices."""

    def __init__(self, section: Section) -> None:
        self.name = section.name
        self.section = section
        self._line = SerialLine.of(section, on_dropped=self._line_noise)
        self._lock = asyncio.Lock()
        self._reopen = Backoff(section.reopen_min, section.reopen_max)
        self._reopen_at = 0.0  # monotonic: no open attempt before this
        self._open_error: PortUnavailable | None = None
        self._current: _Device | None = None  # whose exchange holds the line
        self._devices: dict[str, _Device] = {}
        for device in section.devices:
            address = device.address or ""
            self._devices[device.name] = _Device(
                device,
                device.profile,
                HealthTracker("ascii", device.name, self.name, section.port),
                {r.name: r.send.format(address=address) for r in device.profile.requests.values()},
            )
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
        log.info("ascii.start", driver=self.name, port=self.section.port, baud=self.section.baud,
                 devices=len(self._devices))  # fmt: skip
        try:
            async with asyncio.TaskGroup() as group:
                for device in self._devices.values():
                    group.create_task(self._poll_loop(device, emit), name=f"ascii:{device.name}")
        finally:
            self._line.close()

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """A live read: the requests carrying `points` (all when None); raises on failure."""
        dev = self._device(device)
        if points is None:
            wanted = list(dev.profile.points)
        else:
            wanted = [self._point(dev, name).name for name in dict.fromkeys(points)]
        requests = dict.fromkeys(dev.profile.points[name].read for name in wanted)
        values: dict[str, Value] = {}
        for name in requests:
            request = dev.profile.requests[name]
            try:
                values |= await self._exchange(
                    dev, dev.polls[name], partial(parse_reply, dev.profile, request)
                )
            except (Refused, BadReply) as exc:
                raise DeviceRejected(f"{device}: {exc}") from None
        ts = now_wall()
        return [self._reading(dev, name, values[name], ts) for name in wanted if name in values]

    async def write(self, device: str, point: str, value: Value) -> None:
        dev = self._device(device)
        target = self._point(dev, point)
        if not target.writable or target.write is None:
            raise PointNotWritable(f"{device}.{point} is read-only")
        try:
            wire = target.encode(value)  # InvalidValue: checked before anything is sent
        except InvalidValue as exc:
            raise InvalidValue(f"{device}.{exc}") from None
        text = target.write.format(value=wire, address=dev.config.address or "")
        try:
            await self._exchange(dev, text, partial(check_write_answer, dev.profile, target))
        except (Refused, BadReply) as exc:
            raise DeviceRejected(f"{device}.{point}: {exc}") from None
        log.info("ascii.write", device=device, point=point, value=value)

    def health(self) -> list[DeviceHealth]:
        return [d.tracker.snapshot() for d in self._devices.values()]

    def catalogue(self) -> dict[str, DeviceInfo]:
        return dict(self._catalogue)

    # --- polling --------------------------------------------------------------------

    async def poll(self, device: str) -> list[Reading | Event]:
        """One poll of one device: readings and reachability events; failures are
        counted in health, never raised."""
        dev = self._device(device)
        items: list[Reading | Event] = []
        answered = 0
        trouble: str | None = None
        down: DeviceUnreachable | None = None
        for request in dev.profile.requests.values():
            try:
                values = await self._exchange(
                    dev, dev.polls[request.name], partial(parse_reply, dev.profile, request)
                )
            except (Refused, BadReply) as exc:  # it answered, just not well
                answered += 1
                trouble = f"{request.name}: {exc}"
                continue
            except DeviceUnreachable as exc:
                down = exc
                break  # the other requests would only wait out the same silence
            answered += 1
            ts = now_wall()
            items += [self._reading(dev, name, value, ts) for name, value in values.items()]

        if down is not None and answered == 0:
            state, detail = DeviceState.DOWN, str(down)
        elif down is not None or trouble is not None:
            state, detail = DeviceState.DEGRADED, str(down or trouble)
        else:
            state, detail = DeviceState.UP, None
        previous = dev.tracker.settle(state, detail)
        data: dict[str, object] = {"driver": self.name, "port": self.section.port}
        if down is not None:
            reason = down.reason if isinstance(down, PortError) else "timeout"
            data |= {"reason": reason, "detail": str(down)}
        event = unreachable_event(dev.name, state, previous, data)
        return items if event is None else [*items, event]

    async def _poll_loop(self, dev: _Device, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        interval = dev.config.poll_interval
        tick = loop.time()
        while True:
            try:
                items = await self.poll(dev.name)
            except Exception as exc:  # a bug must not stop the line's other devices
                log.exception("ascii.poll_crashed", device=dev.name)
                dev.tracker.failed("internal", repr(exc))
                items = []
            if items:
                await emit(items)
            now = loop.time()
            tick = next_due(tick, now, interval, down_polls=dev.tracker.down_polls,
                            backoff_max=dev.config.backoff_max)  # fmt: skip
            await asyncio.sleep(tick - now)

    # --- exchanges ------------------------------------------------------------------

    async def _exchange(self, dev: _Device, text: str, parse: Callable[[bytes], T]) -> T:
        """Send `text`, take the answer line and `parse` it, under the line's lock.

        Retried after a timeout or a bad answer; a refusal (`Refused`) and a
        lost or missing port are final. Every attempt and failure is counted.
        """
        payload = self._payload(dev, text)
        config = dev.config
        attempts = config.retries + 1
        for attempt in range(1, attempts + 1):
            async with self._lock:
                self._current = dev
                dev.tracker.sent()
                latency = 0.0
                try:
                    self._ensure_open()
                    started = time.perf_counter()
                    async with asyncio.timeout(config.timeout):
                        stray = self._line.discard_input()
                        if stray:
                            dev.tracker.bad_input("stray", f"{stray} line(s) nobody asked for")
                        await self._line.write(payload, config.timeout)
                        raw = await self._answer(dev, text)
                    latency = (time.perf_counter() - started) * 1000
                    result = parse(raw)
                except TimeoutError:
                    dev.tracker.failed("timeout", f"no answer to {shown(text)} within "
                                                  f"{config.timeout:g} s")  # fmt: skip
                    if attempt == attempts:
                        raise DeviceUnreachable(
                            f"{dev.name}: no answer to {shown(text)} within {config.timeout:g} s "
                            f"({attempts} attempt(s))"
                        ) from None
                    continue
                except Refused as exc:
                    dev.tracker.answered(latency)
                    dev.tracker.failed("refused", f"{shown(text)}: {exc}")
                    raise
                except BadReply as exc:
                    dev.tracker.answered(latency)
                    dev.tracker.failed(exc.reason, f"{shown(text)}: {exc}")
                    if attempt == attempts:
                        raise
                    continue
                except PortLost as exc:
                    self._lost(exc)
                    dev.tracker.failed(exc.reason, str(exc))
                    raise
                except PortUnavailable as exc:
                    dev.tracker.failed(exc.reason, str(exc))
                    raise
                finally:
                    self._current = None
                    if dev.profile.request_pause and self._line.is_open:
                        await asyncio.sleep(dev.profile.request_pause)
                dev.tracker.answered(latency)
                return result
        raise AssertionError("retry loop exits by return or raise")

    async def _answer(self, dev: _Device, sent: str) -> bytes:
        """The answer line (the echo of the request skipped, for devices that echo)."""
        echo = dev.profile.echo
        while True:
            raw = await self._line.read_line(timeout=dev.config.timeout)
            if echo and raw == sent.encode(dev.profile.encoding, "replace"):
                echo = False
                continue
            return raw

    def _payload(self, dev: _Device, text: str) -> bytes:
        profile = dev.profile
        try:
            return (text + profile.terminator).encode(profile.encoding)
        except UnicodeEncodeError as exc:
            raise InvalidValue(f"{dev.name}: {shown(text)} has characters {profile.encoding} "
                               f"cannot carry ({exc.reason})") from None  # fmt: skip

    def _ensure_open(self) -> None:
        line = self._line
        if line.is_open and line.lost is None:
            return
        if line.is_open:  # lost while idle: noticed now
            self._lost(line.lost or PortLost(line.path, "closed", "closed"))
        loop = asyncio.get_running_loop()
        if self._open_error is not None and loop.time() < self._reopen_at:
            raise self._open_error  # still backing off: do not hammer a missing node
        try:
            line.open()
        except PortUnavailable as exc:
            self._open_error = exc
            self._reopen_at = loop.time() + self._reopen.next()
            raise
        self._open_error = None
        self._reopen.reset()
        log.info("ascii.port_open", driver=self.name, port=line.path)

    def _lost(self, exc: PortLost) -> None:
        self._line.close()
        log.warning("ascii.port_lost", driver=self.name, port=exc.port, reason=exc.reason,
                    detail=exc.detail)  # fmt: skip

    def _line_noise(self, reason: str, detail: str) -> None:
        dev = self._current or next(iter(self._devices.values()))
        dev.tracker.bad_input(reason, detail)

    # --- lookups --------------------------------------------------------------------

    def _device(self, name: str) -> _Device:
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDevice(f"no device {name!r} in ascii driver {self.name!r}") from None

    def _point(self, dev: _Device, name: str) -> Point:
        try:
            return dev.profile.points[name]
        except KeyError:
            raise UnknownPoint(
                f"{dev.name}: no point {name!r} in profile {dev.profile.type!r}"
            ) from None

    @staticmethod
    def _reading(dev: _Device, name: str, value: Value, ts: float) -> Reading:
        return Reading(dev.name, name, value, ts, dev.profile.points[name].unit)
