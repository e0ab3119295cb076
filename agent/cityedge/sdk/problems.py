"""How every file the agent reads reports its mistakes: one line per problem,
`key.path[2].key: what is wrong, got VALUE` — the config, device profiles and
device types alike, so a technician reads them all the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cityedge.sdk.tables import NO_VALUE, Invalid


def key_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def describe_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def error_lines(err: Invalid, prefix: Sequence[str | int] = ()) -> list[str]:
    """One line per problem, `key.path[2].key: what is wrong, got VALUE`: the format of
    every file the agent reads (config, device profiles, device types)."""
    lines = []
    for problem in err.problems:
        where = key_path([*prefix, *problem.loc])
        message = problem.message
        if problem.kind == "range":
            message = "out of range: " + message[:1].lower() + message[1:]
        if problem.value is not NO_VALUE and not isinstance(problem.value, Mapping):
            message += f", got {describe_value(problem.value)}"
        lines.append(f"{where}: {message}")
    return lines
