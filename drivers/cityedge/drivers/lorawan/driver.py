"""The LoRaWAN driver: a GWMP listener, antenna de-duplication, and the decoder.

    UDP datagram ─▶ ForwarderListener ─▶ Antennas (one frame, many copies: keep the
    best) ─▶ bounded queue ─▶ UplinkDecoder ─▶ emit(readings, alarms)

The listener never blocks: a frame that does not fit in the queue is counted
(`queue-full`) and dropped. Everything that arrives over the air is untrusted
until its MIC verified; nothing a datagram holds can stop the driver.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from cityedge.drivers.lorawan.config import Section
from cityedge.drivers.lorawan.decoders import (
    SHIPPED_DEVICE_TYPES,
    DeviceTypeError,
    load_device_types,
)
from cityedge.drivers.lorawan.devicetype import DeviceType
from cityedge.drivers.lorawan.fcnt import FrameCounters
from cityedge.drivers.lorawan.joins import JoinServer
from cityedge.drivers.lorawan.keyring import SessionFileError, load_keyring
from cityedge.drivers.lorawan.semtech import ForwarderListener, RxPacket, Stat, txpk_json
from cityedge.drivers.lorawan.uplinks import Radio, UplinkDecoder
from cityedge.sdk.driver import DriverEnv
from cityedge.sdk.model import (
    DeviceHealth,
    DeviceInfo,
    DeviceState,
    DeviceUnreachable,
    Emit,
    Event,
    PointNotWritable,
    Reading,
    Severity,
    UnknownDevice,
    Value,
)

log = structlog.get_logger(__name__)

MAX_OPEN_WINDOWS = 10_000  # frames being collected from several antennas at once


class SetupError(Exception):
    """The key file or a device type cannot be used: the driver waits for a fix
    (the supervisor retries with backoff and logs this), the rest of the agent runs."""


@dataclass
class _Copies:
    best: RxPacket
    best_eui: str
    forwarders: set[str] = field(default_factory=set)
    count: int = 0


class Antennas:
    """The same frame heard by several antennas or forwarders within `window` s
    becomes one, with the best copy's radio figures (RSSI, then SNR)."""

    def __init__(self, window: float, release: asyncio.Queue[tuple[bytes, Radio]]) -> None:
        self.window = window
        self.release = release
        self.open: dict[bytes, _Copies] = {}
        self.collapsed = 0  # copies merged into an earlier one
        self.dropped = 0  # frames lost because the queue was full

    def add(self, eui: str, packet: RxPacket) -> bool:
        copies = self.open.get(packet.data)
        if copies is not None:
            copies.count += 1
            copies.forwarders.add(eui)
            self.collapsed += 1
            if (packet.rssi, packet.lsnr) > (copies.best.rssi, copies.best.lsnr):
                copies.best, copies.best_eui = packet, eui
            return True
        if len(self.open) >= MAX_OPEN_WINDOWS:
            return False
        self.open[packet.data] = _Copies(packet, eui, {eui}, 1)
        asyncio.get_running_loop().call_later(self.window, self._close, packet.data)
        return True

    def _close(self, key: bytes) -> None:
        copies = self.open.pop(key, None)
        if copies is None:
            return
        best = copies.best
        radio = Radio(best.rssi, best.lsnr, best.spreading_factor, best.freq,
                      tuple(sorted(copies.forwarders)), copies.count,
                      copies.best_eui, best.tmst, best.bandwidth)  # fmt: skip
        try:
            self.release.put_nowait((key, radio))
        except asyncio.QueueFull:
            self.dropped += 1


class LoRaWANDriver:
    def __init__(self, section: Section, env: DriverEnv) -> None:
        self.name = section.name
        self.section = section
        self.env = env
        self.device_types: dict[str, DeviceType] = {}
        self.counters_path = env.state_dir / f"lorawan-{section.name}.db"
        self.joins_path = env.state_dir / f"lorawan-{section.name}-joins.db"
        self.problem: str | None = None
        self.decoder: UplinkDecoder | None = None
        self._load()
        self.listener: ForwarderListener | None = None
        self.port: int | None = None  # bound UDP port, once listening
        self.latest: dict[str, dict[str, Reading]] = {}
        self.antennas: Antennas | None = None
        self._forwarder_readings: list[Reading | Event] = []
        self.stat_flush = 5.0  # s: how soon forwarder reports go up without frames

    def _load(self) -> None:
        """Keys and counters; a bad key file leaves the driver without devices and
        the reason in `problem` (run() raises it, so the supervisor logs and retries)."""
        try:
            self.device_types = load_device_types(
                (SHIPPED_DEVICE_TYPES, *(self._path(p) for p in self.section.device_types))
            )
            keyring = load_keyring(self._path(self.section.sessions))
            counters = FrameCounters(self.counters_path)
            joins = None
            if keyring.otaa:
                joins = JoinServer(
                    self.joins_path, keyring.otaa, net_id=int(self.section.net_id, 16),
                    reserved=lambda: set(keyring),
                )  # fmt: skip
            self.decoder = UplinkDecoder(
                self.name, keyring, counters, self.device_types,
                silent_intervals=self.section.silent_intervals, joins=joins,
            )  # fmt: skip
            self.problem = None
            if counters.set_aside is not None:
                log.error("lorawan.counters.corrupt", set_aside=str(counters.set_aside))
        except (SessionFileError, DeviceTypeError, KeyError) as exc:
            self.problem = str(exc).strip("'\"")
            self.decoder = None
        except sqlite3.OperationalError as exc:  # the counter file is locked or unreadable
            self.problem = f"{self.counters_path}: {exc}"
            self.decoder = None

    def _path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.env.config_dir / path

    # --- the Driver protocol ------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        if self.problem is not None:
            self._load()  # the technician may have fixed the file since
        if self.problem is not None:
            raise SetupError(self.problem)
        decoder = self.decoder
        assert decoder is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bytes, Radio]] = asyncio.Queue(self.section.queue_size)
        antennas = self.antennas = Antennas(self.section.dedup_window, queue)
        listener = ForwarderListener(
            antennas.add, frozenset(self.section.forwarders), on_stat=self._stat,
            max_forwarders=self.section.max_forwarders,
        )  # fmt: skip
        transport, _ = await loop.create_datagram_endpoint(
            lambda: listener, local_addr=(self.section.listen, self.section.port)
        )
        self.listener = listener
        decoder.downlink = self._send_downlink
        self.port = transport.get_extra_info("sockname")[1]
        log.info("lorawan.listening", driver=self.name, address=self.section.listen, port=self.port,
                 devices=len(decoder.catalogue()))  # fmt: skip
        if decoder.counters.set_aside is not None:
            await emit([Event("lorawan.counters_corrupt", self.name, time.time(), Severity.WARNING,
                              data={"set_aside": str(decoder.counters.set_aside)})])  # fmt: skip
        silence = asyncio.create_task(self._watch_silence(decoder, emit))
        try:
            while True:
                frame, radio = await queue.get()
                items = self._forwarder_readings + decoder.decode(frame, radio)
                self._forwarder_readings = []
                self._remember(items)
                if items:
                    await emit(items)
        finally:
            silence.cancel()
            transport.close()

    def _send_downlink(self, radio: Radio, frame: bytes, delay_us: int) -> bool:
        """In RX1: the uplink's frequency and data rate, `delay_us` after it by the
        concentrator's own clock, through the forwarder that heard it best."""
        if self.listener is None or radio.spreading_factor is None or not radio.via:
            return False
        txpk = txpk_json(frame, tmst=radio.tmst + delay_us, freq=radio.frequency,
                         sf=radio.spreading_factor, bw=radio.bandwidth or 125)  # fmt: skip
        return self.listener.send_downlink(radio.via, txpk)

    def _stat(self, eui: str, stat: Stat) -> None:
        """A forwarder's periodic report (every 30 s by default) as readings of the
        forwarder itself; sent with the next frame or the next silence check."""
        device, now = f"forwarder-{eui}", time.time()
        self._forwarder_readings += [
            Reading(device, "frames_received", stat.rxnb, now),
            Reading(device, "frames_crc_ok", stat.rxok, now),
            Reading(device, "frames_forwarded", stat.rxfw, now),
            Reading(device, "acked", stat.ackr, now, "%"),
        ]

    async def _watch_silence(self, decoder: UplinkDecoder, emit: Emit) -> None:
        while True:
            await asyncio.sleep(self.stat_flush)
            decoder.flush_logs()
            if self.listener is not None:
                self.listener.flush_logs()
            items: list[Reading | Event] = [*self._forwarder_readings, *decoder.check_silence()]
            self._forwarder_readings = []
            if items:
                self._remember(items)
                await emit(items)

    def _remember(self, items: Sequence[Reading | Event]) -> None:
        for item in items:
            if isinstance(item, Reading):
                self.latest.setdefault(item.device, {})[item.point] = item

    async def read(self, device: str, points: Sequence[str] | None = None) -> list[Reading]:
        """The last values heard: a LoRaWAN sensor talks when it wants, it cannot be asked."""
        if device not in self.catalogue():
            raise UnknownDevice(device)
        latest = self.latest.get(device)
        if not latest:
            raise DeviceUnreachable(f"{device}: not heard since the agent started")
        names = list(latest) if points is None else list(points)
        return [latest[n] for n in names if n in latest]

    async def write(self, device: str, point: str, value: Value) -> None:
        if device not in self.catalogue():
            raise UnknownDevice(device)
        raise PointNotWritable(f"{device}.{point}: LoRaWAN sensors are read-only here")

    def health(self) -> list[DeviceHealth]:
        out = list(self.decoder.health()) if self.decoder else []
        if self.listener is not None:
            for fwd in self.listener.forwarders.values():
                out.append(DeviceHealth(
                    f"forwarder-{fwd.eui}", self.name, DeviceState.UP, last_seen=fwd.last_seen,
                    requests=fwd.datagrams, detail=f"{fwd.frames} frames",
                ))  # fmt: skip
        return out

    def catalogue(self) -> dict[str, DeviceInfo]:
        return self.decoder.catalogue() if self.decoder else {}

    def status(self) -> dict[str, Any]:
        """The packet forwarders heard since the start (the SDK's optional `status()`)."""
        heard = self.listener.forwarders.values() if self.listener is not None else ()
        return {
            "forwarders": [
                {"eui": f.eui, "last_seen": f.last_seen, "datagrams": f.datagrams} for f in heard
            ]
        }

    def counters(self) -> dict[str, int]:
        """Frames refused by the decoder and datagrams dropped by the listener
        (`datagram.<reason>`), by reason: for the technician and the tests."""
        out: dict[str, int] = {}
        if self.decoder is not None:
            out.update(self.decoder.refused)
            out["joined"] = self.decoder.joined
            out["acks-sent"] = self.decoder.acks_sent
            out["mac-answers"] = self.decoder.mac_answers
            out.update({f"mac.{k}": v for k, v in self.decoder.mac_commands.items()})
        if self.listener is not None:
            out.update({f"datagram.{k}": v for k, v in self.listener.stats.dropped.items()})
        if self.antennas is not None:
            out["collapsed"] = self.antennas.collapsed
            out["queue-full"] = out.get("queue-full", 0) + self.antennas.dropped
        return out
