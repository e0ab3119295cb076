"""The NMEA driver: keeps the receiver's port open, decodes what it says, and
keeps the receiver's health.

The port is held for as long as it works. When it is lost (adapter unplugged,
line hung up, node gone) the receiver goes DOWN with the reason, and the port
is reopened with a jittered, doubling backoff until it is back; nothing else
in the agent notices but the event. A receiver that sends no valid sentence
for `stale_after` seconds (dead antenna cable, wrong baud rate) is DOWN too,
with the count of bad lines as a hint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from cityedge.drivers.nmea.config import Section
from cityedge.drivers.nmea.receiver import POINTS, Receiver
from cityedge.drivers.nmea.sentence import SentenceError, parse_sentence
from cityedge.drivers.serialline.line import SerialLine
from cityedge.drivers.serialline.port import PortError, PortLost
from cityedge.sdk.backoff import Backoff
from cityedge.sdk.health import HealthTracker, unreachable_event
from cityedge.sdk.model import (
    DeviceHealth,
    DeviceInfo,
    DeviceState,
    DeviceUnreachable,
    Emit,
    Event,
    PointNotWritable,
    Reading,
    UnknownDevice,
    UnknownPoint,
    Value,
)

log = structlog.get_logger(__name__)

DEVICE_TYPE = "gps-receiver"


class NmeaDriver:
    """The `cityedge.sdk.driver.Driver` of one `[[drivers.nmea]]` table: one receiver, one port."""

    def __init__(self, section: Section) -> None:
        self.name = section.name
        self.section = section
        self.device = section.device
        self._tracker = HealthTracker("nmea", section.device, section.name, section.port)
        self._line = SerialLine.of(section, on_dropped=self._tracker.bad_input)
        self._receiver = Receiver(section.device, section.name, section.interval)
        self._heard: float | None = None  # monotonic time of the last valid sentence
        self._opened: float | None = None  # monotonic time the port was (re)opened
        self._bad_lines = 0  # since the last valid sentence
        self._catalogue = {
            self.device: DeviceInfo(self.device, DEVICE_TYPE, self.name, dict(POINTS))
        }

    @property
    def listening(self) -> bool:
        """True while the port is open (whether or not the receiver talks)."""
        return self._line.is_open and self._line.lost is None

    # --- the Driver protocol --------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.section.reopen_min, self.section.reopen_max)
        log.info("nmea.start", driver=self.name, device=self.device, port=self.section.port,
                 baud=self.section.baud)  # fmt: skip
        try:
            while True:
                try:
                    self._line.open()
                except PortError as exc:
                    await self._down(emit, exc.reason, str(exc))
                    await asyncio.sleep(backoff.next())
                    continue
                self._opened = loop.time()
                self._bad_lines = 0
                log.info("nmea.port_open", device=self.device, port=self.section.port)
                try:
                    await self._listen(emit, backoff)
                except PortLost as exc:
                    self._line.close()
                    await self._down(emit, exc.reason, str(exc))
                    await asyncio.sleep(backoff.next())
        finally:
            self._line.close()

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """The last value of each point (a receiver talks by itself; there is nothing
        to ask). Points without a current value — a position without a fix — are absent."""
        self._check_device(device)
        names = list(POINTS) if points is None else [self._check_point(p) for p in points]
        if self._tracker.state is not DeviceState.UP:
            detail = self._tracker.health.detail or "not heard yet"
            raise DeviceUnreachable(f"{device}: {detail}")
        latest = self._receiver.latest
        return [latest[name] for name in dict.fromkeys(names) if name in latest]

    async def write(self, device: str, point: str, value: Value) -> None:
        self._check_device(device)
        self._check_point(point)
        raise PointNotWritable(f"{device}.{point}: a GPS receiver's points are read-only")

    def health(self) -> list[DeviceHealth]:
        return [self._tracker.snapshot()]

    def catalogue(self) -> dict[str, DeviceInfo]:
        return dict(self._catalogue)

    # --- listening ------------------------------------------------------------------

    async def _listen(self, emit: Emit, backoff: Backoff) -> None:
        """Read sentences until the port is lost (raises PortLost)."""
        loop = asyncio.get_running_loop()
        gap = self.section.epoch_gap
        while True:
            try:
                raw = await self._line.read_line(timeout=gap)
            except TimeoutError:  # the burst is over: emit it now rather than with the next
                items = self._receiver.flush() + self._silence(loop.time())
                if items:
                    await emit(items)
                continue
            self._tracker.sent()
            try:
                sentence = parse_sentence(raw)
            except SentenceError as exc:
                self._bad_lines += 1
                self._tracker.bad_input(exc.reason, f"{exc.detail}: {_shown(raw)}")
                items = self._silence(loop.time())
                if items:
                    await emit(items)
                continue
            self._heard = loop.time()
            self._bad_lines = 0
            backoff.reset()
            self._tracker.answered()
            items = self._up()
            if sentence is not None:
                items += self._receiver.feed(sentence, self._heard)
            if items:
                await emit(items)

    def _silence(self, now: float) -> list[Reading | Event]:
        """DOWN when no valid sentence came for `stale_after` seconds on an open port."""
        since = max(self._heard or 0.0, self._opened or 0.0)
        quiet = now - since
        if quiet < self.section.stale_after:
            return []
        detail = f"no valid sentence for {quiet:.1f} s on {self.section.port}"
        if self._bad_lines:
            detail += f" ({self._bad_lines} bad lines: wrong baud rate?)"
        if self._tracker.state is DeviceState.DOWN:  # already said; keep the detail current
            self._tracker.health.detail = detail
            return []
        self._tracker.failed("silent", detail)
        return self._settle(DeviceState.DOWN, detail, "silent")

    def _up(self) -> list[Reading | Event]:
        if self._tracker.state is DeviceState.UP:
            return []
        return self._settle(DeviceState.UP, None, None)

    async def _down(self, emit: Emit, reason: str, detail: str) -> None:
        self._tracker.failed(reason, detail)
        items = self._receiver.flush()
        items += self._settle(DeviceState.DOWN, detail, reason)
        if items:
            await emit(items)

    def _settle(
        self, state: DeviceState, detail: str | None, reason: str | None
    ) -> list[Reading | Event]:
        previous = self._tracker.settle(state, detail)
        data: dict[str, object] = {"driver": self.name, "port": self.section.port}
        if reason is not None:
            data |= {"reason": reason, "detail": detail}
        event = unreachable_event(self.device, state, previous, data)
        return [] if event is None else [event]

    # --- lookups --------------------------------------------------------------------

    def _check_device(self, device: str) -> None:
        if device != self.device:
            raise UnknownDevice(f"no device {device!r} in nmea driver {self.name!r}")

    def _check_point(self, point: str) -> str:
        if point not in POINTS:
            known = ", ".join(POINTS)
            raise UnknownPoint(f"{self.device}: no point {point!r} (known: {known})")
        return point


def _shown(raw: bytes, limit: int = 40) -> str:
    """A bad line as a log can show it: escaped, and short."""
    text = raw[:limit].decode("ascii", "backslashreplace")
    return repr(text) + ("…" if len(raw) > limit else "")
