"""Engines the ingest tests and the fleet benchmark start themselves, on free loopback
ports in a directory of their own: a RabbitMQ node with its MQTT plugin (the system
node has none), a NATS server with JetStream and an MQTT listener."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from cityedge.street.broker import free_port

RABBIT_SERVER = (
    "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not the wrapper: it drops to user rabbitmq
)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


class RabbitNode:
    """A RabbitMQ node of the test's own: AMQP, MQTT and distribution on free ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.amqp_port, self.mqtt_port, self.dist_port = free_port(), free_port(), free_port()
        self.name = f"cityedge{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        for sub in ("mnesia", "log"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (workdir / "env.conf").write_text("")

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        w = self.workdir
        return {
            **os.environ,
            "HOME": str(w),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(w / "env.conf"),
            "RABBITMQ_PID_FILE": str(w / "pid"),
        }

    def start(self, timeout: float = 90.0) -> None:
        out = (self.workdir / "server.out").open("ab")
        self.proc = subprocess.Popen([RABBIT_SERVER], env=self.env(), stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        out.close()
        _wait_port(self.amqp_port, self.proc, timeout, "rabbitmq-server")
        _wait_port(self.mqtt_port, self.proc, timeout, "rabbitmq mqtt listener")

    def kill(self) -> None:
        """SIGKILL the whole node (beam, epmd-starter, heart): as a power cut to it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        self.proc = None

    def close(self) -> None:
        self.kill()


class NatsNode:
    """nats-server with JetStream (file storage) and an MQTT listener."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.mqtt_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "nats.conf").write_text(
            f"server_name: cityedge_{uuid.uuid4().hex[:8]}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{ store_dir: {workdir / 'js'} }}\n"
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
        )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        out = (self.workdir / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [shutil.which("nats-server") or "nats-server", "-c", str(self.workdir / "nats.conf")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.close()
        _wait_port(self.port, self.proc, timeout, "nats-server")
        _wait_port(self.mqtt_port, self.proc, timeout, "nats mqtt listener")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.proc = None

    def close(self) -> None:
        self.kill()
