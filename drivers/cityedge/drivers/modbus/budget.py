"""The line budget of a serial Modbus bus: what the wire can carry, and what it did.

A serial line is slow enough that its capacity is a design input: at 19200
baud a traffic controller's poll costs tens of milliseconds, and a bus of
devices polled every second can be oversubscribed. `line_budget` is the pure
arithmetic (tested alone); `LineMeter` measures the running bus, so its health
can say "41 % busy, 23 transactions/s of at most 52".

Wire time of one transaction, per the Modbus serial line spec (§2.5.1.1):
every frame is followed by at least 3.5 character times of silence (fixed at
1.75 ms above 19200 baud), so a transaction is

    (request bytes + response bytes) × bits per character / baud + 2 × gap

with bits per character = start + data + parity + stop (11 for 8E1).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cityedge.drivers.modbus.planner import ReadRequest

# The rates Modbus RTU equipment offers; the line drivers (drivers/serialline) take more.
RTU_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
FIXED_GAP_ABOVE_19200 = 0.00175  # seconds; the spec's fixed t3.5 for fast lines

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How characters travel on the line: `19200 8E1`."""

    baudrate: int
    bytesize: int = 8
    parity: Parity = "E"
    stopbits: int = 1

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_time(self) -> float:
        """Seconds one character occupies the wire."""
        return self.bits_per_char / self.baudrate

    @property
    def standard_gap(self) -> float:
        """The spec's inter-frame silence: 3.5 characters, 1.75 ms above 19200 baud."""
        if self.baudrate > 19200:
            return FIXED_GAP_ABOVE_19200
        return 3.5 * self.char_time

    def wire_time(self, n_bytes: int) -> float:
        return n_bytes * self.char_time

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


def read_frame_sizes(request: ReadRequest) -> tuple[int, int]:
    """Bytes of the RTU request and of its normal reply for one planned read.

    Request: unit, function, address (2), count (2), CRC (2) = 8. Reply: unit,
    function, byte count, the data, CRC (2) = 5 + data.
    """
    data = (request.count + 7) // 8 if request.kind.is_bit else 2 * request.count
    return 8, 5 + data


@dataclass(frozen=True, slots=True)
class LineBudget:
    """What one cycle of transactions costs on a line at best."""

    format: LineFormat
    gap: float  # seconds of silence after every frame
    transactions: int  # per cycle
    bytes: int  # requests + replies, per cycle
    cycle_seconds: float  # wire time of one cycle, gaps included

    @property
    def max_transactions_per_s(self) -> float:
        return self.transactions / self.cycle_seconds if self.cycle_seconds else 0.0

    @property
    def max_cycles_per_s(self) -> float:
        return 1 / self.cycle_seconds if self.cycle_seconds else 0.0


def line_budget(
    line: LineFormat, frames: Sequence[tuple[int, int]], *, gap: float | None = None
) -> LineBudget:
    """The fastest a line can carry `frames` (request bytes, reply bytes) once each.

    `gap` is the configured inter-frame silence (default: the spec's). Device
    turnaround time is not known in advance and not included: this is the
    line's ceiling, which a real bus approaches but does not reach.
    """
    silence = line.standard_gap if gap is None else gap
    total = sum(request + reply for request, reply in frames)
    seconds = line.wire_time(total) + 2 * silence * len(frames)
    return LineBudget(line, silence, len(frames), total, seconds)


# --- what the running bus did -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineReport:
    """The bus over the last window: how busy, how fast, against its ceiling."""

    window_s: float
    utilisation: float  # time busy / wall, 0-1
    transactions_per_s: float
    max_transactions_per_s: float  # the line's ceiling for this bus's plan
    demand_per_s: float  # what the configured poll intervals ask for
    transactions: int  # since the meter started
    busy_s: float  # since the meter started
    bytes_sent: int
    bytes_received: int

    @property
    def of_max(self) -> float:
        """Achieved transactions/s as a share of the line's ceiling."""
        if not self.max_transactions_per_s:
            return 0.0
        return self.transactions_per_s / self.max_transactions_per_s

    def describe(self, line: LineFormat) -> str:
        return (
            f"{line}: busy {self.utilisation:.0%}, {self.transactions_per_s:.1f} tx/s "
            f"of at most {self.max_transactions_per_s:.1f} ({self.of_max:.0%}); "
            f"polls ask {self.demand_per_s:.1f} tx/s"
        )


@dataclass(slots=True)
class _Sample:
    at: float
    busy: float
    transactions: int


class LineMeter:
    """Counts transactions and busy time; reports over a sliding window.

    Busy time is what a transaction holds the line: from the first byte of the
    request to the end of the reply (or to giving up on it), plus the silence
    that must follow. Samples are kept at most every `window / 20` seconds, so
    memory stays bounded however fast the bus runs.
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._started = clock()
        self.busy = 0.0
        self.transactions = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._samples: deque[_Sample] = deque([_Sample(self._started, 0.0, 0)])

    def record(self, busy: float, sent: int, received: int) -> None:
        """One transaction (attempt) held the line for `busy` seconds."""
        self.busy += busy
        self.transactions += 1
        self.bytes_sent += sent
        self.bytes_received += received
        now = self._clock()
        if now - self._samples[-1].at >= self.window / 20:
            self._samples.append(_Sample(now, self.busy, self.transactions))
        # keep one sample at or before the window's start, drop older ones
        while len(self._samples) > 2 and now - self._samples[1].at >= self.window:
            self._samples.popleft()

    def report(self, budget: LineBudget, demand_per_s: float) -> LineReport:
        now = self._clock()
        base = self._samples[0]
        for sample in self._samples:
            if now - sample.at >= self.window:
                base = sample
        wall = now - base.at
        busy = self.busy - base.busy
        count = self.transactions - base.transactions
        return LineReport(
            window_s=round(wall, 3),
            utilisation=min(busy / wall, 1.0) if wall > 0 else 0.0,
            transactions_per_s=count / wall if wall > 0 else 0.0,
            max_transactions_per_s=budget.max_transactions_per_s,
            demand_per_s=demand_per_s,
            transactions=self.transactions,
            busy_s=self.busy,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
        )
