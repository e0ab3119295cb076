"""The request planner alone: golden cases, then properties against a brute-force minimum."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.drivers.modbus.planner import ReadRequest, plan
from cityedge.drivers.modbus.points import DataType, Limits, Point, RegisterKind
from cityedge.drivers.modbus.profile import resolve_profile

H, IR, C, D = RegisterKind.HOLDING, RegisterKind.INPUT, RegisterKind.COIL, RegisterKind.DISCRETE


def pt(
    name: str, kind: RegisterKind, address: int, dtype: str = "uint16", bit: int | None = None
) -> Point:
    dtype_ = DataType.BOOL if kind.is_bit else DataType(dtype)
    return Point(name, kind, address, dtype_, bit=bit)


# (case id, points, limits, expected [(kind, address, count, names)])
GOLDEN = [
    ("nothing to read", [], Limits(), []),
    ("one register", [pt("a", H, 7)], Limits(), [(H, 7, 1, ("a",))]),
    (
        "contiguous registers, one request",
        [pt("a", H, 0), pt("b", H, 1), pt("c", H, 2, "int32")],
        Limits(),
        [(H, 0, 4, ("a", "b", "c"))],
    ),
    (
        "gap exactly max_gap is read through",
        [pt("a", H, 0), pt("b", H, 4)],  # 3 unused registers: 1, 2, 3
        Limits(max_gap=3),
        [(H, 0, 5, ("a", "b"))],
    ),
    (
        "gap one over max_gap splits",
        [pt("a", H, 0), pt("b", H, 5)],  # 4 unused registers
        Limits(max_gap=3),
        [(H, 0, 1, ("a",)), (H, 5, 1, ("b",))],
    ),
    (
        "max_gap 0: adjacent merge, any hole splits",
        [pt("a", H, 0), pt("b", H, 1), pt("c", H, 3)],
        Limits(max_gap=0),
        [(H, 0, 2, ("a", "b")), (H, 3, 1, ("c",))],
    ),
    (
        "32-bit value that would cross max_registers starts the next request",
        [pt("a", H, 0), pt("b", H, 1), pt("c", H, 2), pt("d", H, 3, "float32")],
        Limits(max_registers=4),
        [(H, 0, 3, ("a", "b", "c")), (H, 3, 2, ("d",))],
    ),
    (
        "32-bit value ending exactly at max_registers fits",
        [pt("a", H, 0), pt("b", H, 1), pt("c", H, 2, "uint32")],
        Limits(max_registers=4),
        [(H, 0, 4, ("a", "b", "c"))],
    ),
    (
        "32-bit value at the top of the address space",
        [pt("a", H, 65530), pt("z", H, 65534, "int32")],
        Limits(max_gap=3),
        [(H, 65530, 6, ("a", "z"))],
    ),
    (
        "coils and registers at the same address are different tables",
        [pt("reg", H, 0), pt("coil", C, 0), pt("di", D, 0), pt("ir", IR, 0)],
        Limits(),
        [(C, 0, 1, ("coil",)), (D, 0, 1, ("di",)), (IR, 0, 1, ("ir",)), (H, 0, 1, ("reg",))],
    ),
    (
        "coils obey max_bits, not max_registers",
        [pt(f"c{i}", C, i) for i in range(10)],
        Limits(max_registers=1, max_bits=4),
        [
            (C, 0, 4, ("c0", "c1", "c2", "c3")),
            (C, 4, 4, ("c4", "c5", "c6", "c7")),
            (C, 8, 2, ("c8", "c9")),
        ],
    ),
    (
        "coils merge across a gap of bits",
        [pt("c0", C, 0), pt("c9", C, 9), pt("c30", C, 30)],
        Limits(max_gap=8),
        [(C, 0, 10, ("c0", "c9")), (C, 30, 1, ("c30",))],
    ),
    (
        "bit fields of one register share it",
        [pt("b1", H, 5, "bit", 1), pt("b0", H, 5, "bit", 0), pt("next", H, 6)],
        Limits(max_gap=0),
        [(H, 5, 2, ("b0", "b1", "next"))],
    ),
    (
        "input order does not matter",
        [pt("c", IR, 20), pt("a", IR, 0), pt("b", IR, 10)],
        Limits(max_gap=10),
        [(IR, 0, 21, ("a", "b", "c"))],
    ),
    (
        "merge = false: one request per point (quirk)",
        [pt("a", H, 0), pt("b", H, 1), pt("f", C, 3)],
        Limits(merge=False),
        [(C, 3, 1, ("f",)), (H, 0, 1, ("a",)), (H, 1, 1, ("b",))],
    ),
    (
        "a long run splits at max_registers exactly",
        [pt(f"r{i:03d}", H, i) for i in range(130)],
        Limits(max_registers=125),
        [
            (H, 0, 125, tuple(f"r{i:03d}" for i in range(125))),
            (H, 125, 5, tuple(f"r{i:03d}" for i in range(125, 130))),
        ],
    ),
]


@pytest.mark.parametrize(("points", "limits", "expected"), [c[1:] for c in GOLDEN],
                         ids=[c[0] for c in GOLDEN])  # fmt: skip
def test_golden(
    points: list[Point],
    limits: Limits,
    expected: list[tuple[RegisterKind, int, int, tuple[str, ...]]],
) -> None:
    assert plan(points, limits) == [ReadRequest(*e) for e in expected]


def test_point_too_large_for_any_request_is_an_error() -> None:
    with pytest.raises(ValueError, match="'big' spans 2 registers"):
        plan([pt("big", H, 0, "float32")], Limits(max_registers=1))


def test_shipped_profiles_plan() -> None:
    lamppost = resolve_profile("lamppost")
    assert lamppost.requests == (ReadRequest(H, 0, 21, lamppost.requests[0].points),)
    assert set(lamppost.requests[0].points) == set(lamppost.points)
    meter = resolve_profile("energy-meter")
    assert [(r.kind, r.address, r.count) for r in meter.requests] == [(IR, 0, 18), (IR, 52, 24)]
    # computed once at load, and what the pure function says
    assert list(meter.requests) == plan(meter.points.values(), meter.limits)


# --- properties ---------------------------------------------------------------------


def minimum_requests(spans: list[tuple[int, int]], cap: int, gap: int) -> int:
    """Fewest requests for one table, by dynamic programming over sorted spans."""
    spans = sorted(spans)

    @cache
    def best(i: int) -> int:
        if i == len(spans):
            return 0
        start, end = spans[i][0], spans[i][1]
        result = 1 + best(i + 1)
        for j in range(i + 1, len(spans)):
            if spans[j][0] - end > gap or max(end, spans[j][1]) - start > cap:
                break
            end = max(end, spans[j][1])
            result = min(result, 1 + best(j + 1))
        return result

    return best(0)


point_specs = st.lists(
    st.tuples(
        st.sampled_from([H, IR, C]),
        st.integers(0, 300),
        st.sampled_from(["uint16", "int32", "float32", "int16"]),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(point_specs, st.integers(2, 20), st.integers(1, 40), st.integers(0, 8))
def test_plan_covers_every_point_within_limits_with_fewest_requests(
    specs: list[tuple[RegisterKind, int, str]], max_registers: int, max_bits: int, max_gap: int
) -> None:
    points = [pt(f"p{i}", kind, address, dtype) for i, (kind, address, dtype) in enumerate(specs)]
    limits = Limits(max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    requests = plan(points, limits)
    by_name = {p.name: p for p in points}
    covered = [name for r in requests for name in r.points]
    assert sorted(covered) == sorted(by_name)  # every point exactly once
    for r in requests:
        assert 1 <= r.count <= limits.cap(r.kind)
        for name in r.points:
            p = by_name[name]
            assert p.register is r.kind and r.address <= p.address and p.end <= r.end
    for kind in (H, IR, C):
        spans = [(p.address, p.end) for p in points if p.register is kind]
        mine = sum(1 for r in requests if r.kind is kind)
        assert mine == minimum_requests(spans, limits.cap(kind), max_gap)
