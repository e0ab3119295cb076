"""How every file the agent reads reports its mistakes: one line per problem,
`key.path[2].key: what is wrong, got VALUE` — the config, device profiles and
device types alike, so a technician reads them all the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

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


class FileProblems(Exception):
    """Every problem of one file (config, profile, device type), each as `key.path: message`.

    One class for every file the agent reads, so the CLI and the drivers report them
    alike; `ConfigError`, `ProfileError` and `DeviceTypeError` are names for it.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))

    @classmethod
    def from_invalid(cls, source: str, err: Invalid, prefix: Sequence[str | int] = ()) -> Self:
        """The problems of a table read from `source`, at their key paths under `prefix`."""
        return cls(source, error_lines(err, prefix))

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)
