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

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import enum
import inspect
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, Union

Loc = tuple[str | int, ...]
T = TypeVar("T", bound="Table")
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
        _function(fn).__table_check__ = (fields, before)
        return fn

    return mark


def check_table(fn: F) -> F:
    """A check of the whole table once every key is valid: `fn(self)`; raise ValueError
    for a problem of the table, `Invalid.at(...)` to name keys inside it."""
    _function(fn).__table_check__ = ((), False)
    return fn


def _function(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn


# --- how each annotation is checked -------------------------------------------------

Validate = Callable[[Any, Loc, Mapping[str, Any], list[Problem]], Any]
_BAD: Any = object()


def _type_problem(loc: Loc, value: Any, expected: str) -> Problem:
    return Problem(loc, f"should be {expected}", value, "type")


def _unknown(key: str, known: Iterable[str]) -> str:
    """'unknown key', with the key meant when one is close (`baudrate` for `baud`)."""
    import difflib  # only when a file has a mistake

    close = difflib.get_close_matches(key, list(known), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _number(kind: type) -> Validate:
    expected = "a valid integer" if kind is int else "a valid number"

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int if kind is int else int | float)):
            out.append(_type_problem(loc, value, expected))
            return _BAD
        return kind(value)

    return validate


def _exact(kind: type, expected: str) -> Validate:
    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, kind):
            out.append(_type_problem(loc, value, expected))
            return _BAD
        return value

    return validate


def _path(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value and "\x00" not in value:
        return Path(value)
    out.append(_type_problem(loc, value, "a file path"))
    return _BAD


def _date(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    out.append(_type_problem(loc, value, "a valid date (YYYY-MM-DD)"))
    return _BAD


def _any(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
    return value


def _one_of(shown: Sequence[str]) -> str:
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _choices(choices: Sequence[Any]) -> Validate:
    expected = _one_of([repr(c.value if isinstance(c, enum.Enum) else c) for c in choices])

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        for choice in choices:
            plain = choice.value if isinstance(choice, enum.Enum) else choice
            if type(value) is type(plain) and value == plain:
                return choice
        out.append(Problem(loc, f"should be {expected}", value, "type"))
        return _BAD

    return validate


def _union(branches: Sequence[Any]) -> Validate:
    options = [(arg, _compile(arg)) for arg in branches if arg is not type(None)]
    optional = len(options) < len(branches)

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if value is None and optional:
            return None
        tried: list[list[Problem]] = []
        for _, option in options:
            problems: list[Problem] = []
            result = option(value, loc, ctx, problems)
            if not problems:
                return result
            tried.append(problems)
        # Report the branch the value's type matched (a number out of range), else
        # every kind of value the key takes.
        for problems in tried:
            if any(p.kind != "type" for p in problems):
                out.extend(problems)
                return _BAD
        if len(tried) == 1:
            out.extend(tried[0])
            return _BAD
        expected = [p.message.removeprefix("should be ") for ps in tried for p in ps[:1]]
        out.append(_type_problem(loc, value, _one_of(expected)))
        return _BAD

    return validate


def _list(item: Any, kind: type) -> Validate:
    check_item = _compile(item)

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, list | tuple):
            out.append(_type_problem(loc, value, "a list"))
            return _BAD
        before = len(out)
        items = [check_item(v, (*loc, i), ctx, out) for i, v in enumerate(value)]
        return _BAD if len(out) > before else kind(items)

    return validate


def _dict(item: Any) -> Validate:
    check_item = _compile(item)

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, Mapping):
            out.append(_type_problem(loc, value, "a table"))
            return _BAD
        before = len(out)
        items = {}
        for key, v in value.items():
            if not isinstance(key, str):
                out.append(_type_problem((*loc, str(key)), key, "a text key"))
                continue
            items[key] = check_item(v, (*loc, key), ctx, out)
        return _BAD if len(out) > before else items

    return validate


def _instance(kind: type) -> Validate:
    if issubclass(kind, Table):

        def table(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
            if isinstance(value, kind):
                return value
            if not isinstance(value, Mapping):
                out.append(_type_problem(loc, value, "a table"))
                return _BAD
            try:
                return kind.parse(value, context=ctx)
            except Invalid as err:
                out.extend(err.moved(loc))
                return _BAD

        return table
    return _exact(kind, f"a {kind.__name__}")


def _constrained(inner: Validate, spec: FieldSpec) -> Validate:
    def validate(raw: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        value = inner(raw, loc, ctx, out)
        if value is _BAD or value is None:
            return value
        problem = _limits(value, spec)
        if problem is not None:
            message, kind = problem
            out.append(Problem(loc, message, raw, kind))  # as written: 0, not 0.0
            return _BAD
        return value

    return validate


def _limits(value: Any, spec: FieldSpec) -> tuple[str, str] | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not spec.allow_inf_nan and not math.isfinite(value):
            return "should be a finite number", "value"
        # an inclusive range (1-65535) reads as "out of range"; gt 0 as "should be > 0"
        bounds: tuple[tuple[float | None, Callable[[Any, Any], bool], str, str], ...] = (
            (spec.ge, operator.ge, "greater than or equal to", "range"),
            (spec.gt, operator.gt, "greater than", "value"),
            (spec.le, operator.le, "less than or equal to", "range"),
            (spec.lt, operator.lt, "less than", "value"),
        )
        for bound, holds, words, kind in bounds:
            if bound is not None and not holds(value, bound):
                return f"should be {words} {bound}", kind
    if isinstance(value, str | list | tuple | dict):
        noun = "character" if isinstance(value, str) else "item"
        if spec.min_length is not None and len(value) < spec.min_length:
            return f"should have at least {_plural(spec.min_length, noun)}", "value"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"should have at most {_plural(spec.max_length, noun)}", "value"
    if isinstance(value, str) and spec.pattern is not None and not re.search(spec.pattern, value):
        return f"should match pattern '{spec.pattern}'", "value"
    return None


def _converted(inner: Validate, convert: Convert) -> Validate:
    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        try:
            value = convert.fn(value, ctx)
        except Invalid as err:  # problems placed by the converter (a profile's own)
            out.extend(err.moved(loc))
            return _BAD
        except ValueError as err:
            out.append(Problem(loc, str(err), value))
            return _BAD
        return inner(value, loc, ctx, out)

    return validate


_SIMPLE: dict[Any, Validate] = {
    int: _number(int),
    float: _number(float),
    bool: _exact(bool, "a valid boolean"),
    str: _exact(str, "a valid string"),
    Path: _path,
    dt.date: _date,
    Any: _any,
    object: _any,
}
_compiled: dict[Any, Validate] = {}


def _compile(tp: Any) -> Validate:
    try:
        return _compiled[tp]
    except (KeyError, TypeError):
        pass
    validate = _build(tp)
    with contextlib.suppress(TypeError):  # an unhashable annotation: built each time
        _compiled[tp] = validate
    return validate


def _build(tp: Any) -> Validate:
    if tp in _SIMPLE:
        return _SIMPLE[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        validate = _compile(args[0])
        for meta in reversed(args[1:]):
            if isinstance(meta, FieldSpec):
                validate = _constrained(validate, meta)
        for meta in args[1:]:
            if isinstance(meta, Convert):
                validate = _converted(validate, meta)
        return validate
    if origin is Literal:
        return _choices(args)
    if origin in (Union, types.UnionType):
        return _union(args)
    if origin is list:
        return _list(args[0], list)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _list(args[0], tuple)
    if origin is dict:
        return _dict(args[1])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _choices(list(tp))
    if isinstance(tp, type):
        return _instance(tp)
    raise TypeError(f"no validation for the annotation {tp!r}")


# --- tables --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    name: str  # the attribute
    key: str  # the TOML key (an alias where the attribute name would clash)
    validate: Validate
    default: Any
    default_factory: Callable[[], Any] | None
    before: tuple[Callable[..., Any], ...]
    after: tuple[Callable[..., Any], ...]

    @property
    def required(self) -> bool:
        return self.default is NO_VALUE and self.default_factory is None

    def fallback(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        # a fresh copy: a table's default list must not be shared between instances
        return copy.copy(self.default) if isinstance(self.default, list | dict) else self.default


class Table:
    """A validated, frozen TOML table (see the module docstring)."""

    __keys__: ClassVar[dict[str, _Key] | None] = None
    __defaults__: ClassVar[dict[str, Any]] = {}
    __given__: frozenset[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Defaults and Field(...) specs are taken off the class: values live on instances.
        defaults = dict(getattr(cls, "__defaults__", {}))
        for name in inspect.get_annotations(cls):
            if name in cls.__dict__ and not isinstance(cls.__dict__[name], property):
                defaults[name] = cls.__dict__[name]
                delattr(cls, name)
        cls.__defaults__ = defaults
        cls.__keys__ = None

    @classmethod
    def _keys(cls) -> dict[str, _Key]:
        known: dict[str, _Key] | None = cls.__dict__.get("__keys__")
        if known is not None:
            return known
        checks: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                if hasattr(_function(fn), "__table_check__"):
                    checks[attr] = _function(fn)
        hints = typing.get_type_hints(cls, include_extras=True)
        keys = {}
        for name, tp in hints.items():
            if typing.get_origin(tp) is ClassVar or name.startswith("_"):
                continue
            spec = cls.__defaults__.get(name, NO_VALUE)
            field = spec if isinstance(spec, FieldSpec) else FieldSpec(default=spec)
            validate = _compile(tp)
            limits = dataclasses.replace(field, default=NO_VALUE, default_factory=None, alias=None)
            if limits != FieldSpec():
                validate = _constrained(validate, limits)
            key = field.alias or name
            mine = [fn for fn in checks.values() if name in fn.__table_check__[0]]
            keys[key] = _Key(
                name, key, validate, field.default, field.default_factory,
                tuple(fn for fn in mine if fn.__table_check__[1]),
                tuple(fn for fn in mine if not fn.__table_check__[1]),
            )  # fmt: skip
        cls.__keys__ = keys
        cls.__table_checks__ = tuple(fn for fn in checks.values() if not fn.__table_check__[0])
        return keys

    @classmethod
    def parse(
        cls: type[T], raw: Mapping[str, Any], *, context: Mapping[str, Any] | None = None
    ) -> T:
        """Validate a parsed TOML table; `Invalid` lists every problem."""
        ctx = context or {}
        problems: list[Problem] = []
        if not isinstance(raw, Mapping):
            raise Invalid(problems=[_type_problem((), raw, "a table")])
        keys = cls._keys()
        values: dict[str, Any] = {}
        for key in raw:
            if key not in keys:
                problems.append(Problem((key,), _unknown(str(key), keys), NO_VALUE, "unknown"))
        for key, spec in keys.items():
            loc: Loc = (key,)
            if key not in raw:
                if spec.required:
                    problems.append(Problem(loc, "required key is missing", NO_VALUE, "missing"))
                continue
            value = _checked(cls, spec.before, raw[key], loc, problems)
            if value is _BAD:
                continue
            before = len(problems)
            value = spec.validate(value, loc, ctx, problems)
            if len(problems) > before:
                continue
            value = _checked(cls, spec.after, value, loc, problems)
            if value is not _BAD:
                values[spec.name] = value
        if problems:
            raise Invalid(problems=problems)
        given = frozenset(values)
        for spec in keys.values():
            if spec.name not in values:
                values[spec.name] = spec.fallback()
        table = cls._made(values, given)
        for fn in cls.__table_checks__:
            try:
                fn(table)
            except ValueError as err:
                problems.extend(_from_check(err, (), NO_VALUE))
        if problems:
            raise Invalid(problems=problems)
        return table

    __table_checks__: ClassVar[tuple[Callable[..., Any], ...]] = ()

    @classmethod
    def _made(cls: type[T], values: dict[str, Any], given: frozenset[str]) -> T:
        table = object.__new__(cls)
        table.__dict__.update(values)
        object.__setattr__(table, "__given__", given)
        return table

    def __init__(self, **values: Any) -> None:
        """Build a table in code: validated like one read from a file."""
        keys = type(self)._keys()
        by_name = {spec.name: spec.key for spec in keys.values()}
        made = type(self).parse({by_name.get(k, k): v for k, v in values.items()})
        self.__dict__.update(made.__dict__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _items(self) -> Iterator[tuple[str, Any]]:
        for spec in type(self)._keys().values():
            yield spec.name, self.__dict__[spec.name]

    @classmethod
    def table_keys(cls) -> list[str]:
        """The keys this table takes, as written in files (aliases, not attribute names)."""
        return list(cls._keys())

    @property
    def given(self) -> frozenset[str]:
        """The keys the file set (rather than left to their defaults)."""
        return self.__given__

    def replace(self, **changes: Any) -> Self:
        """A copy with some values replaced, not validated again (like dataclasses.replace)."""
        values = dict(self._items())
        values.update(changes)
        return type(self)._made(values, self.__given__ | frozenset(changes))

    def dump(self) -> dict[str, Any]:
        """The table as plain TOML/JSON values (paths and enums as text, dates ISO)."""
        keys = type(self)._keys().values()
        return {spec.key: _plain(self.__dict__[spec.name]) for spec in keys}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Table)
        return dict(self._items()) == dict(other._items())

    def __hash__(self) -> int:
        return hash((type(self), tuple(_frozen(v) for _, v in self._items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._items())
        return f"{type(self).__name__}({shown})"


def _checked(
    cls: type, checks: Sequence[Callable[..., Any]], value: Any, loc: Loc, out: list[Problem]
) -> Any:
    """`value` through a key's checks, or _BAD with the first complaint in `out`."""
    try:
        for fn in checks:
            value = fn(cls, value)
    except ValueError as err:
        out.extend(_from_check(err, loc, value))
        return _BAD
    return value


def _from_check(err: ValueError, loc: Loc, value: Any) -> list[Problem]:
    """A check's complaint, at the key checked (showing its value) or deeper."""
    if not isinstance(err, Invalid):
        return [Problem(loc, str(err), value)]
    return [
        Problem((*loc, *p.loc), p.message, value if not p.loc and p.value is NO_VALUE else p.value)
        for p in err.problems
    ]


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a value: lists and tables of a table hash by content."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in value.items())
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Table):
        return value.dump()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
