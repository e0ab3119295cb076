"""Frozen dataclasses to JSON-able data and back, by their fields' type hints.

One encoder and one decoder for the status read-model, so the agent's side and
the CLI's side cannot disagree: a field's name is its JSON key, fields go out
in declaration order, tuples go out as lists. The decoder checks every value
against its hint and names the path of the first one that does not fit.

Understood hints: dataclasses, `X | None` and other unions, `tuple[X, ...]`,
`Mapping[str, X]`, bool, int, float (an int is accepted and kept as it came:
JSON does not tell 3 from 3.0 apart on the way in, so neither do we on the way out)
and str. Keys the decoder does not know are ignored: an older CLI may ask a
newer agent.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ShapeError(ValueError):
    """The data does not fit the dataclass; the message names where."""


def encode(value: Any) -> Any:
    """JSON-able data (dicts, lists, scalars) for a dataclass and what it holds."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: encode(getattr(value, name)) for name in _names(type(value))}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: object, where: str = "") -> T:
    """`cls` built from `data` (as `encode` made it); ShapeError says what does not fit."""
    if not isinstance(data, dict):
        raise ShapeError(f"{where or cls.__name__}: expected an object, got {_kind(data)}")
    values: dict[str, Any] = {}
    for name, hint in _hints(cls).items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            raise ShapeError(f"{path}: missing")
        values[name] = _value(hint, data[name], path)
    return cls(**values)


def _value(hint: Any, data: object, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _value(option, data, where)
            except ShapeError:
                continue
        raise ShapeError(f"{where}: {_kind(data)} is not {_hint_name(hint)}")
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(data, list):
            raise ShapeError(f"{where}: expected a list, got {_kind(data)}")
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin in (dict, Mapping):
        item = typing.get_args(hint)[1]
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ShapeError(f"{where}: expected an object, got {_kind(data)}")
        return {k: _value(item, v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, data, where)
    if _fits(hint, data):
        return data
    raise ShapeError(f"{where}: {_kind(data)} is not {_hint_name(hint)}")


def _fits(hint: Any, data: object) -> bool:
    if hint is type(None):
        return data is None
    if hint is bool:
        return isinstance(data, bool)
    if hint is int:
        return isinstance(data, int) and not isinstance(data, bool)
    if hint is float:
        return isinstance(data, int | float) and not isinstance(data, bool)
    if hint is str:
        return isinstance(data, str)
    raise TypeError(f"codec: no rule for the hint {hint!r}")  # a bug in a dataclass, not data


def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(_hints(cls))


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The fields' hints in declaration order, resolved once per class (it is not cheap)."""
    known = _HINTS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return known


def _kind(data: object) -> str:
    return "null" if data is None else type(data).__name__


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
