"""ASCII device profiles: the shipped panel loads; broken profiles say every problem at once."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from cityedge.drivers.ascii.points import PointType
from cityedge.drivers.ascii.profile import (
    SHIPPED_PROFILES,
    ProfileError,
    find_profile,
    load_profile,
    parse_profile,
    resolve_profile,
)
from cityedge.sdk.driver import SHIPPED_CONFIG_DIR
from cityedge.sdk.model import PointAccess

SHIPPED = sorted(SHIPPED_PROFILES.glob("*.toml"))


def test_profiles_are_shipped() -> None:
    assert SHIPPED_PROFILES == SHIPPED_CONFIG_DIR / "profiles" / "ascii"
    assert [p.stem for p in SHIPPED] == ["info-panel"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.type == path.stem
    assert profile.requests and profile.points


def test_the_information_panel() -> None:
    panel = resolve_profile("info-panel")
    assert list(panel.requests) == ["status"]
    assert panel.requests["status"].points == ("fault", "temperature", "brightness", "message")
    assert panel.terminator == "\r\n" and not panel.uses_address
    message = panel.points["message"]
    assert message.type is PointType.TEXT and message.access is PointAccess.READ_WRITE
    assert message.write == "MSG {value}" and message.max_length == 64
    brightness = panel.points["brightness"].info()
    assert (brightness.kind, brightness.minimum, brightness.maximum, brightness.unit) == (
        "int", 0, 100, "%")  # fmt: skip
    assert panel.points["fault"].info().kind == "bool"
    assert panel.points["temperature"].info().deadband == 0.5


def test_find_by_name_or_path_and_unknown_names_list_the_known(tmp_path: Path) -> None:
    assert find_profile("info-panel") == SHIPPED_PROFILES / "info-panel.toml"
    assert find_profile("./my-panel.toml") == Path("./my-panel.toml")
    with pytest.raises(
        ProfileError, match=r"^bollard: no such ASCII profile \(known: info-panel\)"
    ):
        find_profile("bollard")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[device\n")
    with pytest.raises(ProfileError, match="TOML syntax error"):
        load_profile(broken)


def panel_raw() -> dict[str, Any]:
    raw: dict[str, Any] = tomllib.loads((SHIPPED_PROFILES / "info-panel.toml").read_text())
    return raw


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ProfileError) as err:
        parse_profile(raw, Path("test.toml"))
    assert str(err.value).startswith("test.toml: ")
    return err.value.problems


def test_every_problem_is_reported_with_its_key_path() -> None:
    raw = panel_raw()
    raw["requests"][0]["expect"] = "STATUS (?P<state>OK"  # unbalanced
    raw["points"][1]["read"] = "stat"
    raw["points"][2]["write"] = "BRIGHT {level}"
    raw["points"][3]["access"] = "r"  # but it still has a write template
    raw["points"][3]["charset"] = "[a-"
    raw["points"].append(dict(raw["points"][0]))  # a second "fault"
    assert problems_of(raw) == [
        "requests[0].expect: not a valid regular expression: missing ), unterminated "
        "subpattern at position 7",
        "points[1].read: no request named 'stat' (known: status)",
        "points[2].write: placeholder {level} is not allowed (only {address}, {value})",
        "points[2].write: the template must carry {value}",
        'points[3].write: only for writable points: add access = "rw"',
        "points[3].charset: not a valid regular expression: unterminated character set at "
        "position 0",
        "points[4].name: 'fault' already used by points[0]",
    ]


def test_a_group_missing_from_the_answer_and_a_request_nobody_reads() -> None:
    raw = panel_raw()
    raw["points"][1]["group"] = "temp"
    raw["requests"].append({"name": "version", "send": "VER?", "expect": "V(?P<v>.*)"})
    problems = problems_of(raw)
    assert problems == [
        "points[1].group: request 'status' has no group (?P<temp>...) in its expect regex",
        "requests[1]: no point reads 'version': it would cost a round trip every poll for nothing",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["points"][1].update(scale=0), "points[1].scale: must be a finite non-zero"),
        (lambda r: r["points"][3].update(scale=2), "points[3].scale: does not apply to a text"),
        (lambda r: r["points"][0].update(max_length=3), "points[0].max_length: does not apply"),
        (lambda r: r["points"][2].update(min=200), "points[2].min: 200.0 is greater than max"),
        (
            lambda r: r["points"][2].update(access="rw", write=None) or r["points"][2].pop("write"),
            "points[2].write: required for a writable point",
        ),
        (
            lambda r: r["points"][2].update(write="BRIGHT"),
            "points[2].write: the template must carry {value}",
        ),
        (
            lambda r: r["points"][2].update(write="BRIGHT {value:q}"),
            "points[2].write: {value} does not format a int",
        ),
        (
            lambda r: r["points"][2].update(write="BRIGHT {value!r}"),
            "placeholder {value} is not allowed",
        ),
        (lambda r: r["points"][2].update(write="BRIGHT {value"), "points[2].write: bad template"),
        (lambda r: r["points"][0].update(on="OK"), "points[0].on: on and off must differ"),
        (
            lambda r: r["points"][1].update(write_expect="OK"),
            "points[1].write_expect: only with write",
        ),
        (
            lambda r: r["requests"][0].update(send="STATUS? {value}"),
            "requests[0].send: placeholder {value}",
        ),
        (lambda r: r["device"].update(terminator="\t"), "device.terminator: should be"),
        (lambda r: r["device"].update(speed=9600), "device.speed: unknown key"),
        (lambda r: r["points"][0].pop("type"), "points[0].type: required key is missing"),
        (lambda r: r["points"][1].update(type="double"), "points[1].type: should be"),
        (lambda r: r.update(points=[]), "points: should have at least 1 item"),
        (lambda r: r["device"].update(ok="O(K"), "device.ok: not a valid regular expression"),
    ],
)
def test_one_problem_each(change: Any, expected: str) -> None:
    raw = panel_raw()
    raw["points"] = [dict(p) for p in raw["points"]]
    change(raw)
    problems = problems_of(raw)
    assert any(expected in p for p in problems), problems


def test_address_templates_are_noticed() -> None:
    raw = panel_raw()
    raw["requests"][0]["send"] = "@{address} STATUS?"
    assert parse_profile(raw, Path("x.toml")).uses_address
    raw = panel_raw()
    raw["points"][3]["write"] = "@{address} MSG {value}"
    assert parse_profile(raw, Path("x.toml")).uses_address
    raw["points"][3]["write"] = "@{address:>3} MSG {value}"
    assert any("{address} takes no format spec" in p for p in problems_of(raw))
