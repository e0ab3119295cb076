"""Typed TOML tables: the classes every file the agent reads is validated into.

A `Table` subclass declares its keys as annotated class attributes, the way a
dataclass does; `Table.parse(raw)` checks a parsed TOML table against them and
returns a frozen instance, or raises `Invalid` with *every* problem, each at
its key path (`devices[2].port`), so a technician fixes a file in one pass.

    class Device(Table):
        name: str = Field(min_length=1, max_length=64, pattern=NAME)
        port: Annotated[int, Field(ge=1, le=65535)] = 502

        @check("name")
        def _not_reserved(cls, value: str) -> str: ...

        @check_table
        def _consistent(self) -> None: ...

Why not pydantic, which did this job first: the daemon must fit in 40 MB of
resident memory, and pydantic with our models cost it 9 MB (its compiled core
and a validator per model) for what is, here, a few hundred lines: TOML has
seven value types, and a config is validated once, at start-up. Types are
strict (TOML already types every value: `port = "502"` is a mistake to report,
not a string to coerce), except that a float key accepts an integer and a path
key accepts text.
"""

from cityedge.sdk.tables.declare import (
    NO_VALUE,
    Convert,
    Field,
    FieldSpec,
    Invalid,
    Loc,
    Problem,
    check,
    check_table,
)
from cityedge.sdk.tables.table import Table

__all__ = ["NO_VALUE", "Convert", "Field", "FieldSpec", "Invalid", "Loc", "Problem", "Table",
           "check", "check_table"]  # fmt: skip
