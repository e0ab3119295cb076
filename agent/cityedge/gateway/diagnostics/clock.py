"""Is the wall clock synchronised? Readings and command expiry depend on it.

Asked in order, first answer wins: systemd's `timedatectl` (works for
timesyncd and chrony alike), timesyncd's flag file, then the kernel itself
(`adjtimex`, read-only), which knows whether any NTP daemon disciplines the
clock. Tests inject a `ClockSource` instead.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
TIMEX_BYTES = 512  # struct timex is 208 bytes on 64-bit Linux; room to spare


@dataclass(frozen=True, slots=True)
class ClockState:
    synchronised: bool | None  # None: nothing here could tell
    source: str  # "timedatectl" | "timesyncd" | "adjtimex" | "none" | what a test says
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"synchronised": self.synchronised, "source": self.source, "detail": self.detail}


ClockSource = Callable[[], ClockState]


def system_clock(timeout: float = 3.0) -> ClockState:
    """The machine's answer (blocking: call it from a thread in the agent)."""
    return (
        _timedatectl(timeout)
        or _timesyncd_flag()
        or _adjtimex()
        or ClockState(None, "none", "no timedatectl, no timesyncd flag, adjtimex refused")
    )


def fixed_clock(synchronised: bool | None, detail: str = "") -> ClockSource:
    """A source that always says the same: for tests and for `--clock` overrides."""
    state = ClockState(synchronised, "injected", detail)
    return lambda: state


def _timedatectl(timeout: float) -> ClockState | None:
    binary = shutil.which("timedatectl")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    if done.returncode != 0 or answer not in ("yes", "no"):
        return None  # no systemd as PID 1, or no D-Bus: ask the next source
    if answer == "yes":
        return ClockState(True, "timedatectl", "NTPSynchronized=yes")
    return ClockState(False, "timedatectl", "NTPSynchronized=no")


def _timesyncd_flag() -> ClockState | None:
    # timesyncd touches the flag once synchronised; its absence proves nothing (chrony).
    if TIMESYNCD_FLAG.exists():
        return ClockState(True, "timesyncd", str(TIMESYNCD_FLAG))
    return None


def _adjtimex() -> ClockState | None:
    try:
        # The process's own symbols include libc's; find_library("c") would fork ldconfig.
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(TIMEX_BYTES)  # modes = 0: read, never set
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None  # e.g. EPERM under a seccomp filter (systemd's ~@clock)
    if state == TIME_ERROR:
        return ClockState(False, "adjtimex", "kernel reports the clock unsynchronised")
    return ClockState(True, "adjtimex", f"kernel clock state {state}")
