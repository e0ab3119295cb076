"""Talking to a running agent over its control socket (blocking: for the CLI and checks)."""

from __future__ import annotations

import errno
import os
import pwd
import socket
from pathlib import Path
from typing import Any

from cityedge.gateway.control.protocol import (
    MAX_RESPONSE_BYTES,
    AgentUnreachable,
    ControlError,
    encode,
    parse_answer,
)

DEFAULT_TIMEOUT = 30.0  # a write waits for the device and its read-back


class ControlClient:
    """`ControlClient(path).call("status")`: one connection per request."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, op: str, **arguments: Any) -> Any:
        request = encode({"op": op, **arguments, "caller": _login_name()})
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except FileNotFoundError:
                raise AgentUnreachable(
                    f"no control socket at {self.path}: is the agent running? "
                    "(systemctl status cityedge)"
                ) from None
            except PermissionError:
                raise AgentUnreachable(
                    f"permission denied on {self.path}: run as root or as a member of "
                    "the socket's group (cityedge)"
                ) from None
            except ConnectionRefusedError:
                raise AgentUnreachable(
                    f"nobody listens on {self.path}: the agent is not running (stale socket)"
                ) from None
            except OSError as exc:
                if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR, errno.EINVAL):
                    raise AgentUnreachable(f"{self.path} is not a control socket") from None
                raise AgentUnreachable(f"cannot reach the agent at {self.path}: {exc}") from None
            try:
                sock.sendall(request)
                line = _read_line(sock)
            except TimeoutError:
                raise ControlError(
                    f"the agent did not answer {op!r} within {self.timeout:g} s"
                ) from None
            except OSError as exc:
                raise ControlError(f"connection to the agent lost: {exc.strerror or exc}") from None
        return parse_answer(line)

    def running(self) -> bool:
        """True when an agent answers a ping."""
        try:
            self.call("ping")
        except ControlError:
            return False
        return True


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ControlError("the agent closed the connection without answering")
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ControlError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")


def _login_name() -> str:
    """Sent along as a claim: the agent logs it next to what the kernel says."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"
