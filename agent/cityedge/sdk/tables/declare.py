"""What a table's author writes: `Field(...)` constraints, `Convert`, the `check` and
`check_table` marks; and what validation reports: `Problem`, `Invalid`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

Loc = tuple[str | int, ...]
F = TypeVar("F")  # a check, marked and given back with its own type
NO_VALUE: Any = object()
"""A problem about a whole table (two keys that disagree) shows no value."""


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Loc
    message: str
    value: Any = NO_VALUE
    kind: str = "value"  # "missing", "unknown", "type", "range", "value"


class Invalid(ValueError):
    """One or more problems, each at its location inside the table being read.

    Raised from a check with a bare message, it is a problem of the key (or the
    table) being checked; `Invalid.at(...)` places problems deeper.
    """

    def __init__(self, message: str | None = None, *, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        if message is not None:
            self.problems.append(Problem((), message))
        super().__init__("; ".join(p.message for p in self.problems))

    @classmethod
    def at(cls, *problems: tuple[Loc, str, Any]) -> Invalid:
        return cls(problems=[Problem(loc, message, value) for loc, message, value in problems])

    @classmethod
    def in_file(cls, source: str, lines: Sequence[str]) -> Invalid:
        """Problems of a file a key names (a device profile), the file named on each."""
        return cls(problems=[Problem((), f"{source}: {line}") for line in lines])

    def moved(self, loc: Loc) -> list[Problem]:
        """These problems as seen from `loc` further up."""
        return [Problem((*loc, *p.loc), p.message, p.value, p.kind) for p in self.problems]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Constraints on a key, and its default (`Field(...)` builds one)."""

    default: Any = NO_VALUE
    default_factory: Callable[[], Any] | None = None
    alias: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    allow_inf_nan: bool = True


def Field(
    default: Any = NO_VALUE,
    *,
    default_factory: Callable[[], Any] | None = None,
    alias: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    allow_inf_nan: bool = True,
) -> Any:
    """Constraints of a key: as its default (`x: str = Field(...)`) or in `Annotated`."""
    return FieldSpec(default, default_factory, alias, ge, gt, le, lt, min_length, max_length,
                     pattern, allow_inf_nan)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Convert:
    """`Annotated[T, Convert(fn)]`: `fn(value, context)` runs before the type check
    (a profile name made into a `Profile`, "even" made into "E"); ValueError is a
    problem of the key."""

    fn: Callable[[Any, Mapping[str, Any]], Any]


def check(*fields: str, before: bool = False) -> Callable[[F], F]:
    """A check of single keys: `fn(cls, value) -> value`, after the type check (or, with
    `before`, on the raw value). Raise ValueError (or `Invalid`) to report."""

    def mark(fn: F) -> F:
        unwrap(fn).__table_check__ = (fields, before)
        return fn

    return mark


def check_table(fn: F) -> F:
    """A check of the whole table once every key is valid: `fn(self)`; raise ValueError
    for a problem of the table, `Invalid.at(...)` to name keys inside it."""
    unwrap(fn).__table_check__ = ((), False)
    return fn


def unwrap(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn


class SelfParsing:
    """A type that validates a TOML table into itself (`Table`). Declared here so that
    the validators tell one without importing the module that defines `Table`, which
    imports them."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, context: Mapping[str, Any] | None = None) -> Any:
        raise NotImplementedError
