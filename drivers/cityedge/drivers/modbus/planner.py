"""The request planner: the fewest read requests a device accepts for its points.

A pure function, computed once per profile at config load and tested alone
with golden cases (tests/modbus/test_planner.py).

Strategy, per register kind (coils, discrete inputs, input registers, holding
registers, in that order): sort the points by address and sweep, extending the
current request with the next point while

* the unused registers between them are at most `max_gap`, and
* the request still spans at most `max_registers` (`max_bits` for bit tables).

A point is never split across requests (a 32-bit value read in two halves could
tear). Greedy extension is optimal here: any plan's first request covers a
prefix of the sorted points, the greedy one covers the longest feasible prefix,
and what remains is a suffix, which only gets easier to cover.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cityedge.drivers.modbus.points import Limits, Point, RegisterKind


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read `count` registers (or bits) of `kind` from `address`; decode `points`."""

    kind: RegisterKind
    address: int
    count: int
    points: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan(points: Iterable[Point], limits: Limits) -> list[ReadRequest]:
    """Group `points` into read requests; ValueError if a point cannot fit any."""
    by_kind: dict[RegisterKind, list[Point]] = {kind: [] for kind in RegisterKind}
    for point in points:
        cap = limits.cap(point.register)
        if point.size > cap:
            raise ValueError(
                f"point {point.name!r} spans {point.size} registers, "
                f"more than one request may read ({cap})"
            )
        by_kind[point.register].append(point)

    requests: list[ReadRequest] = []
    for kind, members in by_kind.items():
        members.sort(key=lambda p: (p.address, p.end, p.name))
        if not limits.merge:
            requests += [ReadRequest(kind, p.address, p.size, (p.name,)) for p in members]
            continue
        requests += _sweep(kind, members, limits.cap(kind), limits.max_gap)
    return requests


def _sweep(kind: RegisterKind, members: list[Point], cap: int, max_gap: int) -> list[ReadRequest]:
    out: list[ReadRequest] = []
    start = end = 0
    names: list[str] = []
    for point in members:
        if names and point.address - end <= max_gap and max(end, point.end) - start <= cap:
            end = max(end, point.end)
            names.append(point.name)
            continue
        if names:
            out.append(ReadRequest(kind, start, end - start, tuple(names)))
        start, end, names = point.address, point.end, [point.name]
    if names:
        out.append(ReadRequest(kind, start, end - start, tuple(names)))
    return out
