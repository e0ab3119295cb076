"""`Table`: keys read from the class's annotations, `parse` running every key's
validator and checks and reporting every problem at once, and the frozen instance
(replace, dump, equality)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from cityedge.sdk.tables.declare import (
    NO_VALUE,
    FieldSpec,
    Invalid,
    Loc,
    Problem,
    SelfParsing,
    unwrap,
)
from cityedge.sdk.tables.validate import (
    BAD,
    Validate,
    compile_annotation,
    constrained,
    type_problem,
    unknown_key,
)

T = TypeVar("T", bound="Table")


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


class Table(SelfParsing):
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
                if hasattr(unwrap(fn), "__table_check__"):
                    checks[attr] = unwrap(fn)
        hints = typing.get_type_hints(cls, include_extras=True)
        keys = {}
        for name, tp in hints.items():
            if typing.get_origin(tp) is ClassVar or name.startswith("_"):
                continue
            spec = cls.__defaults__.get(name, NO_VALUE)
            field = spec if isinstance(spec, FieldSpec) else FieldSpec(default=spec)
            validate = compile_annotation(tp)
            limits = dataclasses.replace(field, default=NO_VALUE, default_factory=None, alias=None)
            if limits != FieldSpec():
                validate = constrained(validate, limits)
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
            raise Invalid(problems=[type_problem((), raw, "a table")])
        keys = cls._keys()
        values: dict[str, Any] = {}
        for key in raw:
            if key not in keys:
                problems.append(Problem((key,), unknown_key(str(key), keys), NO_VALUE, "unknown"))
        for key, spec in keys.items():
            loc: Loc = (key,)
            if key not in raw:
                if spec.required:
                    problems.append(Problem(loc, "required key is missing", NO_VALUE, "missing"))
                continue
            value = _checked(cls, spec.before, raw[key], loc, problems)
            if value is BAD:
                continue
            before = len(problems)
            value = spec.validate(value, loc, ctx, problems)
            if len(problems) > before:
                continue
            value = _checked(cls, spec.after, value, loc, problems)
            if value is not BAD:
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
    """`value` through a key's checks, or BAD with the first complaint in `out`."""
    try:
        for fn in checks:
            value = fn(cls, value)
    except ValueError as err:
        out.extend(_from_check(err, loc, value))
        return BAD
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
