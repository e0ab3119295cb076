"""agent.tables: the typed TOML tables every file the agent reads goes through."""

from __future__ import annotations

import datetime as dt
import enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityedge.sdk.problems import error_lines
from cityedge.sdk.tables import Convert, Field, Invalid, Table, check, check_table


class Order(enum.StrEnum):
    BIG = "big"
    LITTLE = "little"


class Gauge(Table):
    name: str = Field(min_length=1, max_length=8, pattern=r"^[a-z]+$")
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    timeout: Annotated[float, Field(gt=0)] | None = None
    parity: Literal["N", "E", "O"] = "E"
    order: Order = Order.BIG
    kind: str = Field(default="meter", alias="type")
    choices: list[int | float] = Field(default_factory=list, max_length=3)
    path: Path | None = None
    since: dt.date | None = None
    label: Annotated[str, Convert(lambda v, ctx: v.upper() if isinstance(v, str) else v)] = "A"

    @check("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == "root":
            raise ValueError("is reserved")
        return value


class Panel(Table):
    gauges: list[Gauge] = Field(min_length=1)
    limits: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict)

    @check_table
    def _distinct(self) -> None:
        names = [g.name for g in self.gauges]
        if len(set(names)) != len(names):
            raise ValueError("gauge names must be unique")


def problems(raw: Any) -> list[str]:
    with pytest.raises(Invalid) as err:
        Panel.parse(raw)
    return error_lines(err.value, ("panel",))


def test_a_good_table_gets_its_types_defaults_and_aliases() -> None:
    panel = Panel.parse(
        {
            "gauges": [
                {"name": "a", "port": 80, "timeout": 2, "order": "little", "type": "bin"},
                {"name": "b", "path": "/x", "since": dt.date(2026, 1, 2), "label": "q"},
            ],
            "limits": {"high": 3},
        }
    )
    a, b = panel.gauges
    assert (a.port, a.timeout, a.order, a.kind, a.label) == (80, 2.0, Order.LITTLE, "bin", "A")
    assert isinstance(a.timeout, float)
    assert (b.port, b.path, b.since, b.label) == (502, Path("/x"), dt.date(2026, 1, 2), "Q")
    assert a.given == {"name", "port", "timeout", "order", "kind"}
    assert panel.limits == {"high": 3.0}


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    assert problems(
        {
            "gauges": [
                {"name": "", "port": 0, "timeout": 0, "parity": "X", "extra": 1},
                {"name": "Root", "port": "80", "order": "middle", "choices": [1, "a"]},
                {"port": True, "path": 7},
                {"name": "root", "choices": [1, 2, 3, 4]},
            ],
            "limits": {"x": float("inf")},
        }
    ) == [
        "panel.gauges[0].extra: unknown key",
        "panel.gauges[0].name: should have at least 1 character, got ''",
        "panel.gauges[0].port: out of range: should be greater than or equal to 1, got 0",
        "panel.gauges[0].timeout: should be greater than 0, got 0",
        "panel.gauges[0].parity: should be 'N', 'E' or 'O', got 'X'",
        "panel.gauges[1].name: should match pattern '^[a-z]+$', got 'Root'",
        "panel.gauges[1].port: should be a valid integer, got '80'",
        "panel.gauges[1].order: should be 'big' or 'little', got 'middle'",
        "panel.gauges[1].choices[1]: should be a valid integer or a valid number, got 'a'",
        "panel.gauges[2].name: required key is missing",
        "panel.gauges[2].port: should be a valid integer, got True",
        "panel.gauges[2].path: should be a file path, got 7",
        "panel.gauges[3].name: is reserved, got 'root'",
        "panel.gauges[3].choices: should have at most 3 items, got [1, 2, 3, 4]",
        "panel.limits.x: should be a finite number, got inf",
    ]


def test_table_checks_run_once_the_keys_are_valid() -> None:
    assert problems({"gauges": [{"name": "a"}, {"name": "a"}]}) == [
        "panel: gauge names must be unique"
    ]
    assert problems({"gauges": []}) == ["panel.gauges: should have at least 1 item, got []"]
    assert problems([1]) == ["panel: should be a table, got [1]"]


def test_checks_may_name_keys_deeper_down() -> None:
    class Line(Table):
        units: list[int]

        @check_table
        def _distinct(self) -> None:
            if len(set(self.units)) != len(self.units):
                raise Invalid.at((("units", 1), "already used", self.units[1]))

    with pytest.raises(Invalid) as err:
        Line.parse({"units": [3, 3]})
    assert error_lines(err.value) == ["units[1]: already used, got 3"]


def test_tables_are_frozen_values() -> None:
    a = Gauge(name="a")
    assert a == Gauge.parse({"name": "a"}) and hash(a) == hash(Gauge(name="a"))
    with pytest.raises(AttributeError, match="frozen"):
        a.port = 1
    b = a.replace(port=9)
    assert (a.port, b.port, b.name) == (502, 9, "a")
    assert Gauge(name="a", kind="bin").kind == "bin"  # in code, by attribute name
    assert Gauge.table_keys()[:3] == ["name", "port", "timeout"] and "type" in Gauge.table_keys()
    with pytest.raises(Invalid):
        Gauge(name="a", port=0)


def test_defaults_are_not_shared_between_tables() -> None:
    one, two = Gauge(name="a"), Gauge(name="b")
    one.choices.append(1)
    assert two.choices == []


def test_dump_gives_plain_toml_values() -> None:
    gauge = Gauge.parse({"name": "a", "order": "little", "path": "/p", "since": "2026-03-04"})
    assert gauge.dump() | {"choices": None} == {
        "name": "a", "port": 502, "timeout": None, "parity": "E", "order": "little",
        "type": "meter", "choices": None, "path": "/p", "since": "2026-03-04", "label": "A",
    }  # fmt: skip
    assert Gauge.parse(gauge.dump()) == gauge


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.dates(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["gauges", "limits", "name", "port", "x"]),
        toml_values | st.lists(st.dictionaries(
            st.sampled_from(["name", "port", "timeout", "parity", "order", "type", "choices",
                             "path", "since", "label"]), toml_values, max_size=6), max_size=3),
        max_size=3,
    )
)  # fmt: skip
def test_any_document_is_a_table_or_a_list_of_problems(raw: dict[str, Any]) -> None:
    try:
        Panel.parse(raw)
    except Invalid as err:
        lines = error_lines(err)
        assert lines and all(": " in line for line in lines)


def test_every_table_of_the_agent_compiles() -> None:
    """An annotation the engine cannot check would fail at start-up, on a gateway:
    compile every table the agent and its drivers declare, here."""
    import importlib

    from cityedge.gateway.registry import known_kinds

    for module in (
        "cityedge.gateway.config",
        "cityedge.gateway.policy",
        "cityedge.gateway.lighting.program",
        "cityedge.drivers.modbus.profile",
        "cityedge.drivers.ascii.profile",
        "cityedge.drivers.lorawan.decoders",
        *(f"cityedge.drivers.{kind}.config" for kind in known_kinds()),
    ):
        importlib.import_module(module)
    seen: list[type[Table]] = []
    todo = list(Table.__subclasses__())
    while todo:
        table = todo.pop()
        todo.extend(table.__subclasses__())
        if table.__module__.startswith("cityedge."):
            assert table.table_keys(), table
            seen.append(table)
    assert len(seen) >= 30, [t.__name__ for t in seen]
