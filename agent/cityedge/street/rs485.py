"""A virtual RS-485 cable: two pseudo-terminal pairs with a relay between them.

    gateway end ── pty A ══ relay ══ pty B ── device end
    (the driver opens it)                      (the simulated devices open it)

Both ends are symlinks to pty slave nodes, the way `/dev/serial/by-id/usb-…`
points at `/dev/ttyUSB0`. The relay copies bytes both ways and can do what a
real line does to them:

* take time: with a `LineFormat`, each character occupies the wire for
  bits/baud seconds (a pty alone moves bytes instantly, at any "baud rate");
* pick up noise: with a seed, a share of the bytes get one bit flipped
  (`noise`) or vanish (`drop`) — the same bytes for the same seed;
* be unplugged: `unplug()` hangs up the gateway end under whoever holds it
  and removes its node, as pulling a USB adapter does; `replug()` brings a
  fresh line back under the same name.

Bytes sent while nobody reads the other end are lost, as on a real line.
Used by the RTU tests (hil_tests/test_modbus_rtu.py), the benchmark
(bench/modbus_rtu.py) and anyone wanting a junction on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tty
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cityedge.drivers.modbus.budget import LineFormat


@dataclass(slots=True)
class Direction:
    """What the relay did to the bytes going one way."""

    bytes: int = 0
    corrupted: int = 0
    dropped: int = 0
    unheard: int = 0  # sent while nobody was reading the far end


@dataclass(slots=True)
class CableStats:
    to_devices: Direction = field(default_factory=Direction)
    to_gateway: Direction = field(default_factory=Direction)


class _Pty:
    """A pty pair whose slave this side keeps open (so the master never reads EIO)."""

    def __init__(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline until the opener sets its own
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.node = os.ttyname(slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _link(link: Path, target: str) -> None:
    """Point `link` at `target`, atomically (no moment without a node)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(link)


class Cable:
    """`async with Cable(tmp_path) as cable:` — `cable.gateway_end` and `cable.device_end`."""

    def __init__(
        self,
        directory: Path,
        *,
        line: LineFormat | None = None,
        noise: float = 0.0,
        drop: float = 0.0,
        seed: int = 0,
        gateway_name: str = "ttyGW",
        device_name: str = "ttyDEV",
    ) -> None:
        if not (0 <= noise <= 1 and 0 <= drop <= 1):
            raise ValueError(f"noise and drop are shares 0-1, got {noise}, {drop}")
        self.gateway_end = directory / gateway_name
        self.device_end = directory / device_name
        self.line = line
        self.noise = noise
        self.drop = drop
        # one generator per direction: the bytes hit do not depend on how the two interleave
        self._random = {"to_devices": random.Random(seed), "to_gateway": random.Random(seed + 1)}
        self.stats = CableStats()
        self.plugs = 0
        self._gateway: _Pty | None = None
        self._device: _Pty | None = None
        self._pumps: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Cable:
        self.plug()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def plugged(self) -> bool:
        return self._gateway is not None

    def plug(self) -> None:
        """Put a fresh gateway end in place (the device end is made once) and relay."""
        if self._device is None:
            self._device = _Pty()
            _link(self.device_end, self._device.node)
        if self._gateway is not None:
            return
        self._gateway = _Pty()
        _link(self.gateway_end, self._gateway.node)
        self.plugs += 1
        gateway, device = self._gateway.master, self._device.master
        self._pumps = [
            asyncio.create_task(self._pump(gateway, device, "to_devices")),
            asyncio.create_task(self._pump(device, gateway, "to_gateway")),
        ]

    async def unplug(self) -> None:
        """Pull the adapter: the relay stops, the gateway end hangs up and its node goes."""
        with contextlib.suppress(FileNotFoundError):
            self.gateway_end.unlink()
        await self._stop_pumps()
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None

    async def replug(self) -> None:
        await self.unplug()
        self.plug()

    async def close(self) -> None:
        await self.unplug()
        if self._device is not None:
            self._device.close()
            self._device = None
        with contextlib.suppress(FileNotFoundError):
            self.device_end.unlink()

    async def _stop_pumps(self) -> None:
        pumps, self._pumps = self._pumps, []
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    # --- the relay ---------------------------------------------------------------------

    async def _pump(self, source: int, sink: int, way: str) -> None:
        """Copy bytes from one master to the other, as the wire would carry them."""
        loop = asyncio.get_running_loop()
        seen: Direction = getattr(self.stats, way)
        rng = self._random[way]
        arrived: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(source, 4096)
            except (BlockingIOError, OSError):
                return  # nothing now; a closed end is the unplug's business
            if data:
                arrived.put_nowait(data)

        loop.add_reader(source, readable)
        free_at = 0.0  # when this direction of the wire is free again
        try:
            while True:
                data = await arrived.get()
                seen.bytes += len(data)
                out = self._disturb(data, seen, rng)
                if self.line is not None:
                    start = max(loop.time(), free_at)
                    free_at = start + self.line.wire_time(len(data))
                    await asyncio.sleep(free_at - loop.time())
                try:
                    sent = os.write(sink, out) if out else 0
                except (BlockingIOError, OSError):
                    sent = 0
                seen.unheard += len(out) - sent
        finally:
            loop.remove_reader(source)

    def _disturb(self, data: bytes, seen: Direction, rng: random.Random) -> bytes:
        if not (self.noise or self.drop):
            return data
        out = bytearray()
        for byte in data:
            roll = rng.random()
            if roll < self.drop:
                seen.dropped += 1
                continue
            if roll < self.drop + self.noise:
                byte ^= 1 << rng.randrange(8)
                seen.corrupted += 1
            out.append(byte)
        return bytes(out)
