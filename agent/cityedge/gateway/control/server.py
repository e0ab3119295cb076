"""The control socket: a Unix socket where technicians' tools ask the running agent.

Access is the filesystem's business: the socket is mode 0660, so its owner and
group (the `cityedge` group on a gateway) may connect. Who connected is the
kernel's answer (SO_PEERCRED), and it goes into the audit log with every
request. Requests are bounded in size, in number per connection and in time;
a bad one gets `{"ok": false, "error": …}`, never a dropped agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from cityedge.gateway.control import snapshot
from cityedge.gateway.control.overrides import (
    Overrides,
    unknown_device_message,
    unknown_point_message,
)
from cityedge.gateway.control.peer import Peer, peer_of
from cityedge.gateway.control.protocol import (
    MAX_REQUEST_BYTES,
    ControlError,
    answer_error,
    answer_ok,
    parse_request,
)
from cityedge.gateway.control.view import AgentView
from cityedge.gateway.diagnostics import record
from cityedge.gateway.diagnostics.clock import ClockSource, system_clock
from cityedge.sdk import __version__
from cityedge.sdk.checks import failure_text
from cityedge.sdk.driver import driver_status
from cityedge.sdk.model import DeviceError, Value

log = structlog.get_logger(__name__)

SOCKET_MODE = 0o660
REQUEST_TIMEOUT = 30.0  # a write: read the old value, write, read back, each bounded
IDLE_TIMEOUT = 30.0  # a connection that sends nothing for this long is closed
READ_TIMEOUT = 15.0
MAX_CLIENTS = 16
MAX_REQUESTS_PER_CONNECTION = 100
MAX_SUN_PATH = 107  # sockaddr_un.sun_path is 108 bytes with its NUL

Handler = Callable[[dict[str, Any], Peer], Awaitable[Any]]


class ControlServer:
    """`await ControlServer(agent).run()` serves until cancelled (a supervised task).

    Transport and dispatch only: each operation reads the agent's view or hands
    over to a feature (overrides, the check record); the overrides' restore loop
    is the runtime's own task, not this server's."""

    def __init__(
        self,
        agent: AgentView,
        path: Path | None = None,
        *,
        overrides: Overrides | None = None,
        clock: ClockSource | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.agent = agent
        self.path = path or agent.config.control_socket_path
        self.overrides = overrides or agent.overrides
        self.clock = snapshot.ClockWatch(clock or system_clock)
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.check_path = agent.config.gateway.state_dir / record.FILE_NAME
        self.last_check = record.load(self.check_path)
        self.requests: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # by op ("?" when unreadable)
        self.listening = asyncio.Event()
        self._clients = 0
        self._inode: int | None = None
        self._ops: dict[str, Handler] = {
            "ping": self._ping,
            "status": self._status,
            "devices": self._devices,
            "read": self._read,
            "write": self._write,
            "override.end": self._end_override,
            "overrides": self._overrides,
            "outbox": self._outbox,
            "forwarders": self._forwarders,
            "check.record": self._record_check,
            "check.last": self._last_check,
        }

    @property
    def operations(self) -> list[str]:
        return sorted(self._ops)

    # --- lifetime ------------------------------------------------------------------

    async def run(self) -> None:
        server = await self._listen()
        log.info("control.listening", socket=str(self.path), mode=f"{SOCKET_MODE:04o}")
        self.listening.set()
        try:
            await server.serve_forever()
        finally:
            self.listening.clear()
            server.close()
            self._unlink()

    async def _listen(self) -> asyncio.Server:
        path = self.path
        if len(os.fsencode(path)) > MAX_SUN_PATH:
            raise ControlError(
                f"control.socket: {path} is {len(os.fsencode(path))} bytes long, "
                f"a Unix socket path may have {MAX_SUN_PATH}: choose a shorter path"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clear_stale(path)
        server = await asyncio.start_unix_server(
            self._connection, path=str(path), limit=MAX_REQUEST_BYTES + 1
        )
        # bound with the process umask (systemd: 0077); now open it to the group
        path.chmod(SOCKET_MODE)
        self._inode = path.stat().st_ino
        return server

    @staticmethod
    def _clear_stale(path: Path) -> None:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(
                f"control.socket: {path} exists and is not a socket; not touching it"
            )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink(missing_ok=True)  # left by an agent that died: nobody listens
                return
        raise ControlError(f"control.socket: another process already serves {path}")

    def _unlink(self) -> None:
        # Only our own socket: a successor may already have bound the same path.
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    # --- connections -----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("socket"))
        try:
            if self._clients >= self.max_clients:
                self.refused["busy"] += 1
                writer.write(answer_error(f"busy: {self.max_clients} clients already connected"))
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
                return
            self._clients += 1
            try:
                await self._serve(reader, writer, peer)
            finally:
                self._clients -= 1
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
            except TimeoutError:
                return
            except ValueError:  # longer than the stream limit: the rest is not worth reading
                self.refused["?"] += 1
                log.warning("control.refused", reason="too large", **peer.audit())
                writer.write(answer_error(f"request too large (max {MAX_REQUEST_BYTES} bytes)"))
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
                return
            if not line:
                return
            if not line.strip():
                continue
            writer.write(await self.answer(line, peer))
            await asyncio.wait_for(writer.drain(), self.idle_timeout)

    async def answer(self, line: bytes, peer: Peer) -> bytes:
        """One request line in, one answer line out. Never raises."""
        started = time.perf_counter()
        op = "?"
        ok = False
        try:
            op, args = parse_request(line)
            peer = peer.claiming(args.pop("caller", None))
            handler = self._ops.get(op)
            if handler is None:
                op_shown, op = op, "?"
                raise ControlError(
                    f"unknown operation {op_shown[:32]!r}; known: {', '.join(self.operations)}"
                )
            async with asyncio.timeout(self.request_timeout):
                data = await handler(args, peer)
            ok = True
            return answer_ok(data)
        except ControlError as exc:
            return answer_error(str(exc))
        except TimeoutError:
            return answer_error(f"{op}: no result within {self.request_timeout:g} s")
        except DeviceError as exc:
            return answer_error(str(exc))
        except Exception as exc:  # a bug in one request must not take the socket down
            log.exception("control.failed", op=op, **peer.audit())
            return answer_error(f"internal error in {op}: {type(exc).__name__}: {exc}")
        finally:
            self.requests[op] += 1
            if not ok:
                self.refused[op] += 1
            (log.debug if op == "ping" else log.info)(
                "control.request",
                op=op,
                ok=ok,
                ms=round((time.perf_counter() - started) * 1000, 1),
                **peer.audit(),
            )

    # --- operations ------------------------------------------------------------------

    async def _ping(self, args: dict[str, Any], peer: Peer) -> Any:
        return {
            "version": __version__,
            "gateway": self.agent.config.gateway.id,
            "uptime": time.time() - self.agent.started,
            "pid": os.getpid(),
        }

    async def _status(self, args: dict[str, Any], peer: Peer) -> Any:
        clock = await self.clock.state()
        in_force = snapshot.overrides(self.overrides)
        return snapshot.status(self.agent, clock, in_force).to_json()

    async def _devices(self, args: dict[str, Any], peer: Peer) -> Any:
        return [d.to_json() for d in snapshot.devices(self.agent)]

    async def _read(self, args: dict[str, Any], peer: Peer) -> Any:
        device = _text(args, "read", "device")
        points = args.get("points")
        if isinstance(points, str):
            points = [points]
        if points is not None and (
            not isinstance(points, list) or not all(isinstance(p, str) for p in points)
        ):
            raise ControlError("read: 'points' must be a list of point names")
        timeout = args.get("timeout", READ_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ControlError("read: 'timeout' must be a number of seconds")
        timeout = min(max(float(timeout), 0.1), READ_TIMEOUT)
        catalogue = self.agent.devices()
        info = catalogue.get(device)
        driver = self.agent.driver_for(device)
        if info is None or driver is None:
            raise ControlError(unknown_device_message(device, catalogue))
        for point in points or []:
            if point not in info.points:
                raise ControlError(unknown_point_message(info, point))
        try:
            readings = await asyncio.wait_for(driver.read(device, points), timeout)
        except (TimeoutError, DeviceError) as exc:
            raise ControlError(f"cannot read {device}: {failure_text(exc, timeout)}") from None
        return {
            "device": device,
            "type": info.device_type,
            "driver": driver.name,
            "readings": [
                {
                    "point": r.point,
                    "value": r.value,
                    "unit": r.unit,
                    "ts": r.ts,
                    "quality": str(r.quality),
                }
                for r in readings
            ],
        }

    async def _write(self, args: dict[str, Any], peer: Peer) -> Any:
        device = _text(args, "write", "device")
        point = _text(args, "write", "point")
        value = args.get("value")
        if not isinstance(value, bool | int | float | str):
            raise ControlError("write: 'value' must be a number, true/false or text")
        seconds = args.get("for")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ControlError("write: 'for' must be a number of seconds")
        typed: Value = value
        return await self.overrides.start(device, point, typed, float(seconds), peer)

    async def _end_override(self, args: dict[str, Any], peer: Peer) -> Any:
        device = _text(args, "override.end", "device")
        point = _text(args, "override.end", "point")
        return await self.overrides.end(device, point, peer)

    async def _overrides(self, args: dict[str, Any], peer: Peer) -> Any:
        return [o.to_json() for o in snapshot.overrides(self.overrides)]

    async def _outbox(self, args: dict[str, Any], peer: Peer) -> Any:
        return {
            "path": str(self.agent.config.outbox_path),
            **snapshot.outbox(self.agent.outbox.stats()).to_json(),
        }

    async def _forwarders(self, args: dict[str, Any], peer: Peer) -> Any:
        # Drivers that hear radio gateways say so in their status; their devices'
        # health carries when each forwarder was last heard.
        names = sorted(
            name for name, driver in self.agent.drivers.items()
            if "forwarders" in driver_status(driver)
        )  # fmt: skip
        health = [h for h in self.agent.device_health() if h.driver in names]
        return {"drivers": names, "health": [snapshot.health(h).to_json() for h in health]}

    async def _record_check(self, args: dict[str, Any], peer: Peer) -> Any:
        try:
            checked = record.CheckRecord.from_json({**args, "user": peer.who})
        except ValueError as exc:
            raise ControlError(f"check.record: {exc}") from None
        self.last_check = checked
        try:
            await asyncio.to_thread(record.save, self.check_path, checked)
        except OSError as exc:
            log.warning("control.check_unsaved", path=str(self.check_path), error=str(exc))
        log.info(
            "control.check_recorded",
            status=checked.status.label,
            results=len(checked.results),
            **peer.audit(),
        )
        return {"recorded": len(checked.results), "status": checked.status.label}

    async def _last_check(self, args: dict[str, Any], peer: Peer) -> Any:
        return self.last_check.to_json() if self.last_check else None


def _text(args: dict[str, Any], op: str, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise ControlError(f"{op}: {key!r} must be given as text")
    return value
