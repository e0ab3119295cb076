"""Who is on the other end of the control socket: the kernel says (SO_PEERCRED)."""

from __future__ import annotations

import pwd
import socket
import struct
from dataclasses import dataclass, replace
from typing import Any

_UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int | None
    uid: int | None
    gid: int | None
    # What the client says it is (the CLI sends its login name). Kept next to the
    # kernel's answer, never instead of it: under systemd's PrivateUsers= every
    # outside uid reads as "nobody", and this is then the only hint left.
    claimed: str | None = None

    @property
    def user(self) -> str:
        """The login name for the audit log; the bare uid when it has none."""
        if self.uid is None:
            return "unknown"
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid {self.uid}"

    @property
    def who(self) -> str:
        """For audit records: the kernel's user, and the claim when it differs."""
        user = self.user
        if self.claimed and self.claimed != user:
            return f"{user} (says {self.claimed})"
        return user

    def audit(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": self.uid, "user": self.user, "pid": self.pid}
        if self.claimed and self.claimed != out["user"]:
            out["claimed_user"] = self.claimed
        return out

    def claiming(self, name: object) -> Peer:
        """This peer with the client's own word for who it is, if it is a sane name."""
        if isinstance(name, str) and 0 < len(name) <= 64 and name.isprintable():
            return replace(self, claimed=name)
        return self


UNKNOWN = Peer(None, None, None)


def peer_of(sock: Any) -> Peer:
    """Credentials of a connected Unix socket's peer (asyncio's TransportSocket works too)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return UNKNOWN
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return UNKNOWN
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)
