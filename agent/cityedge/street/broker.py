"""A private Mosquitto broker on a free loopback port.

Used by the demo street and by the tests, so both talk to a real broker that
they can configure, stop and restart without touching the machine's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return found


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself has a socket listening on TCP `port` (from /proc): a
    connect would also succeed to whoever else holds the port."""
    try:
        ours = {str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:  # it exited meanwhile (the caller sees that next)
        return False
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        with contextlib.suppress(OSError):
            for row in table.read_text().splitlines()[1:]:
                fields = row.split()  # sl local remote state ... inode
                local, state, inode = fields[1], fields[3], fields[9]
                if (state == "0A"  # TCP_LISTEN
                        and int(local.rsplit(":", 1)[1], 16) == port
                        and f"socket:[{inode}]" in ours):  # fmt: skip
                    return True
    return False


class PortTaken(Exception):
    """The port picked for a broker was taken before it could bind it."""


class Broker:
    """`with Broker() as b:` runs mosquitto on 127.0.0.1:b.port until the block ends.

    `extra_config` lines are appended to the generated mosquitto.conf (listeners,
    TLS, ACLs); `stop()` / `start()` simulate an outage on the same port.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_config: str = "",
        default_listener: bool = True,
        workdir: Path | None = None,
        persistence: bool = True,
    ) -> None:
        self.port = port or free_port()
        # A port we picked may be taken between free_port() and mosquitto's bind (by
        # another test process): then the first start picks another. Never on a restart.
        self._may_move = port is None
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cityedge-broker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_config = extra_config
        self.default_listener = default_listener
        self.persistence = persistence
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type subscribe",
            "connection_messages true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",  # sessions survive a SIGKILL of the broker, as tests need
            "max_inflight_messages 0",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0 and "\nuser " not in "\n" + self.extra_config:
            # Run as root, mosquitto would drop to its own user and lose access to the
            # test's private files (certificates, ACLs, this log).
            lines.append("user root")
        if self.default_listener:
            lines += [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        conf.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(3):
            try:
                self._start(timeout)
                break
            except PortTaken:
                self.port = free_port()
        else:
            raise RuntimeError("mosquitto: three free ports were taken before it bound one")
        self._may_move = False

    def _start(self, timeout: float) -> None:
        if self.process and self.process.poll() is None:
            return
        conf = self._write_config()
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                if self.process.stderr:
                    self.process.stderr.close()
                self.process = None
                log = self.log_path.read_text() if self.log_path.exists() else ""
                if self._may_move and "Address already in use" in err + log:
                    raise PortTaken(self.port)
                raise RuntimeError(f"mosquitto exited at start: {err}{log}")
            if listens(self.process.pid, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    async def saved(self, since: float, timeout: float = 5.0) -> None:
        """Wait until the broker has written its persistence file after `since` (a
        `time.time()`): sessions and subscriptions made before then survive `kill`.
        Before that, a SIGKILL also forgets who was subscribed, and a message
        published right after the restart reaches nobody (as with a real broker)."""
        snapshot = self.workdir / "mosquitto.db"
        deadline = time.monotonic() + timeout
        while not (snapshot.exists() and snapshot.stat().st_mtime > since):
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto wrote no {snapshot.name} within {timeout} s")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the broker dies mid-batch, without a clean disconnect (see `saved`)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: a stalled broker that keeps its sockets open."""
        if self.process:
            self.process.send_signal(19)

    def resume(self) -> None:
        if self.process:
            self.process.send_signal(18)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running_broker(**kwargs: object) -> Iterator[Broker]:
    broker = Broker(**kwargs)  # type: ignore[arg-type]
    with broker:
        yield broker
