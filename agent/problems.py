"""How every file the agent reads reports its mistakes: one line per problem,
`key.path[2].key: what is wrong, got VALUE` — the config, device profiles and
device types alike, so a technician reads them all the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


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


def _real_key(part: str | int) -> bool:
    """pydantic puts union branches and validator tags into loc (`function-after[…]`,
    `float`, `list[int]`): they are not keys of the file."""
    if isinstance(part, int):
        return True
    return not (
        part.startswith("function-") or "[" in part or part in ("bool", "int", "float", "str")
    )


def error_lines(err: ValidationError, prefix: Sequence[str | int] = ()) -> list[str]:
    """One line per problem, `key.path[2].key: what is wrong, got VALUE`: the format of
    every file the agent reads (config, device profiles, device types)."""
    problems = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if _real_key(p)]
        msg = e["msg"]
        if e["type"] == "missing":
            problems.append(f"{key_path([*prefix, *loc])}: required key is missing")
            continue
        if e["type"] == "extra_forbidden":
            problems.append(f"{key_path([*prefix, *loc])}: unknown key")
            continue
        ctx = e.get("ctx") or {}
        if e["type"] in ("greater_than_equal", "less_than_equal") and {"ge", "le"} & ctx.keys():
            msg = "out of range: " + msg.lower()
        if "input" in e and not isinstance(e["input"], dict):
            msg += f", got {describe_value(e['input'])}"
        problems.append(f"{key_path([*prefix, *loc])}: {msg}")
    return problems
