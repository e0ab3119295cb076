"""The scanner's life: start (passive where BlueZ allows it), notice a dead radio,
restart, and survive the adapter vanishing or BlueZ restarting.

bleak does not tell a running scanner that BlueZ went away (its D-Bus connection
is reset underneath); the symptom is silence. So we remember when anything was
last heard (a time, never who) and restart the scan when the air has been quiet
for `radio_silence_restart` seconds. A restart that fails marks the adapter
DOWN, and we retry with jittered backoff until it comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, Protocol

import structlog
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.scanner import AdvertisementDataCallback
from bleak.exc import BleakDBusError

from cityedge.sdk.backoff import Backoff

log = structlog.get_logger(__name__)

Mode = Literal["passive", "active"]

# BlueZ passive scanning needs an advertisement-monitor pattern; matching the BTHome
# service-data UUID also keeps every other advertiser out before it reaches us.
BTHOME_PATTERN = OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xd2\xfc")


class Scanner(Protocol):
    """The part of `bleak.BleakScanner` we use."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[..., Scanner]
"""Called like `bleak.BleakScanner(detection_callback=…, scanning_mode=…, bluez={…})`."""


class AdapterUnavailable(Exception):
    pass


def describe(exc: BaseException) -> str:
    """One line a technician can act on, from whatever bleak or D-Bus raised."""
    if isinstance(exc, BleakDBusError):
        details = exc.dbus_error_details
        return f"{exc.dbus_error}: {details}" if details else exc.dbus_error
    if isinstance(exc, FileNotFoundError):
        return f"{exc} (is D-Bus running and BlueZ installed?)"
    if isinstance(exc, TimeoutError):
        return "no answer from BlueZ in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Radio:
    def __init__(
        self,
        *,
        adapter: str,
        mode: Mode,
        scanner_factory: ScannerFactory,
        callback: AdvertisementDataCallback,
        start_timeout: float,
        silence_restart: float,
        retry_min: float,
        retry_max: float,
        on_change: Callable[[bool, str], None],
    ) -> None:
        self.adapter = adapter
        self.wanted: Mode = mode
        self.mode: Mode | None = None  # what is running now
        self.up: bool | None = None  # None until the first start attempt ended
        self.since: float | None = None  # wall clock of the last up/down change
        self.up_since: float = time.monotonic()
        self.detail: str | None = None
        self.starts = 0
        self.failures: dict[str, int] = {}
        self._factory = scanner_factory
        self._callback = callback
        self._start_timeout = start_timeout
        self._silence_restart = silence_restart
        # full jitter: a district's gateways that lost BlueZ together retry apart
        self._backoff = Backoff(retry_min, max(retry_min, retry_max), full_jitter=True)
        self._on_change = on_change
        self._last_heard: float | None = None  # monotonic; when, never who
        self._started = time.monotonic()
        self._passive_failure_logged = False

    def heard(self) -> None:
        """Something was on the air (anyone). Called for every advertisement."""
        self._last_heard = time.monotonic()

    async def run(self) -> None:
        while True:
            try:
                scanner = await self._start()
            except AdapterUnavailable as exc:
                delay = self._backoff.next()
                self._down(str(exc), delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            self._up()
            try:
                await self._watch()
            finally:
                await self._stop(scanner)

    async def _start(self) -> Scanner:
        modes: list[Mode] = ["passive", "active"] if self.wanted == "passive" else ["active"]
        problems = []
        for mode in modes:
            scanner: Scanner | None = None
            try:
                scanner = self._factory(
                    detection_callback=self._callback,
                    scanning_mode=mode,
                    bluez=self._bluez_args(mode),
                )
                async with asyncio.timeout(self._start_timeout):
                    await scanner.start()
            except Exception as exc:  # the bleak/D-Bus boundary: anything it raises is "no radio"
                problems.append(f"{mode} scan: {describe(exc)}")
                self._count("start_" + mode)
                if scanner is not None:
                    await self._stop(scanner, quiet=True)
                continue
            if mode != self.wanted and not self._passive_failure_logged:
                self._passive_failure_logged = True
                log.warning(
                    "ble.passive_unavailable",
                    adapter=self.adapter,
                    error=problems[0],
                    using="active",
                )
            self.mode = mode
            self.starts += 1
            self._started = time.monotonic()
            return scanner
        reasons = {p.split(": ", 1)[1] for p in problems}
        if len(reasons) == 1:  # both modes failed alike: say it once
            raise AdapterUnavailable(f"adapter {self.adapter}: {reasons.pop()}")
        raise AdapterUnavailable(f"adapter {self.adapter}: " + "; ".join(problems))

    def _bluez_args(self, mode: Mode) -> BlueZScannerArgs:
        if mode == "passive":
            return {"adapter": self.adapter, "or_patterns": [BTHOME_PATTERN]}
        return {"adapter": self.adapter}

    async def _watch(self) -> None:
        """Return when nothing at all has been heard for `silence_restart` seconds."""
        while True:
            quiet = time.monotonic() - max(self._last_heard or 0.0, self._started)
            if quiet >= self._silence_restart:
                self._count("silent_restart")
                log.info("ble.radio_silent", adapter=self.adapter, quiet_s=round(quiet, 1))
                return
            await asyncio.sleep(max(0.01, self._silence_restart - quiet))

    async def _stop(self, scanner: Scanner, *, quiet: bool = False) -> None:
        try:
            async with asyncio.timeout(self._start_timeout):
                await scanner.stop()
        except Exception as exc:  # the adapter may already be gone: stopping is best effort
            if not quiet:
                self._count("stop")
                log.debug("ble.scanner_stop_failed", adapter=self.adapter, error=describe(exc))

    def _up(self) -> None:
        was = self.up
        self.up = True
        if was is not True:  # a restart after mere silence is not a new life for sensors' clocks
            self.up_since = time.monotonic()
            self.since = time.time()
        self.detail = f"scanning ({self.mode}) on {self.adapter}"
        if was is False:
            log.info("ble.adapter_recovered", adapter=self.adapter, mode=self.mode)
            self._on_change(True, self.detail)
        elif was is None:
            log.info("ble.scanning", adapter=self.adapter, mode=self.mode)

    def _down(self, reason: str, retry_in: float) -> None:
        was = self.up
        self.mode = None
        self.detail = f"{reason} (retrying in {retry_in:.1f} s)"
        if was is not False:
            self.up = False
            self.since = time.time()
            log.error(
                "ble.adapter_down",
                adapter=self.adapter,
                error=reason,
                retry_in_s=round(retry_in, 1),
            )
            self._on_change(False, reason)
        else:
            log.debug(
                "ble.adapter_still_down",
                adapter=self.adapter,
                error=reason,
                retry_in_s=round(retry_in, 1),
            )

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def last_heard_wall(self) -> float | None:
        if self._last_heard is None:
            return None
        return time.time() - (time.monotonic() - self._last_heard)
