"""The traffic-controller profile, and the `choices` key it brought: limited
values for plan and mode, checked at load and refused on write."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityedge.drivers.modbus.codec import encode
from cityedge.drivers.modbus.points import DataType, RegisterKind
from cityedge.drivers.modbus.profile import ProfileError, parse_profile, resolve_profile
from cityedge.sdk.model import InvalidValue, PointAccess


def test_traffic_controller_reads_as_documented() -> None:
    profile = resolve_profile("traffic-controller")
    points = profile.points
    assert profile.type == "traffic-controller"
    # one request for what it measures, one for what the central sets
    assert [(r.kind, r.address, r.count) for r in profile.requests] == [
        (RegisterKind.INPUT, 0, 10),
        (RegisterKind.HOLDING, 0, 2),
    ]
    mode, plan = points["mode"], points["plan"]
    assert mode.access is plan.access is PointAccess.READ_WRITE
    assert mode.choices == (0, 1, 2, 3) and plan.choices == (1, 2, 3, 4)
    assert mode.info().choices == (0, 1, 2, 3) and mode.info().kind == "int"
    for word in ("normal", "flashing amber", "dark", "manual"):
        assert word in mode.description
    assert points["cycle_counter"].type is DataType.UINT32
    alarms = {p.name: p.alarm for p in points.values() if p.alarm}
    assert alarms == {
        "lamp_failure": "traffic.lamp_failure",
        "conflict": "traffic.conflict",
        "door_open": "traffic.door_open",
        "power_failure": "traffic.power_failure",
    }
    assert all(points[f"occupancy_{i}"].unit == "%" for i in range(1, 5))


def test_a_write_outside_the_choices_is_refused_before_sending() -> None:
    plan = resolve_profile("traffic-controller").points["plan"]
    assert encode(plan, 3) == [3]
    with pytest.raises(InvalidValue, match="plan: 7 is not one of 1, 2, 3, 4"):
        encode(plan, 7)
    with pytest.raises(InvalidValue, match=r"plan: 2\.5 is not one of"):
        encode(plan, 2.5)
    with pytest.raises(InvalidValue, match="expected a number"):
        encode(plan, True)


def problems_of(points: str) -> list[str]:
    import tomllib

    text = '[device]\ntype = "x"\n' + points
    with pytest.raises(ProfileError) as info:
        parse_profile(tomllib.loads(text), Path("x.toml"))
    return info.value.problems


def test_choices_mistakes_are_named_by_key_path() -> None:
    found = problems_of(
        """
[[points]]
name = "flag"
register = "coil"
address = 0
choices = [0, 1]

[[points]]
name = "plan"
register = "holding"
address = 1
choices = [1, 2, 2, 70000, -1]

[[points]]
name = "level"
register = "holding"
address = 2
max = 10
choices = [5, 20]

[[points]]
name = "tenths"
register = "holding"
address = 3
scale = 0.1
choices = [0.5, 0.25]
"""
    )
    assert found == [
        "points[0].choices: does not apply to a bool point (it is true or false already)",
        "points[1].choices: 2 is listed twice",
        "points[1].choices: 70000 is raw 70000, outside uint16 (0..65535)",
        "points[1].choices: -1 is raw -1, outside uint16 (0..65535)",
        "points[2].choices: 20 is above the maximum 10",
        "points[3].choices: 0.25 is not a whole step of uint16 (raw 2.5)",
    ]
    (empty,) = problems_of(
        '[[points]]\nname = "e"\nregister = "holding"\naddress = 0\nchoices = []'
    )
    assert empty.startswith("points[0].choices: should have at least 1 item")


def test_scaled_choices_that_fit_are_kept_as_written() -> None:
    import tomllib

    text = """
[device]
type = "x"

[[points]]
name = "setpoint"
register = "holding"
address = 0
access = "rw"
scale = 0.5
choices = [0.5, 1.5, 20]
"""
    point = parse_profile(tomllib.loads(text), Path("x.toml")).points["setpoint"]
    assert point.choices == (0.5, 1.5, 20)
    assert encode(point, 1.5) == [3]
