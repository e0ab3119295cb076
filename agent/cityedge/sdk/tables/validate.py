"""How each annotation is checked: a validator per type (numbers, text, paths, dates,
literals, enums, unions, lists, tables), compiled once per annotation and cached,
with `Field` limits and `Convert` steps wrapped around it."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from cityedge.sdk.tables.declare import Convert, FieldSpec, Invalid, Loc, Problem, SelfParsing

Validate = Callable[[Any, Loc, Mapping[str, Any], list[Problem]], Any]
BAD: Any = object()


def type_problem(loc: Loc, value: Any, expected: str) -> Problem:
    return Problem(loc, f"should be {expected}", value, "type")


def unknown_key(key: str, known: Iterable[str]) -> str:
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
            out.append(type_problem(loc, value, expected))
            return BAD
        return kind(value)

    return validate


def _exact(kind: type, expected: str) -> Validate:
    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, kind):
            out.append(type_problem(loc, value, expected))
            return BAD
        return value

    return validate


def _path(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
    if isinstance(value, Path):
        return value
    if isinstance(value, str) and value and "\x00" not in value:
        return Path(value)
    out.append(type_problem(loc, value, "a file path"))
    return BAD


def _date(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    out.append(type_problem(loc, value, "a valid date (YYYY-MM-DD)"))
    return BAD


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
        return BAD

    return validate


def _union(branches: Sequence[Any]) -> Validate:
    options = [(arg, compile_annotation(arg)) for arg in branches if arg is not type(None)]
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
                return BAD
        if len(tried) == 1:
            out.extend(tried[0])
            return BAD
        expected = [p.message.removeprefix("should be ") for ps in tried for p in ps[:1]]
        out.append(type_problem(loc, value, _one_of(expected)))
        return BAD

    return validate


def _list(item: Any, kind: type) -> Validate:
    check_item = compile_annotation(item)

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, list | tuple):
            out.append(type_problem(loc, value, "a list"))
            return BAD
        before = len(out)
        items = [check_item(v, (*loc, i), ctx, out) for i, v in enumerate(value)]
        return BAD if len(out) > before else kind(items)

    return validate


def _dict(item: Any) -> Validate:
    check_item = compile_annotation(item)

    def validate(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        if not isinstance(value, Mapping):
            out.append(type_problem(loc, value, "a table"))
            return BAD
        before = len(out)
        items = {}
        for key, v in value.items():
            if not isinstance(key, str):
                out.append(type_problem((*loc, str(key)), key, "a text key"))
                continue
            items[key] = check_item(v, (*loc, key), ctx, out)
        return BAD if len(out) > before else items

    return validate


def _instance(kind: type) -> Validate:
    if issubclass(kind, SelfParsing):

        def table(value: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
            if isinstance(value, kind):
                return value
            if not isinstance(value, Mapping):
                out.append(type_problem(loc, value, "a table"))
                return BAD
            try:
                return kind.parse(value, context=ctx)
            except Invalid as err:
                out.extend(err.moved(loc))
                return BAD

        return table
    return _exact(kind, f"a {kind.__name__}")


def constrained(inner: Validate, spec: FieldSpec) -> Validate:
    def validate(raw: Any, loc: Loc, ctx: Mapping[str, Any], out: list[Problem]) -> Any:
        value = inner(raw, loc, ctx, out)
        if value is BAD or value is None:
            return value
        problem = _limits(value, spec)
        if problem is not None:
            message, kind = problem
            out.append(Problem(loc, message, raw, kind))  # as written: 0, not 0.0
            return BAD
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
            return BAD
        except ValueError as err:
            out.append(Problem(loc, str(err), value))
            return BAD
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


def compile_annotation(tp: Any) -> Validate:
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
        validate = compile_annotation(args[0])
        for meta in reversed(args[1:]):
            if isinstance(meta, FieldSpec):
                validate = constrained(validate, meta)
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
